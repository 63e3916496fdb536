"""Write the dashboards' JSON (``python -m dashboards``), or check it is current (``--check``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from dashboards import model, retraining, service
from dashboards.panels import build_dashboard

OUT = Path(__file__).resolve().parents[1] / "monitoring" / "grafana" / "dashboards"
MODULES = (service, model, retraining)


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    files = {}
    for module in MODULES:
        board: Any = build_dashboard(module.UID, module.TITLE, module.DESCRIPTION, module.ROWS)
        text = json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"
        files[f"{module.UID}.json"] = text
    return files


def main(
    check: bool = typer.Option(False, "--check", help="fail if the committed JSON is stale"),
    out: Path = typer.Option(OUT, help="folder of the dashboards' JSON"),
) -> None:
    """Generate the Grafana dashboards from dashboards/*.py."""
    stale = []
    for name, text in rendered().items():
        path = out / name
        if check:
            if not path.is_file() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        sys.exit(f"stale dashboards: {', '.join(stale)} (run: python -m dashboards)")


if __name__ == "__main__":
    typer.run(main)
