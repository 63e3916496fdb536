"""docker-compose.yml and the Dockerfiles, checked with the tools that run without a Docker engine:
the Compose specification's schema, docker-compose's own parser, hadolint; and the promises the
files make (health checks, named volumes, no secrets, a serving image without training code)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.paths import REPO

COMPOSE = REPO / "docker-compose.yml"
DOCKERFILES = sorted((REPO / "docker").glob("*.Dockerfile"))
TRAINING_ONLY = ("mlflow", "dvc", "pandera", "evidently", "skl2onnx", "tensorflow", "keras")


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def test_the_compose_file_follows_the_compose_specification() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)], capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_parses_and_resolves_it(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    assert binary, "docker-compose is missing: make system-deps (Debian docker-compose)"
    env_file = tmp_path / ".env"
    env_file.write_text((REPO / ".env.example").read_text())
    result = subprocess.run(
        [binary, "--project-directory", str(REPO), "--env-file", str(env_file), "-f", str(COMPOSE),
         "config", "-q"], capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_every_service_is_health_checked_and_restarted() -> None:
    services = compose()["services"]
    assert set(services) == {
        "service", "retrainer", "mlflow", "prometheus", "alertmanager", "grafana"
    }  # fmt: skip
    for name, spec in services.items():
        assert spec["healthcheck"]["test"], name
        assert spec["restart"] == "unless-stopped", name


def test_state_lives_on_named_volumes_and_mlflow_accepts_its_compose_name() -> None:
    document = compose()
    volumes = set(document["volumes"])
    assert {"predictions", "mlflow", "prometheus", "alertmanager", "grafana"} <= volumes
    assert "mlflow:/mlflow" in document["services"]["mlflow"]["volumes"]
    mlflow = (REPO / "docker" / "mlflow.Dockerfile").read_text()
    hosts = re.search(r'"--allowed-hosts", "([^"]+)"', mlflow)
    assert hosts and "mlflow:5000" in hosts.group(1).split(",")
    assert (
        document["services"]["retrainer"]["environment"]["MLFLOW_TRACKING_URI"]
        == "http://mlflow:5000"
    )


def test_no_secret_is_in_the_file_only_paths_to_mounted_ones() -> None:
    document = compose()
    for name, spec in document["services"].items():
        for key, value in (spec.get("environment") or {}).items():
            if re.search(r"TOKEN|PASSWORD|SECRET", key):
                assert key.endswith("_FILE") and str(value).startswith("/run/secrets/"), (name, key)
    for secret in document["secrets"].values():
        assert secret["file"].startswith("./.secrets/")
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert ".secrets/" in ignored and ".env" in ignored


def test_each_monitoring_file_is_mounted_where_its_config_expects_it() -> None:
    services = compose()["services"]
    assert "./monitoring/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    assert "./monitoring/alertmanager:/etc/alertmanager:ro" in services["alertmanager"]["volumes"]
    alertmanager = yaml.safe_load((REPO / "monitoring/alertmanager/alertmanager.yml").read_text())
    (hook,) = alertmanager["receivers"][0]["webhook_configs"]
    assert hook["url"] == "http://retrainer:8090/alerts"
    assert (
        hook["http_config"]["authorization"]["credentials_file"] == "/run/secrets/retrainer_token"
    )
    assert "retrainer_token" in services["alertmanager"]["secrets"]
    grafana = services["grafana"]["volumes"]
    assert "./monitoring/grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_each_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    result = subprocess.run([binary, str(dockerfile)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=[p.stem for p in DOCKERFILES])
def test_each_image_is_multi_stage_and_runs_as_a_non_root_user(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert len(re.findall(r"^FROM ", text, re.M)) >= 2, "a build stage and a runtime stage"
    user = re.findall(r"^USER (\S+)", text, re.M)
    assert user and not user[-1].startswith(("root", "0")), user
    assert "HEALTHCHECK" in text


def test_the_serving_image_installs_no_training_dependency() -> None:
    text = (REPO / "docker" / "service.Dockerfile").read_text()
    assert re.search(r"^ARG EXTRAS=serve$", text, re.M)
    assert "COPY retrainer" not in text and "COPY tests" not in text
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    serving = [*project["dependencies"], *project["optional-dependencies"]["serve"]]
    names = {re.split(r"[<>=\[ ]", r)[0].lower() for r in serving}
    assert not names & set(TRAINING_ONLY), names & set(TRAINING_ONLY)
    constraints = (REPO / "docker" / "constraints-service.txt").read_text().splitlines()
    pinned = [line for line in constraints if line and not line.startswith("#")]
    assert pinned and all("==" in line for line in pinned)
    assert not {line.split("==")[0].lower() for line in pinned} & set(TRAINING_ONLY)
