"""The model being served, and its replacement without dropping a request (:mod:`.store`)."""
