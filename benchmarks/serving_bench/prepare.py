"""The models under test, prepared once and cached in the workdir (``prepared.json``).

``load_prepared`` returns the cached preparation, or None when it is missing, of another format or
data file, or stale (the pipeline's inputs changed: ``source_commit``); ``prepare`` makes it anew:
the pipeline on UCI wine red (random split) in a fresh copy of this repo, giving the champion
bundle and an MLflow registry with alias ``champion``, then a second bundle and registered model
for the hist_gb candidate.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from serving_bench.settings import HIST_GB, HIST_GB_MODEL_SUFFIX, PREPARED_FORMAT, REPO

sys.path.insert(0, str(REPO))
from tests.e2e.conftest import dvc_repro, fresh_copy, set_params  # noqa: E402


@dataclass
class Prepared:
    """What the measurements need from the pipeline run; cached as prepared.json in the workdir."""

    repo: str
    data: str
    data_sha256: str
    source_commit: str
    features: list[str]
    bundles: dict[str, str]  # champion / hist_gb -> bundle dir
    registered: dict[str, str]  # champion / hist_gb -> registered model name (alias champion)
    candidates: dict[str, str]  # champion / hist_gb -> "candidate (serving)"
    format: int = PREPARED_FORMAT


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def source_commit() -> str:
    """Hash of what the prepared models depend on (pipeline code, params, stages, dataset file).

    The service under test always runs from this work tree; only the pipeline run is cached, so
    only its inputs decide whether the cache is still valid (after a dependency upgrade, pass
    --rebuild).
    """
    digest = hashlib.sha256()
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z", "src", "params.yaml", "dvc.yaml",
         "datasets/wine_red.yaml"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split("\0")  # fmt: skip
    for name in sorted(filter(None, listed)):
        path = REPO / name
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def load_prepared(workdir: Path, data: Path) -> Prepared | None:
    path = workdir / "prepared.json"
    if not path.is_file():
        return None
    try:
        prepared = Prepared(**json.loads(path.read_text()))
    except (TypeError, ValueError):
        return None
    paths = [Path(prepared.repo) / "mlflow.db", *map(Path, prepared.bundles.values())]
    if (
        prepared.format != PREPARED_FORMAT
        or prepared.data != str(data)
        or not all(p.exists() for p in paths)
    ):
        return None
    if prepared.source_commit != source_commit():
        print("the pipeline code or params changed since the cached run: preparing again")
        return None
    return prepared


def register_hist_gb(repo: Path, name: str, model_uri: str) -> str:
    """Register the hist_gb run's model under its own name with alias champion (for MLflow serve).

    The pipeline registers only the promoted candidate; MLflow serve of hist_gb needs it in the
    registry the same way, so ``models:/NAME@champion`` resolves for both contenders alike.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{repo}/mlflow.db")
    version = mlflow.register_model(model_uri, name, tags={"mloop.benchmark": "serving"})
    MlflowClient().set_registered_model_alias(name, "champion", version.version)
    return str(version.version)


def prepare(workdir: Path, data: Path) -> Prepared:
    """Pipeline on wine red in a fresh copy, then the hist_gb bundle and registered model."""
    repo = workdir / "repo"
    for stale in (repo, workdir / "repo-remote", workdir / "bundles"):
        shutil.rmtree(stale, ignore_errors=True)
    (workdir / "prepared.json").unlink(missing_ok=True)
    print(f"preparing: dvc repro on {data.name} (random split) in {repo} ...", flush=True)
    started = time.perf_counter()
    repo.mkdir(parents=True)
    fresh_copy(repo)
    import yaml

    schema_path = repo / "datasets/wine_red.yaml"
    schema = yaml.safe_load(schema_path.read_text())
    schema["source"]["path"] = str(data)
    schema_path.write_text(yaml.safe_dump(schema, sort_keys=False))
    set_params(repo, dataset="datasets/wine_red.yaml", split__strategy="random")
    dvc_repro(repo)
    print(f"  pipeline done in {time.perf_counter() - started:.0f} s", flush=True)

    champion_dir = repo / "models/champion"
    champion_meta = json.loads((champion_dir / "bundle.json").read_text())
    manifest = json.loads((repo / "models/candidates/manifest.json").read_text())
    entry = manifest["candidates"][HIST_GB]
    hist_name = f"{champion_meta['registered_model']}{HIST_GB_MODEL_SUFFIX}"
    hist_version = register_hist_gb(repo, hist_name, entry["model_uri"])

    from mloop.bundle import write_bundle

    metrics = json.loads((repo / "reports/metrics.json").read_text())["candidates"][HIST_GB]
    latency = json.loads((repo / "reports/latency.json").read_text())["candidates"][HIST_GB]
    meta = {k: v for k, v in champion_meta.items() if k != "format_version"}
    meta.update(
        registered_model=hist_name,
        version=hist_version,
        candidate=HIST_GB,
        kind=entry["kind"],
        flavor=entry["flavor"],
        serving=entry["serving"],
        run_id=entry["run_id"],
        model_uri=entry["model_uri"],
        metrics=metrics,
        latency=latency,
    )
    hist_dir = workdir / "bundles" / HIST_GB
    bundle = write_bundle(
        hist_dir,
        repo / "models/candidates" / HIST_GB,
        champion_dir / "schema.yaml",
        champion_dir / "reference_stats.json",
        meta,
    )
    prepared = Prepared(
        repo=str(repo),
        data=str(data),
        data_sha256=sha256_of(data),
        source_commit=source_commit(),
        features=list(champion_meta["features"]),
        bundles={"champion": str(champion_dir), HIST_GB: str(hist_dir)},
        registered={"champion": champion_meta["registered_model"], HIST_GB: hist_name},
        candidates={
            "champion": f"{champion_meta['candidate']} ({champion_meta['serving']})",
            HIST_GB: f"{HIST_GB} ({bundle.meta['serving']})",
        },
    )
    (workdir / "prepared.json").write_text(json.dumps(asdict(prepared), indent=2) + "\n")
    print(f"  prepared in {time.perf_counter() - started:.0f} s", flush=True)
    return prepared
