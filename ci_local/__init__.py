"""Runs .gitlab-ci.yml locally with gitlab-ci-local (make ci-local); see __main__."""
