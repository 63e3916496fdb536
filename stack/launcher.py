"""Start the four processes of the loop on loopback, wired together, and stop them again.

``make stack`` and the closed-loop test both come through :func:`launch`; the test only passes
shorter intervals (``Tuning``), never another wiring.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from stack.processes import (
    PROMETHEUS_DIR,
    REPO,
    Process,
    alertmanager_config,
    prometheus_config,
    start_alertmanager,
    start_prometheus,
    start_python,
)

TOKENS = ("admin", "feedback", "retrainer")


@dataclass(frozen=True)
class Ports:
    service: int = 8000
    retrainer: int = 8090
    prometheus: int = 9090
    alertmanager: int = 9093


@dataclass(frozen=True)
class Tuning:
    """Intervals of the stack. The defaults are the shipped ones; a test shortens them."""

    scrape_interval: str | None = None  # None: prometheus.yml's
    rule_for: str | None = None  # every alert's `for:` replaced (None: as shipped)
    alertmanager_waits: str | None = None  # group_wait and group_interval of every route
    retrainer_cooldown_s: float | None = None
    service_env: dict[str, str] = field(default_factory=dict)


# `make stack`'s default: the loop closes in a minute or two on a laptop. The shipped intervals
# (alerts held for 10 minutes, Alertmanager gathering for a minute) are for production.
DEMO = Tuning(
    scrape_interval="5s",
    rule_for="30s",
    alertmanager_waits="10s",
    retrainer_cooldown_s=600.0,
    service_env={"MLOOP_WATCH_INTERVAL_S": "1"},
)


@dataclass
class RunningStack:
    service: Process
    retrainer: Process
    prometheus: Process
    alertmanager: Process
    tokens: dict[str, Path]
    prediction_log_url: str

    def processes(self) -> list[tuple[str, Process]]:
        return [("service", self.service), ("retrainer", self.retrainer),
                ("prometheus", self.prometheus), ("alertmanager", self.alertmanager)]  # fmt: skip

    def stop(self) -> None:
        for _, process in reversed(self.processes()):
            process.stop()


def ensure_tokens(folder: Path) -> dict[str, Path]:
    """One random token per protected endpoint, made once in ``folder`` (mode 600, outside git)."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    paths = {}
    for name in TOKENS:
        path = folder / f"{name}_token"
        if not path.is_file():
            path.write_text(secrets.token_urlsafe(32) + "\n")
            path.chmod(0o600)
        paths[name] = path
    return paths


def _rules(workdir: Path, rule_for: str | None) -> Path:
    """The rule files as shipped, or copies with every `for:` set to ``rule_for``; their folder."""
    if rule_for is None:
        return PROMETHEUS_DIR / "rules"
    folder = workdir / "rules"
    folder.mkdir(parents=True, exist_ok=True)
    for path in (PROMETHEUS_DIR / "rules").glob("*.yml"):
        text = re.sub(r"^(\s+)for: \S+$", rf"\1for: {rule_for}", path.read_text(), flags=re.M)
        (folder / path.name).write_text(text)
    return folder


def launch(
    workdir: Path,
    repo: Path = REPO,
    ports: Ports = Ports(),
    tuning: Tuning = Tuning(),
    secrets_dir: Path | None = None,
) -> RunningStack:
    """Start service, retrainer, Alertmanager and Prometheus (in that order); logs in ``workdir``.

    The service serves ``repo``'s champion and logs to ``workdir/predictions.db``; the retrainer
    runs the pipeline in ``repo`` on that log's labelled rows.
    """
    workdir = workdir.resolve()  # Prometheus reads rule paths relative to its config file
    workdir.mkdir(parents=True, exist_ok=True)
    tokens = ensure_tokens((secrets_dir or workdir / "secrets").resolve())
    log_url = f"sqlite:///{(workdir / 'predictions.db').resolve()}"
    bundle = (repo / "models" / "champion").resolve()
    started: list[Process] = []
    try:
        service = start_python(
            "service", ports.service,
            {"MLOOP_BUNDLE_DIR": str(bundle), "MLOOP_PREDICTION_LOG_URL": log_url,
             "MLOOP_ADMIN_TOKEN_FILE": str(tokens["admin"]),
             "MLOOP_FEEDBACK_TOKEN_FILE": str(tokens["feedback"]), **tuning.service_env},
            workdir / "service.log", "/health",
        )  # fmt: skip
        started.append(service)
        retrainer_env = {
            "MLOOP_RETRAINER_TOKEN_FILE": str(tokens["retrainer"]),
            "MLOOP_RETRAINER_REPO_DIR": str(repo.resolve()),
            "MLOOP_RETRAINER_PREDICTION_LOG_URL": log_url,
            "MLOOP_RETRAINER_BUNDLE_DIR": str(bundle),
        }
        if tuning.retrainer_cooldown_s is not None:
            retrainer_env["MLOOP_RETRAINER_COOLDOWN_S"] = str(tuning.retrainer_cooldown_s)
        retrainer = start_python(
            "retrainer", ports.retrainer, retrainer_env, workdir / "retrainer.log", "/health"
        )
        started.append(retrainer)
        am_config = alertmanager_config(
            f"{retrainer.url}/alerts", tokens["retrainer"], tuning.alertmanager_waits
        )
        alertmanager = start_alertmanager(workdir, am_config, ports.alertmanager)
        started.append(alertmanager)
        config = prometheus_config(
            [f"127.0.0.1:{ports.service}"], f"127.0.0.1:{ports.retrainer}",
            f"127.0.0.1:{ports.alertmanager}", ports.prometheus,
        )  # fmt: skip
        config["rule_files"] = [str(_rules(workdir, tuning.rule_for) / "*.yml")]
        if tuning.scrape_interval:
            config["global"].update(
                scrape_interval=tuning.scrape_interval, evaluation_interval=tuning.scrape_interval
            )
        prometheus = start_prometheus(workdir, config, ports.prometheus)
        started.append(prometheus)
        check_rules_loaded(prometheus.url)
    except BaseException:
        for process in reversed(started):
            process.stop()
        raise
    return RunningStack(service, retrainer, prometheus, alertmanager, tokens, log_url)


def check_rules_loaded(url: str) -> None:
    """Fail unless Prometheus loaded every shipped rule group (an unmatched rule_files glob is no
    error to Prometheus: it would run without a single alert)."""
    shipped = sum(
        len(yaml.safe_load(path.read_text())["groups"])
        for path in (PROMETHEUS_DIR / "rules").glob("*.yml")
    )
    groups = httpx.get(f"{url}/api/v1/rules", timeout=5).json()["data"]["groups"]
    if len(groups) != shipped:
        raise RuntimeError(f"Prometheus loaded {len(groups)} rule groups of {shipped}")


def describe(stack: RunningStack) -> str:
    return yaml.safe_dump(
        {
            "service": f"{stack.service.url}/docs",
            "retrainer": f"{stack.retrainer.url}/decisions",
            "prometheus": f"{stack.prometheus.url}/alerts",
            "alertmanager": stack.alertmanager.url,
            "tokens": {name: str(path) for name, path in stack.tokens.items()},
        },
        sort_keys=False,
    )
