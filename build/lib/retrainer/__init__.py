"""The retrainer: Alertmanager's webhook in, one retrain at a time out (``local`` or ``gitlab``)."""
