"""Request bodies to checked arrays: ``/predict`` records (:mod:`.records`) and ``/feedback``
labels (:mod:`.labels`), built from the bundle's schema.
"""
