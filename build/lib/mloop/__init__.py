"""mloop: take a tabular model from a merge request to a monitored service that retrains itself."""

__version__ = "0.1.0"
