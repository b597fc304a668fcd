"""Running one notebook (or the references) in a bubblewrap sandbox, with limits and a wall-clock backstop.

The sandbox: no network, its own process namespace (everything in it ends with it), user ``nobody``,
the Python environment and the course's sources read-only, one private writable folder holding only the
notebook, limits on CPU time, memory and file size. Without bubblewrap the grader refuses unless told
``unsafe`` (trusted submissions only).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Limits", "sandbox_available", "run_notebook", "run_references"]

MAX_OUTPUT_BYTES = 256 << 20  # what a runner may write back
IDLE_SHARE = 0.05  # stopped by the wall clock while using under 5% of a core: it was waiting, not starved


@dataclass
class Limits:
    cpu: int = 600  # CPU seconds for a whole notebook
    wall: int = 0  # wall-clock backstop in seconds; 0: four times ``cpu``
    memory_gb: float = 8.0  # address space


def sandbox_available() -> bool:
    """Whether bubblewrap is installed and can start a sandbox here."""
    if not shutil.which("bwrap"):
        return False
    r = subprocess.run(["bwrap", "--unshare-all", "--ro-bind", "/", "/", "true"], capture_output=True)
    return r.returncode == 0


def _python_roots() -> list[Path]:
    """Folders the sandbox must see read-only for Python to run: the venv and the base installation."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)).parents[1]}
    return sorted(p for p in roots if not str(p).startswith(("/usr", "/lib", "/bin")))


def _source_roots() -> list[Path]:
    """The folders the grader's and the course's packages are imported from (``src/`` of a checkout)."""
    import qlora_grading

    return sorted({Path(qlora_grading.__file__).resolve().parents[1]})


def _bwrap(work: Path) -> list[str]:
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--uid", "65534", "--gid", "65534"]
    cmd += ["--die-with-parent", "--new-session", "--as-pid-1", "--proc", "/proc", "--dev", "/dev"]
    cmd += ["--tmpfs", "/tmp", "--ro-bind", "/usr", "/usr"]
    for link in ("lib", "lib64", "bin", "sbin"):
        if Path("/" + link).is_symlink():
            cmd += ["--symlink", os.readlink("/" + link), "/" + link]
        elif Path("/" + link).is_dir():
            cmd += ["--ro-bind", "/" + link, "/" + link]
    for etc in ("/etc/ld.so.cache", "/etc/localtime", "/etc/passwd", "/etc/group", "/etc/ssl"):
        if Path(etc).exists():
            cmd += ["--ro-bind", etc, etc]
    for path in _python_roots() + _source_roots():
        cmd += ["--ro-bind", str(path), str(path)]
    return cmd + ["--bind", str(work), "/submission", "--chdir", "/submission"]


def _env(work: str) -> dict[str, str]:
    return {
        "PATH": "/usr/bin:/bin",
        "HOME": work,
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{work}/.mpl",
        "OMP_NUM_THREADS": "1",
        "QLORA_COURSE_THREADS": "1",
        "QLORA_COURSE_STATIC_WIDGETS": "1",
        "QLORA_COURSE_REPORT": "",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
    }


def _tree_cpu(proc) -> float:
    """CPU seconds used so far by ``proc``'s descendants (the sandboxed runner and its children)."""
    import psutil

    total = 0.0
    try:
        for p in psutil.Process(proc.pid).children(recursive=True):
            try:
                t = p.cpu_times()
                total += t.user + t.system + t.children_user + t.children_system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def _kill(proc) -> None:
    import psutil

    try:
        procs = psutil.Process(proc.pid).children(recursive=True) + [psutil.Process(proc.pid)]
    except psutil.Error:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    proc.wait()


def _run(args: list[str], work: Path, limits: Limits, unsafe: bool) -> tuple[list[dict], str]:
    """Run the runner with ``args`` in ``work``; ``(events, how it ended)``."""
    memory = int(limits.memory_gb * (1 << 30))
    inner = [sys.executable, "-I", "-m", "qlora_grading.runner", *args, "--cpu", str(limits.cpu)]
    inner += ["--memory", str(memory)]
    cmd = inner if unsafe else _bwrap(work) + inner
    wall = limits.wall or 4 * limits.cpu
    proc = subprocess.Popen(
        cmd,
        cwd=work,
        env=_env(str(work) if unsafe else "/submission"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    buffer = io.BytesIO()

    def read():
        while chunk := proc.stdout.read1(1 << 16):
            if buffer.tell() < MAX_OUTPUT_BYTES:
                buffer.write(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    start, ended, samples = time.monotonic(), "", []
    while proc.poll() is None and time.monotonic() - start < wall:
        samples.append((time.monotonic(), _tree_cpu(proc)))
        try:
            proc.wait(timeout=min(2.0, max(wall - (time.monotonic() - start), 0.01)))
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        # its CPU share over the last quarter of the time allowed: did it wait, or was it starved?
        now, cpu = time.monotonic(), _tree_cpu(proc)
        then, cpu_then = next((s for s in samples if s[0] >= now - wall / 4), samples[0])
        share = (cpu - cpu_then) / max(now - then, 1e-9)
        _kill(proc)
        if share < IDLE_SHARE:
            ended = "stopped: it waited without computing (a sleep or a wait that never ends)"
        else:
            ended = "needs regrading: the machine was too busy to finish it in time"
    reader.join(timeout=30)
    events = []
    for line in buffer.getvalue().splitlines():
        try:
            event = json.loads(line)
        except (UnicodeDecodeError, ValueError):
            continue
        if isinstance(event, dict) and isinstance(event.get("event"), str):
            events.append(event)
    if not ended and not any(e["event"] in ("done", "broken") for e in events):
        ended = "stopped: it ended early (a crash, os._exit, or the CPU or memory limit)"
    return events, ended


def run_notebook(
    notebook: Path, course: str, lesson: str, salt: str, limits: Limits, unsafe: bool
) -> tuple[list[dict], str]:
    """Run a copy of ``notebook`` alone in a fresh folder; ``(events it wrote, how it ended)``.

    How it ended: "" (finished), "stopped: ..." (CPU limit, crash, waiting forever: graded as far as it
    got) or "needs regrading: ..." (the wall-clock backstop stopped it while it was computing)."""
    with tempfile.TemporaryDirectory(prefix="qlora-submission-") as tmp:
        work = Path(tmp)
        shutil.copyfile(notebook, work / f"{lesson}.ipynb")
        os.chmod(work, 0o777)  # the sandbox's user (nobody) writes here
        return _run(["--course", course, lesson, salt, f"{lesson}.ipynb"], work, limits, unsafe)


def run_references(course: str, lesson: str, salt: str, limits: Limits, unsafe: bool) -> tuple[list[dict], str]:
    """Probe the reference answers of ``lesson`` with ``salt``, in the same sandbox a submission gets."""
    with tempfile.TemporaryDirectory(prefix="qlora-reference-") as tmp:
        os.chmod(tmp, 0o777)
        return _run(["--course", course, lesson, salt, "--reference"], Path(tmp), limits, unsafe)
