"""The MLflow model registry as the pipeline uses it.

- The champion is the version the alias ``champion`` points at; ``challenger`` marks the last one
  registered.
- One version per training run: promoting again from the same run reuses its version.
- Each version carries its serving bundle as an artifact (``bundle/``), so that a kept champion
  can be put back in ``models/champion/`` whatever the folder held before (another dataset's
  model, say).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mloop.bundle import Bundle, install_bundle

CHAMPION_ALIAS = "champion"
CHALLENGER_ALIAS = "challenger"
CANDIDATE_ARTIFACT = "candidate"  # the candidate's folder, logged by the train stage
BUNDLE_ARTIFACT = "bundle"  # the serving bundle, logged when the version is registered


@dataclass(frozen=True)
class Version:
    name: str
    version: str
    run_id: str


def client() -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient()


def champion(name: str) -> Version | None:
    """The version the ``champion`` alias points at, or None."""
    from mlflow.exceptions import MlflowException

    try:
        found = client().get_model_version_by_alias(name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    return Version(name, str(found.version), str(found.run_id))


def download(run_id: str, artifact: str, destination: Path) -> Path | None:
    """A run's artifact folder, downloaded below ``destination``; None if the run has none."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        if not client().list_artifacts(run_id, artifact):
            return None
        local = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=artifact, dst_path=str(destination)
        )
    except (MlflowException, OSError):
        return None
    return Path(local)


def version_of_run(name: str, run_id: str) -> str | None:
    """The version already registered from ``run_id``, if any (the oldest)."""
    versions = client().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    numbers = sorted(int(v.version) for v in versions)
    return str(numbers[0]) if numbers else None


def register(
    name: str, model_uri: str, run_id: str, promoted: bool, reason: str
) -> tuple[Version, bool]:
    """Register the run's model (or find the version registered from it before) and move the
    aliases; returns the version and whether it is new."""
    import mlflow

    registry = client()
    decision = "promoted" if promoted else "rejected"
    known = version_of_run(name, run_id)
    if known is None:
        created = mlflow.register_model(
            model_uri, name, tags={"mloop.decision": decision, "mloop.reason": reason}
        )
        version, new = str(created.version), True
    else:
        version, new = known, False
        registry.set_model_version_tag(name, version, "mloop.decision", decision)
        registry.set_model_version_tag(name, version, "mloop.reason", reason)
    registry.set_registered_model_alias(name, CHALLENGER_ALIAS, version)
    if promoted:
        registry.set_registered_model_alias(name, CHAMPION_ALIAS, version)
    return Version(name, version, run_id), new


def has_bundle(version: Version) -> bool:
    return bool(client().list_artifacts(version.run_id, BUNDLE_ARTIFACT))


def log_bundle(version: Version, bundle_dir: Path) -> None:
    """Attach a version's serving bundle to its run (overwriting an earlier copy)."""
    client().log_artifacts(version.run_id, str(bundle_dir), BUNDLE_ARTIFACT)


def restore_bundle(version: Version, destination: Path) -> Bundle | None:
    """Put the version's logged bundle in place of ``destination``; None if it has none (a version
    registered before bundles were logged)."""
    with tempfile.TemporaryDirectory() as scratch:
        local = download(version.run_id, BUNDLE_ARTIFACT, Path(scratch))
        if local is None:
            return None
        return install_bundle(local, destination)
