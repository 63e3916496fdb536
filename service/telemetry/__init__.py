"""What the service tells Prometheus: metric definitions (:mod:`.metrics`), folding the hot path's
samples in bulk (:mod:`.folding`), the drift window (:mod:`.drift`).
"""
