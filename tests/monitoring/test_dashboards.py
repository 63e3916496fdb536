"""The dashboards are code: the committed JSON is what the code generates, and every panel says
what it shows and what to do when it looks wrong, on the provisioned Prometheus."""

from __future__ import annotations

import json
import subprocess
import sys

import yaml

from dashboards.__main__ import OUT, rendered
from tests.helpers.paths import REPO

PROVISIONING = REPO / "monitoring" / "grafana" / "provisioning"


def test_the_committed_json_is_what_the_code_generates() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "dashboards", "--check"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in OUT.glob("*.json")) == sorted(rendered())


def test_every_panel_explains_itself_and_uses_the_provisioned_prometheus() -> None:
    sources = yaml.safe_load((PROVISIONING / "datasources" / "datasources.yml").read_text())
    uids = {s["type"]: s["uid"] for s in sources["datasources"]}
    titles = []
    for text in rendered().values():
        board = json.loads(text)
        titles.append(board["title"])
        panels = [p for p in board["panels"] if p["type"] != "row"]
        assert panels, board["title"]
        for panel in panels:
            assert "When it looks wrong:" in panel["description"], panel["title"]
            assert panel["datasource"] == {"type": "prometheus", "uid": uids["prometheus"]}
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
    assert titles == ["mloop / service", "mloop / model", "mloop / retraining"]


def test_grafana_loads_the_folder_the_json_is_written_to() -> None:
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "dashboards.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"] == "/var/lib/grafana/dashboards"
