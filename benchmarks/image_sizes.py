"""What each image installs, measured without Docker: a fresh virtual environment per image with the
image's dependency groups, its site-packages size and package count, against the full install.

    python benchmarks/image_sizes.py [--lock]

``--lock`` also writes ``docker/constraints-<image>.txt`` (``pip freeze`` of that environment), the
pins the Dockerfiles install with. Takes a few minutes (TensorFlow is large).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMAGES = {
    "service": ".[serve]",
    "service-keras": ".[serve,tensorflow]",
    "retrainer": ".[serve,pipeline,retrain,tensorflow]",
}
LOCKED = ("service", "retrainer")


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def measure(name: str, requirement: str, workdir: Path, lock: bool) -> tuple[int, int, float]:
    venv = workdir / name
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    started = time.perf_counter()
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", requirement],
        cwd=REPO, check=True,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    frozen = subprocess.run(
        [str(python), "-m", "pip", "freeze", "--exclude", "mloop", "--exclude", "pip"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    if lock and name in LOCKED:
        header = f"# pip freeze of {requirement} (benchmarks/image_sizes.py --lock)\n"
        (REPO / "docker" / f"constraints-{name}.txt").write_text(header + frozen)
    (site,) = (venv / "lib").glob("python3.*/site-packages")
    return folder_bytes(site), len(frozen.splitlines()), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lock", action="store_true", help="write docker/constraints-*.txt")
    args = parser.parse_args()
    leftover = not (REPO / "build").exists()  # a non-editable install writes build/ here
    with tempfile.TemporaryDirectory(prefix="mloop-images-") as tmp:
        rows = []
        for name, requirement in IMAGES.items():
            size, packages, seconds = measure(name, requirement, Path(tmp), args.lock)
            rows.append((name, requirement, size, packages, seconds))
            print(f"{name:<14} {requirement:<40} {size / 2**20:8.0f} MiB {packages:4d} packages "
                  f"(pip install {seconds:.0f} s)", flush=True)  # fmt: skip
    if leftover:
        shutil.rmtree(REPO / "build", ignore_errors=True)
    full = max(size for _, _, size, _, _ in rows)
    for name, _, size, _, _ in rows:
        print(f"{name}: {size / full:.2f} of the largest")


if __name__ == "__main__":
    main()
