"""Reading notebooks as the grader sees them: code cells, ``grader.check`` cells, otter's markers."""

from __future__ import annotations

import json
import re
from pathlib import Path

__all__ = ["CHECK", "code_cells", "source", "answer_cells"]

# a cell that is only grader.check("name"): where the learner asks for feedback on one exercise
CHECK = re.compile(r"""\s*grader\.check\(\s*["'](\w+)["']\s*\)\s*""")


def source(cell: dict) -> str:
    """A cell's source as one string (notebook files store it as a string or a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def code_cells(path: str | Path) -> list[str]:
    """The sources of a notebook file's code cells, in order."""
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    return [source(c) for c in nb["cells"] if c["cell_type"] == "code"]


def answer_cells(cells: list[str], name: str) -> list[str]:
    """The code cells that define ``name`` at their top level (``def name``, ``class name``, ``name =``)."""
    pattern = re.compile(rf"^(?:def|class)\s+{re.escape(name)}\b|^{re.escape(name)}\s*=", re.M)
    return [c for c in cells if pattern.search(c)]
