"""The prediction log: every prediction and every feedback label, in a real database.

Write path: the request-side :mod:`.buffer` → :mod:`.shipper` (queue, thread) → :mod:`.supervisor`
→ the writer process (:mod:`.writer`), which receives the :mod:`.wire` format and inserts rows
(:mod:`.inserts`) into the :mod:`.tables`. Read path: :mod:`.reader` (feedback, labelled rows),
:mod:`.export` and :mod:`.drift_report` (the CLI, ``python -m service.prediction_log``). Ids:
:mod:`.ids`. Kept import-light: the writer process imports this package."""
