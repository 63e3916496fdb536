"""The prediction service: serves the champion bundle exported by the pipeline (mloop.bundle)."""
