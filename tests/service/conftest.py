"""Fixtures of the service tests: real bundles, real server processes (see service_fixtures.py)."""

from tests.service.service_fixtures import bundle_v1, server  # noqa: F401
