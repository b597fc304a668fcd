"""The outputs a solution notebook keeps: cells whose printed result is the same on every machine.

A code cell tagged ``nbval-check-output`` prints something that does not depend on the CPU, the thread
count or the time: a bit-for-bit comparison with bitsandbytes or PEFT, a count of parameters or bytes,
a table of formulas. Its output is stored in the solution notebook (``make course`` refreshes it), and
two tools compare a fresh run with it:

- nbval, the tool instructors know: ``make nbval`` (``pytest --nbval-lax solutions/``) runs every
  solution and compares the tagged cells' outputs;
- the notebook tests (``tests/test_notebooks.py``), which run each lesson anyway.

Only printed text is stored (``stream`` outputs): a figure's pixels differ between machines.
"""

from __future__ import annotations

import json
from pathlib import Path

TAG = "nbval-check-output"


def checked(cell: dict) -> bool:
    """Whether ``cell`` is a code cell whose output is stored and compared."""
    return cell.get("cell_type") == "code" and TAG in cell.get("metadata", {}).get("tags", [])


def text_outputs(outputs: list) -> list[dict]:
    """What ``outputs`` printed to stdout (merged), in nbformat's shape. A tagged cell prints; anything
    else it shows (a figure, a value, progress bars and warnings on stderr) is not stored or compared."""
    out: list[dict] = []
    for o in outputs:
        if o.get("output_type") != "stream" or o.get("name") != "stdout":
            continue
        text = "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
        if out and out[-1]["name"] == o["name"]:
            out[-1]["text"] += text
        else:
            out.append({"name": o["name"], "output_type": "stream", "text": text})
    return out


def _source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def store(solution: Path, executed_cells: list[dict]) -> int:
    """Copy what ``solution``'s tagged cells printed in a run (``executed_cells``: the run's cells, found
    by their source) into the solution file; returns how many cells changed."""
    nb = json.loads(solution.read_text(encoding="utf-8"))
    ran = {_source(c): c for c in executed_cells}
    changed = 0
    for cell in nb["cells"]:
        if not checked(cell):
            continue
        if _source(cell) not in ran:
            raise ValueError(f"{solution.name}: the run has no cell {_source(cell).strip()[:60]!r}")
        fresh = ran[_source(cell)]
        new = [{**o, "text": o["text"].splitlines(keepends=True)} for o in text_outputs(fresh.get("outputs", []))]
        count = fresh.get("execution_count") or 1  # nbval compares only cells that were run
        if new != cell.get("outputs") or cell.get("execution_count") != count:
            cell["outputs"], cell["execution_count"] = new, count
            changed += 1
    if changed:
        solution.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return changed


def differences(solution: dict, executed_cells: list[dict]) -> list[str]:
    """For each tagged cell of ``solution``, the fresh run's text output against the stored one; the fresh
    cells are found by their source (a filled student notebook has the solution's code, not its ids)."""
    by_source = {_source(c): c for c in executed_cells}
    out = []
    for cell in solution["cells"]:
        if not checked(cell):
            continue
        src = _source(cell)
        fresh = by_source.get(src)
        first = src.strip().splitlines()[0][:70]
        if fresh is None:
            out.append(f"no fresh run of the tagged cell {first!r}")
            continue
        if text_outputs(fresh.get("outputs", [])) != text_outputs(cell.get("outputs", [])):
            out.append(f"the output of {first!r} differs from the stored one (run `make course` to refresh it)")
    return out
