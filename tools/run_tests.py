"""``make test`` on several cores: the suite on pytest-xdist workers, and the website test beside them.

    python tools/run_tests.py --jobs 2 --executed build/test-executed

The website test (``tests/test_site.py``) builds the site from the notebooks that the notebook tests
execute, so it cannot start before the last of them is written. Those tests run first (the longest first,
``tests/conftest.py``), and the rest of the suite takes minutes after them: the website test starts as soon
as every lesson's executed notebook is in ``--executed`` (or the suite has ended: it then runs any missing
lesson itself) and runs beside the workers, its output printed when it ends. The exit status is the first
non-zero one of the two runs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKS = ["-m", "not model_card"]


def notebooks_ready(executed: Path) -> bool:
    sys.path.insert(0, str(ROOT / "tools"))
    import build_site

    return not build_site.missing_executed(executed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, required=True, help="pytest-xdist workers")
    ap.add_argument("--executed", type=Path, required=True, help="where the notebook tests write executed copies")
    args = ap.parse_args(argv)
    python = sys.executable
    env = dict(os.environ, QLORA_COURSE_EXECUTED=str(args.executed))
    suite_env = dict(env, QLORA_COURSE_THREADS="1", OMP_NUM_THREADS="1")
    suite_cmd = [python, "-m", "pytest", *MARKS, "-n", str(args.jobs), "--dist", "loadscope"]
    suite_cmd += ["--no-loadscope-reorder", "--ignore=tests/test_site.py"]
    site_cmd = [python, "-m", "pytest", *MARKS, "tests/test_site.py"]
    print(" ".join(suite_cmd[1:]), flush=True)
    suite = subprocess.Popen(suite_cmd, cwd=ROOT, env=suite_env)
    site, log = None, tempfile.TemporaryFile(mode="w+")
    try:
        while suite.poll() is None and site is None:
            if notebooks_ready(args.executed):
                site = subprocess.Popen(site_cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
                print("\n[every lesson executed: the website test runs beside the workers]", flush=True)
                break
            time.sleep(5)
        suite_rc = suite.wait()
        if site is None:
            site = subprocess.Popen(site_cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        site_rc = site.wait()
    except KeyboardInterrupt:
        for proc in (suite, site):
            if proc is not None:
                proc.terminate()
        raise
    log.seek(0)
    print("\n" + " ".join(site_cmd[1:]) + "\n" + log.read(), flush=True)
    return suite_rc or site_rc


if __name__ == "__main__":
    sys.exit(main())
