"""Grafana dashboards as code (grafana-foundation-sdk): ``python -m dashboards`` writes their JSON to
``monitoring/grafana/dashboards/``, which Grafana's file provider loads. Edit the code, not the JSON.
"""
