"""monitoring/ is configuration only: each file is checked by its own tool, and each alert's route by
Alertmanager's. The rules' behaviour (fires / must not fire) is in promtool's own unit tests."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.helpers.paths import REPO

PROMETHEUS = REPO / "monitoring" / "prometheus"
ALERTMANAGER_CONFIG = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = PROMETHEUS / "tests" / "alerts_test.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: make system-deps (Debian prometheus, prometheus-alertmanager)"
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60)


def alerts() -> list[dict[str, Any]]:
    found = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            found += [rule for rule in group["rules"] if "alert" in rule]
    return found


def test_prometheus_config_and_its_rule_files_pass_promtool() -> None:
    checked = run(tool("promtool"), "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for path in RULE_FILES:  # check config reports these too; named here so a new file is covered
        assert f"rules/{path.name}" in checked.stdout


def test_every_alert_behaves_as_its_promtool_unit_tests_say() -> None:
    result = run(tool("promtool"), "test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case_that_fires_and_one_that_must_not() -> None:
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fires, silent = set(), set()
    for case in cases:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fires == set(), "alerts without a firing case"
    assert names - silent == set(), "alerts without a case where they must stay silent"


def test_every_alert_says_what_it_means_and_how_bad_it_is() -> None:
    for rule in alerts():
        assert rule["labels"]["severity"] in ("page", "warning"), rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]


def test_alertmanager_config_passes_amtool() -> None:
    result = run(tool("amtool"), "check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_each_alert_reaches_its_receiver(rule: dict[str, Any]) -> None:
    """Drift and live-quality alerts (action=retrain) go to the retrainer, the others to people."""
    expected = "retrainer" if rule["labels"].get("action") == "retrain" else "operations"
    labels = [f"alertname={rule['alert']}", *(f"{k}={v}" for k, v in rule["labels"].items())]
    labels += ["job=mloop-service", "instance=service:8000"]
    result = run(
        tool("amtool"), "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}",
        f"--verify.receivers={expected}", *labels,
    )  # fmt: skip
    assert result.returncode == 0, f"{rule['alert']} -> {result.stdout.strip()} (want {expected})"


def test_only_drift_and_quality_alerts_ask_for_a_retrain() -> None:
    retrain = {rule["alert"] for rule in alerts() if rule["labels"].get("action") == "retrain"}
    assert retrain == {"FeatureDrift", "LiveErrorAboveHoldout", "LiveErrorRateAboveHoldout"}
