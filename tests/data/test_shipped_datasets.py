"""Every shipped dataset configuration accepts the very file it names and pins.

Files outside the repo (the UCI wine files in ../shared/data) are checked where present: they are
in CI, not on a user's machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mloop import sources
from mloop.config import load_schema
from mloop.validate import check, format_violations
from tests.helpers.paths import REPO, SHIPPED_SCHEMAS

CONFIGURATIONS = SHIPPED_SCHEMAS


@pytest.mark.parametrize("path", CONFIGURATIONS, ids=[p.stem for p in CONFIGURATIONS])
def test_a_shipped_configuration_accepts_its_own_file(path: Path) -> None:
    schema = load_schema(path)
    if schema.source.kind == "url":
        pytest.skip("a URL source is not fetched in the tests (no network)")
    if schema.source.kind == "path":
        assert schema.source.path is not None
        if not (REPO / schema.source.path).is_file():
            pytest.skip(f"{schema.source.path} is not on this machine")
    fetched = sources.fetch(schema.source, base_dir=REPO)  # checks the sha256 pin
    frame = sources.parse_table(fetched.content, fetched.sep)
    _, violations = check(frame, schema)
    assert not violations, f"{path.name} refuses {fetched.origin}:\n{format_violations(violations)}"


def test_the_wine_files_are_checked_where_ci_has_them() -> None:
    wine = [p for p in CONFIGURATIONS if p.stem.startswith("wine")]
    assert wine and all(load_schema(p).source.kind == "path" for p in wine)
