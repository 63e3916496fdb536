"""The merge-request report: a model review built from a pipeline run's outputs.

``python -m mloop.report drift`` (data job) measures the new data against the champion;
``python -m mloop.report build`` writes ``report.md`` and its PNG plots, which
``cml comment update`` posts to the merge request. See docs/ci.md.
"""
