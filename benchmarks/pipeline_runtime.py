"""Wall time of `dvc repro` on the default dataset: from scratch, then again with nothing changed.

Target: under 3 minutes from scratch on a 2-core machine, all candidates including the Keras MLP;
the second run should do no work at all. Run from the repo root with the venv active:

    python benchmarks/pipeline_runtime.py
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.e2e.conftest import dvc_repro, fresh_copy  # noqa: E402

TARGET_SECONDS = 180.0


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="mloop-runtime-"))
    try:
        repo = fresh_copy(workdir / "repo")
        started = time.perf_counter()
        first = dvc_repro(repo)
        from_scratch = time.perf_counter() - started
        started = time.perf_counter()
        second = dvc_repro(repo)
        unchanged = time.perf_counter() - started
        stages = re.findall(r"Running stage '(\w+)'", first.stdout)
        rerun = re.findall(r"Running stage '(\w+)'", second.stdout)
        print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
        print(
            f"from scratch : {from_scratch:6.1f} s for {len(stages)} stages ({', '.join(stages)})"
        )
        print(f"  vs target  : {from_scratch / TARGET_SECONDS:.2f} of {TARGET_SECONDS:.0f} s")
        print(f"nothing changed: {unchanged:6.1f} s, stages re-run: {len(rerun)} {rerun or ''}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
