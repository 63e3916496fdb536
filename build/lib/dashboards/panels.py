"""One way to declare a panel: its queries, unit, and what to do when it looks wrong."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, statetimeline, timeseries
from grafana_foundation_sdk.models.dashboard import DataSourceRef

PROMETHEUS = DataSourceRef(type_val="prometheus", uid="mloop-prometheus")  # provisioning's uid
REF_IDS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    title: str
    what: str  # what the panel shows
    when_wrong: str  # what to do when it looks wrong
    queries: list[Query]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | state
    width: int = 12
    height: int = 8

    @property
    def description(self) -> str:
        return f"{self.what} When it looks wrong: {self.when_wrong}"


def build_panel(spec: PanelSpec) -> Any:
    builder: Any
    if spec.kind == "stat":
        builder = stat.Panel()
    elif spec.kind == "state":
        builder = statetimeline.Panel()
    else:
        builder = timeseries.Panel().fill_opacity(10)
    builder = (
        builder.title(spec.title)
        .description(spec.description)
        .datasource(PROMETHEUS)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    for ref_id, query in zip(REF_IDS, spec.queries):
        builder = builder.with_target(
            prometheus.Dataquery().ref_id(ref_id).expr(query.expr).legend_format(query.legend)
        )
    return builder


def build_dashboard(
    uid: str, title: str, description: str, rows: list[tuple[str, list[PanelSpec]]]
) -> Any:
    board = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["mloop"])
        .refresh("30s")
        .time("now-3h", "now")
        .editable()
    )
    for row_title, specs in rows:
        board = board.with_row(dashboard.Row(row_title))
        for spec in specs:
            board = board.with_panel(build_panel(spec))
    return board


def queries(rows: list[tuple[str, list[PanelSpec]]]) -> list[str]:
    return [q.expr for _, specs in rows for spec in specs for q in spec.queries]
