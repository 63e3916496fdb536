"""The prediction log's offline tools: ``python -m service.prediction_log export|drift-report``.

Both read a log the service has written (:class:`~service.prediction_log.reader.LogReader`); run
with ``--help`` for the options.
"""

from __future__ import annotations

import typer

from service.prediction_log.drift_report import drift_report
from service.prediction_log.export import export

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Offline tools on the prediction log."
)
app.command("export")(export)
app.command("drift-report")(drift_report)

if __name__ == "__main__":
    app()
