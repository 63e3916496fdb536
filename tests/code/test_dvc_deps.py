"""dvc.yaml lists every module of the package that each stage runs, imported directly or not.

A stage whose code changes must run again: DVC only knows that through the stage's deps. The
imports are read from the source (every ``import``/``from``, also inside functions), transitively
within the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from tests.helpers.paths import REPO

SRC = REPO / "src"
PACKAGE = "mloop"


def module_file(name: str) -> Path | None:
    """The source file of a module of the package (a package's __init__.py), or None."""
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """Modules of the package that a file imports anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != PACKAGE:
                continue
            found.add(node.module)
            # `from mloop import registry`, `from mloop.models import store`: modules, too
            found.update(
                f"{node.module}.{alias.name}"
                for alias in node.names
                if module_file(f"{node.module}.{alias.name}") is not None
            )
    parents = {
        ".".join(name.split(".")[:i]) for name in found for i in range(1, name.count(".") + 1)
    }
    return {name for name in found | parents if module_file(name) is not None}


def closure(module: str) -> set[Path]:
    """Every package file that running ``python -m module`` may execute."""
    seen: set[str] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = module_file(name)
        assert path is not None, name
        pending.extend(imported_modules(path) - seen)
    files = {module_file(name) for name in seen}
    return {path.relative_to(REPO) for path in files if path is not None}


def stages() -> dict[str, dict[str, object]]:
    return dict(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"])


def covered(path: Path, deps: list[str]) -> bool:
    return any(path == Path(dep) or Path(dep) in path.parents for dep in deps)


@pytest.mark.parametrize("name", list(stages()))
def test_every_module_a_stage_runs_is_one_of_its_deps(name: str) -> None:
    stage = stages()[name]
    command = str(stage["cmd"]).split()
    assert command[0] == "bin/stage", command  # bin/stage <name> runs python -m mloop.<name>
    module = f"{PACKAGE}.{command[1]}"
    deps = [str(dep) for dep in stage.get("deps", [])]  # type: ignore[union-attr]
    missing = sorted(str(path) for path in closure(module) if not covered(path, deps))
    assert not missing, f"dvc.yaml stage {name!r} runs {module} but does not depend on {missing}"


def test_the_import_reader_sees_imports_inside_functions() -> None:
    assert Path("src/mloop/models/keras_mlp.py") in closure("mloop.models.store")
