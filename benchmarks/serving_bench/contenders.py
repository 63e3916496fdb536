"""The servers of one comparison, each with how to talk to it, and the run's shared context.

``build_contenders`` lists every server in the order they are measured: bare ASGI on uvloop and on
asyncio, then per model (champion, hist_gb) this service with metrics and prediction log on and
off, and ``mlflow models serve``. ``sanity`` sends one request before any load: a contender that
does not accept its body would give figures of errors.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serving_bench.bodies import Bodies
from serving_bench.servers import Server, bare_server, http_request, mlflow_server, service_server
from serving_bench.settings import HIST_GB, Profile

if TYPE_CHECKING:  # not at run time: that would import the pipeline's test helpers
    from serving_bench.prepare import Prepared


@dataclass
class Contender:
    """A server and how to talk to it (its single-row and batch bodies differ: MLflow's format)."""

    server: Server
    path: str
    lua: str
    row: Path
    batch: Path | None
    answer_key: str | None  # JSON key of a single-row answer's prediction (sanity check)
    batch_key: str | None  # JSON key of a batch answer's predictions
    tails: bool = True


@dataclass
class Context:
    """What every measurement needs: the workdir, the time budget, the bodies, the wrk scripts by
    name ("row", "row_strict", "row_mlflow"), the admin token, and where the logs go."""

    workdir: Path
    profile: Profile
    bodies: Bodies
    lua: dict[str, Path]
    token: str
    log_dir: Path


def sanity(contender: Contender) -> Any:
    """One request before loading: the body must be accepted, or every figure would be of errors."""
    server = contender.server
    status, payload = http_request(
        server.port, "POST", contender.path, contender.row.read_bytes(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    if status != 200:
        raise RuntimeError(f"{server.name}: {contender.path} answered {status}: {payload[:500]!r}")
    if contender.answer_key is None:
        return None
    value = json.loads(payload)[contender.answer_key]
    return value[0] if isinstance(value, list) else value


def build_contenders(ctx: Context, prepared: Prepared) -> dict[str, Contender]:
    """Every server of the comparison, in the order they are measured."""
    b = ctx.bodies
    contenders = {}
    # The target is against uvloop, the fastest stack (the machine's ceiling); the asyncio one is
    # the ceiling of the service's own default loop, to tell the loop's share of the gap apart.
    for loop in ("uvloop", "asyncio"):
        server = bare_server(ctx.workdir, loop)
        contenders[server.name] = Contender(server, "/predict", "row", b.row, None, None, None)
    for which in ("champion", HIST_GB):
        bundle = Path(prepared.bundles[which])
        for suffix, instrumented in (("", True), ("-off", False)):
            name = f"service-{which}{suffix}"
            server = service_server(name, bundle, ctx.workdir, instrumented, ctx.token)
            contenders[name] = Contender(
                server, "/predict", "row", b.row, b.batch, "prediction", "predictions",
                tails=instrumented,
            )  # fmt: skip
        server = mlflow_server(
            f"mlflow-{which}", prepared.registered[which], Path(prepared.repo), ctx.workdir
        )
        contenders[f"mlflow-{which}"] = Contender(
            server, "/invocations", "row_mlflow", b.row_mlflow, b.batch_mlflow, "predictions",
            "predictions",
        )  # fmt: skip
    return contenders
