"""This tree's service against another commit's, head to head: the before/after guard of a change.

Both services run at once on CPU 0, each in its own session (own scheduler autogroup), loaded by
one wrk each from CPU 1 with the same single-row body; the figure is requests per second of server
CPU (event loop, threads and log writer), this tree over the other, median of ``--runs`` runs. The
method of ``serving.py``'s kept-throughput measurement, which agrees within a few percent from run
to run where back-to-back runs swing by tens of percent on a VM.

Each tree publishes its own bundle from the same trained model (``serving.py``'s cached wine red
champion), with its own ``mloop.bundle``, so a change of the bundle format is compared too::

    python benchmarks/ab_serving.py --against 3fbb0f1 [--runs 10] [--seconds 5] [--off]

``--off`` compares the two with metrics and prediction log off; ``--other-off`` only the other
side's (against the same commit: the kept ratio of ``serving.py``). ``--scrape-this 1`` has this tree's
service scraped (GET /metrics) every second during the runs, as Prometheus would: against the same
commit, the ratio is what the scrape costs. Needs the preparation of
``serving.py`` (run it once) and git.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serving_bench.bodies import write_bodies  # noqa: E402  (this folder's package)
from serving_bench.contenders import Contender, Context  # noqa: E402
from serving_bench.load import lua_script, run_wrk  # noqa: E402
from serving_bench.scenarios import head_to_head  # noqa: E402
from serving_bench.servers import (  # noqa: E402
    Server,
    base_env,
    http_request,
    running,
    service_server,
)
from serving_bench.settings import FULL, REPO  # noqa: E402

PUBLISH = """
import json, sys
from pathlib import Path
from mloop.bundle import write_bundle
source, target = Path(sys.argv[1]), Path(sys.argv[2])
meta = json.loads((source / "bundle.json").read_text())
meta = {k: v for k, v in meta.items() if k not in ("format_version", "files")}
write_bundle(target, source / "model", source / "schema.yaml", source / "reference_stats.json", meta)
"""


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that makes ``python -m service`` and ``mloop`` come from ``tree``."""
    env = base_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tree / "src"), str(tree)])
    return env


def publish(tree: Path, source: Path, target: Path) -> None:
    subprocess.run(
        [sys.executable, "-c", PUBLISH, str(source), str(target)],
        cwd=tree,
        env=tree_env(tree),
        check=True,
    )


def server(name: str, tree: Path, bundle: Path, workdir: Path, instrumented: bool) -> Server:
    """``python -m service`` of ``tree``, with its own log database."""
    token = "ab-" + os.urandom(8).hex()
    return service_server(
        name,
        bundle,
        workdir,
        instrumented,
        token,
        tree=tree,
        env=tree_env(tree),
        log_db=f"{name}.db",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", required=True, help="git revision to compare with")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--off", action="store_true", help="metrics and prediction log off")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/mloop-bench"))
    parser.add_argument(
        "--scrape-this", type=float, default=0.0, help="GET this tree's /metrics every N s"
    )
    parser.add_argument(
        "--other-off",
        action="store_true",
        help="metrics and log off on the other side only: the kept ratio (with --against HEAD)",
    )
    args = parser.parse_args()

    prepared = json.loads((args.workdir / "prepared.json").read_text())
    champion = Path(prepared["bundles"]["champion"])
    data = Path(prepared["data"])
    scratch = Path(tempfile.mkdtemp(prefix="mloop-ab-"))
    other = scratch / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(other), args.against],
        cwd=REPO, check=True, capture_output=True,
    )  # fmt: skip
    try:
        for tree, name in ((REPO, "this"), (other, "other")):
            publish(tree, champion, scratch / f"bundle-{name}")
        bodies = write_bodies(scratch, data, prepared["features"])
        lua = {"row": lua_script(scratch / "row.lua", bodies.row.read_bytes(), False)}
        ctx = Context(scratch, FULL, bodies, lua, "", scratch / "logs")
        on = not args.off
        this = server("this", REPO, scratch / "bundle-this", scratch, on)
        that = server("other", other, scratch / "bundle-other", scratch, on and not args.other_off)
        contenders = [
            Contender(s, "/predict", "row", bodies.row, None, "prediction", None)
            for s in (this, that)
        ]
        stop_scraping = threading.Event()
        scrapes: list[int] = []

        def scrape() -> None:
            while not stop_scraping.wait(args.scrape_this):
                status, _ = http_request(this.port, "GET", "/metrics")
                scrapes.append(status)

        with running(this), running(that):
            if args.scrape_this > 0:
                threading.Thread(target=scrape, daemon=True).start()
            for contender in contenders:  # warm up: first requests, the writer, the caches
                run_wrk(contender.server, "/predict", lua["row"], 64, 2, scratch, "warmup")
            runs = []
            for index in range(args.runs):
                result = head_to_head(ctx, *contenders, args.seconds)
                runs.append(result)
                print(
                    f"  run {index + 1}/{args.runs}: {result['on_cpu_us']} us this, "
                    f"{result['off_cpu_us']} us {args.against} per request "
                    f"(ratio {result['cpu_ratio']})",
                    flush=True,
                )
            stop_scraping.set()
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(other)],
            cwd=REPO, capture_output=True,
        )  # fmt: skip
    ratios = [r["cpu_ratio"] for r in runs if r["cpu_ratio"] is not None]
    this_us = statistics.median(r["on_cpu_us"] for r in runs)
    other_us = statistics.median(r["off_cpu_us"] for r in runs)
    mode = "metrics and log off" if args.off else "metrics and log on"
    if args.other_off:
        mode = f"metrics and log on, {args.against}'s off: the kept ratio"
    if args.scrape_this > 0:
        ok = sum(1 for status in scrapes if status == 200)
        mode += f"; this one scraped every {args.scrape_this:g} s ({ok}/{len(scrapes)} scrapes 200)"
    print(
        f"\nrequests per server CPU second, this tree over {args.against} ({mode}): "
        f"median {statistics.median(ratios):.3f} (range {min(ratios):.3f}-{max(ratios):.3f}, "
        f"{len(ratios)} runs of {args.seconds} s); server CPU per request {this_us:.1f} us "
        f"against {other_us:.1f} us"
    )


if __name__ == "__main__":
    main()
