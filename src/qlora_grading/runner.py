"""The untrusted half of grading: runs inside the sandbox, one process per submission.

    python -m qlora_grading.runner --course MODULE LESSON SALT NOTEBOOK --cpu SECONDS --memory BYTES
    python -m qlora_grading.runner --course MODULE LESSON SALT --reference --cpu ... --memory ...

Sets its own limits (CPU time, address space, file size) before anything else, then executes the
notebook's code cells in order in an IPython shell: those the answers and the checks need
(:func:`qlora_grading.notebook.needed_cells`; a cell that only trains or plots is skipped). At each
``grader.check("name")`` cell (and at the end for an exercise whose check cell is gone) it runs the
exercise's public tests and its probe on the learner's answer, and writes JSON lines to its standard
output at once:

    {"event": "public", "q": "name", "passed": true, "error": null}
    {"event": "probe", "q": "name", "values": {...}, "used": []}
    {"event": "probe", "q": "name", "error": "TypeError"}          (when the answer raised)

so a crash, ``os._exit`` or a kill later keeps what was already written. With ``--reference`` it runs
no notebook: it probes each exercise's reference answer with the same salt, in the same environment.
The notebook's own output goes to /dev/null. Nothing here decides a score: the trusted grader compares
the values with the reference's, and treats every line as untrusted data (the learner's code can write
lines too).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sys

PROBE_CPU_SECONDS = 300  # one probe (a learner's answer on the hidden inputs) may not use more


def set_limits(cpu: int, memory: int) -> None:
    """Hard limits for this process and its children: CPU seconds, address space, size of a written file."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    if memory > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 30, 1 << 30))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


class _ProbeTimeout(Exception):
    pass


def _on_timer(signum, frame):
    raise _ProbeTimeout("probe used too much CPU time")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="run one submission's notebook and probe its answers (in a sandbox)")
    ap.add_argument("--course", required=True)
    ap.add_argument("lesson")
    ap.add_argument("salt")
    ap.add_argument("notebook", nargs="?")
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--cpu", type=int, required=True)
    ap.add_argument("--memory", type=int, required=True)
    args = ap.parse_args(argv)
    set_limits(args.cpu, args.memory)
    out = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(null, 2)

    def emit(**event) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    from .course import load_course
    from .exercise import probe_values
    from .notebook import CHECK, check_reads, code_cells, needed_cells

    exercises = {ex.name: ex for ex in load_course(args.course).exercises(args.lesson)}
    signal.signal(signal.SIGPROF, _on_timer)

    def probe(name: str, answer, trace: bool) -> None:
        signal.setitimer(signal.ITIMER_PROF, PROBE_CPU_SECONDS)
        try:
            values, used = probe_values(exercises[name], answer, args.salt, trace=trace)
            signal.setitimer(signal.ITIMER_PROF, 0)
            emit(event="probe", q=name, values=values, used=used)
        except BaseException as e:  # noqa: BLE001 - the learner's code may raise anything
            signal.setitimer(signal.ITIMER_PROF, 0)
            emit(event="probe", q=name, error=type(e).__name__[:60])

    if args.reference:
        for name, ex in exercises.items():
            probe(name, ex.answer_reference, trace=False)
        emit(event="done")
        return 0

    course = load_course(args.course)
    try:
        cells = code_cells(args.notebook)
    except (OSError, ValueError, KeyError, TypeError) as e:
        emit(event="broken", why=type(e).__name__)
        return 0
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    ns = shell.user_ns

    def check(name: str) -> None:
        try:
            shell.ex(course.public_tests(args.lesson, name))
            emit(event="public", q=name, passed=True, error=None)
        except BaseException as e:  # noqa: BLE001
            emit(event="public", q=name, passed=False, error=f"{type(e).__name__}: {e}"[:500])
        if name not in ns:
            emit(event="probe", q=name, error="NameError")
            return
        probe(name, ns[name], trace=True)

    reads = set().union(*(check_reads(course.public_tests(args.lesson, name)) for name in exercises))
    keep = needed_cells(cells, set(exercises), reads)
    done: set[str] = set()
    for source, needed in zip(cells, keep, strict=True):
        if not needed:
            continue
        m = CHECK.fullmatch(source)
        if m and m.group(1) in exercises:
            if m.group(1) not in done:
                done.add(m.group(1))
                check(m.group(1))
            continue
        shell.run_cell(source, store_history=False, silent=True)
    for name in exercises:
        if name not in done:
            check(name)
    emit(event="done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
