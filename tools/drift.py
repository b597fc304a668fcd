"""API drift: run the fast tests and the lesson notebooks against other environments (``make drift``).

Each environment is a pin file in ``drift/`` (``colab``: what Google Colab ships plus what the setup
cell installs; ``latest``: the newest releases). For each, a virtual environment ``.venv-drift/<name>``
is made with those pins and this package, then ``pytest -m "not notebook and not slow"`` and every
solution notebook run in it. A report per environment goes to ``build/drift/<name>.md``; the exit
status is non-zero when any environment failed to install, or a test or notebook failed.

    python tools/drift.py              # every environment in drift/
    python tools/drift.py latest       # one
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PINS = ROOT / "drift"
OUT = ROOT / "build" / "drift"


def _run(cmd: list[str], log: Path, env: dict | None = None) -> tuple[int, float]:
    start = time.perf_counter()
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.call(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT, env=env)
    return rc, time.perf_counter() - start


def check(name: str, python: str) -> dict:
    """Install environment ``name`` and run the fast tests and the notebooks in it."""
    pins = PINS / f"{name}.txt"
    venv = ROOT / ".venv-drift" / name
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"{name}.log"
    log.write_text(f"drift environment {name} ({pins.relative_to(ROOT)})\n")
    result = {"name": name, "steps": []}
    py = str(venv / "bin" / "python")
    stamp = venv / ".pins"  # the pins this environment was installed from: reused while they are unchanged
    fresh = not (stamp.exists() and stamp.read_text() == pins.read_text())
    if fresh and venv.exists():
        shutil.rmtree(venv)
    install = [
        ("create", [python, "-m", "venv", str(venv)]),
        ("install", [py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r", str(pins), "-e", "."]),
    ]
    # the pin check fails in a drift environment by design: it differs from requirements.txt
    pin_check = "tests/test_environment.py::test_the_pinned_versions_are_the_installed_ones"
    steps = (install if fresh else []) + [
        (
            "fast tests",
            [
                py,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "-m",
                "not notebook and not slow",
                "--deselect",
                pin_check,
            ],
        ),
        ("notebooks", [py, "tools/run_course.py", "--out", str(OUT / name)]),
    ]
    env = {**os.environ, "PYTHONNOUSERSITE": "1"}
    for label, cmd in steps:
        rc, secs = _run(cmd, log, env)
        result["steps"].append((label, rc, secs))
        if rc != 0:
            break
        if label == "install":
            stamp.write_text(pins.read_text())
    result["ok"] = all(rc == 0 for _, rc, _ in result["steps"]) and len(result["steps"]) == len(steps)
    versions = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "freeze"], capture_output=True, text=True)
    lines = [
        f"# drift: {name}",
        "",
        f"pins: `drift/{name}.txt`; result: **{'pass' if result['ok'] else 'FAIL'}**",
        "",
        "| step | exit status | seconds |",
        "|---|---|---|",
    ]
    lines += [f"| {label} | {rc} | {secs:.0f} |" for label, rc, secs in result["steps"]]
    lines += ["", "Installed:", "", "```", versions.stdout.strip(), "```", "", f"Full log: `build/drift/{name}.log`"]
    (OUT / f"{name}.md").write_text("\n".join(lines) + "\n")
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("envs", nargs="*", help="environment names (default: every file in drift/)")
    ap.add_argument("--python", default=sys.executable, help="the Python to build each environment with")
    args = ap.parse_args(argv)
    names = args.envs or sorted(p.stem for p in PINS.glob("*.txt"))
    failed = []
    for name in names:
        res = check(name, args.python)
        steps = ", ".join(
            f"{label} {'ok' if rc == 0 else f'failed ({rc})'} {secs:.0f} s" for label, rc, secs in res["steps"]
        )
        print(f"{name}: {'pass' if res['ok'] else 'FAIL'}: {steps}")
        if not res["ok"]:
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
