"""``python -m stack`` (``make stack``): the loop on loopback until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import typer
from rich.console import Console

from stack.launcher import DEMO, Ports, Tuning, describe, launch
from stack.processes import REPO

console = Console()


def main(
    workdir: Path = typer.Option(Path(".stack"), help="logs, Prometheus' data, the prediction log"),
    secrets_dir: Path = typer.Option(Path(".secrets"), help="tokens (made once, outside git)"),
    service_port: int = typer.Option(8000),
    retrainer_port: int = typer.Option(8090),
    prometheus_port: int = typer.Option(9090),
    alertmanager_port: int = typer.Option(9093),
    shipped_timings: bool = typer.Option(
        False,
        help="the shipped rule and Alertmanager intervals (alerts after 10 min), not the demo's",
    ),
) -> None:
    """Start the service, the retrainer, Prometheus and Alertmanager on 127.0.0.1; Ctrl-C stops them."""
    champion = REPO / "models" / "champion" / "bundle.json"
    if not champion.is_file():
        console.print("[yellow]no champion yet:[/] the service waits for one (run `make repro`)")
    ports = Ports(service_port, retrainer_port, prometheus_port, alertmanager_port)
    with console.status("starting service, retrainer, Alertmanager, Prometheus ..."):
        tuning = Tuning() if shipped_timings else DEMO
        running = launch(workdir, ports=ports, tuning=tuning, secrets_dir=secrets_dir)
    console.print("[green]the stack is up[/] (logs in %s)\n%s" % (workdir, describe(running)))
    if not shipped_timings:
        console.print(
            "demo timings: alerts fire after 30 s of drift (shipped: 10 min), Alertmanager waits "
            "10 s, one retrain per 10 min (--shipped-timings for the shipped ones)"
        )
    console.print("next: [bold]make loop-demo[/] in another terminal; Ctrl-C here stops everything")
    stopped = threading.Event()
    # Both set explicitly: a process started in the background inherits an ignored SIGINT.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        while not stopped.wait(1.0):
            for name, process in running.processes():
                if process.process.poll() is not None:
                    console.print(f"[red]{name} exited[/]; see {process.log}")
                    stopped.set()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
        console.print("stopped")


if __name__ == "__main__":
    typer.run(main)
