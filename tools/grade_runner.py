"""The untrusted half of `make grade`: runs inside the sandbox, one process per submission.

    python grade_runner.py LESSON SALT NOTEBOOK --cpu SECONDS --memory BYTES

Sets its own limits (CPU time, address space, file size) before anything else, then executes the
notebook's code cells in order in an IPython shell. At each ``grader.check("qN")`` cell (and at the end
for a question whose check cell is gone) it runs the question's public tests and its probe
(``grade_probes.py``) and writes one JSON line to its standard output at once:

    {"event": "public", "q": "q1", "passed": true, "error": null}
    {"event": "probe", "q": "q1", "values": {...}}      or   {"event": "probe", "q": "q1", "error": "TypeError"}

so a crash, ``os._exit`` or a kill later keeps what was already written. The notebook's own output goes
to /dev/null. Nothing here decides a score: the trusted grader compares the values with the reference
solution's, and treats every line as untrusted data (the learner's code can write lines too).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import resource
import signal
import sys
from pathlib import Path

CHECK = re.compile(r"""\s*grader\.check\(\s*["'](\w+)["']\s*\)\s*""")
PROBE_CPU_SECONDS = 300  # one probe (a learner's function on the hidden inputs) may not use more


def set_limits(cpu: int, memory: int) -> None:
    """Hard limits for this process and its children: CPU seconds, address space, size of a written file."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def code_cells(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    return [
        "".join(c["source"]) if isinstance(c["source"], list) else c["source"]
        for c in nb["cells"]
        if c["cell_type"] == "code"
    ]


def public_source(lesson: str, q: str) -> str:
    """The public test file's doctest cases (otter's OK format) as plain Python."""
    from qlora_course.public_tests import exercise_tests_dir

    env: dict = {}
    exec(Path(exercise_tests_dir(lesson), f"{q}.py").read_text(encoding="utf-8"), env)
    lines = []
    for case in env["test"]["suites"][0]["cases"]:
        for line in case["code"].splitlines():
            if line.startswith((">>> ", "... ")):
                lines.append(line[4:])
            elif line.strip() in (">>>", "..."):
                lines.append("")
    return "\n".join(lines)


class _ProbeTimeout(Exception):
    pass


def _on_timer(signum, frame):
    raise _ProbeTimeout("probe used too much CPU time")


def main(argv: list[str]) -> int:
    lesson, salt, notebook = argv[:3]
    cpu = int(argv[argv.index("--cpu") + 1])
    memory = int(argv[argv.index("--memory") + 1])
    set_limits(cpu, memory)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)

    def emit(**event) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import grade_probes
    import torch

    probes = grade_probes.PROBES[lesson]
    try:
        cells = code_cells(notebook)
    except (OSError, ValueError, KeyError, TypeError) as e:
        emit(event="broken", why=type(e).__name__)
        return 0
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    ns = shell.user_ns
    signal.signal(signal.SIGPROF, _on_timer)

    def check(q: str) -> None:
        try:
            shell.ex(public_source(lesson, q))
            emit(event="public", q=q, passed=True, error=None)
        except BaseException as e:  # noqa: BLE001 - the learner's code may raise anything
            emit(event="public", q=q, passed=False, error=f"{type(e).__name__}: {e}"[:500])
        seed = hashlib.sha256(f"{salt}/{lesson}/{q}".encode()).digest()[:7]
        g = torch.Generator().manual_seed(int.from_bytes(seed, "little"))
        rng = torch.random.get_rng_state()
        signal.setitimer(signal.ITIMER_PROF, PROBE_CPU_SECONDS)
        try:
            values = {k: grade_probes.encode(v) for k, v in probes[q](ns, g).items()}
            signal.setitimer(signal.ITIMER_PROF, 0)
            emit(event="probe", q=q, values=values)
        except BaseException as e:  # noqa: BLE001
            signal.setitimer(signal.ITIMER_PROF, 0)
            emit(event="probe", q=q, error=type(e).__name__[:60])
        torch.random.set_rng_state(rng)

    done: set[str] = set()
    for source in cells:
        m = CHECK.fullmatch(source)
        if m and m.group(1) in probes:
            if m.group(1) not in done:
                done.add(m.group(1))
                check(m.group(1))
            continue
        shell.run_cell(source, store_history=False, silent=True)
    for q in probes:
        if q not in done:
            check(q)
    emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
