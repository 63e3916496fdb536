"""The whole loop on one machine without Docker: the service, the retrainer, Prometheus and
Alertmanager on loopback, from the local install, with configurations generated from monitoring/."""
