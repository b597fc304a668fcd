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


def _names(cell: str) -> tuple[set[str], set[str], set[str]] | None:
    """``(defined, used, changed)`` names of a cell's code, or None when it is not Python (a magic).

    ``defined``: what its top-level statements bind (assignments, ``def``, ``class``, imports, loop and
    ``with`` targets); ``used``: every name it reads; ``changed``: names whose object a top-level statement
    changes in place (``x.attr = ...``, ``x[i] = ...``, ``x.method(...)`` as a statement)."""
    import ast

    try:
        tree = ast.parse(cell)
    except SyntaxError:
        return None
    defined, changed = set(), set()

    def targets(node):
        for n in ast.walk(node):
            if isinstance(n, ast.Name):
                defined.add(n.id)

    def base(node):
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
            node = node.func if isinstance(node, ast.Call) else node.value
        return node.id if isinstance(node, ast.Name) else None

    for stmt in tree.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(stmt.name)
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            defined.update((a.asname or a.name).split(".")[0] for a in stmt.names)
        elif isinstance(stmt, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            for t in stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]:
                if isinstance(t, (ast.Attribute, ast.Subscript)):
                    changed.add(base(t))
                else:
                    targets(t)
        elif isinstance(stmt, (ast.For, ast.AsyncFor)):
            targets(stmt.target)
        elif isinstance(stmt, (ast.With, ast.AsyncWith)):
            for item in stmt.items:
                if item.optional_vars is not None:
                    targets(item.optional_vars)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
            if isinstance(stmt.value.func, ast.Attribute):  # x.method(...): x may change; f(...) does not
                changed.add(base(stmt.value.func))
        elif isinstance(stmt, (ast.Global, ast.Nonlocal)):
            defined.update(stmt.names)
        if isinstance(stmt, (ast.If, ast.Try, ast.For, ast.While, ast.With)):
            for n in ast.walk(stmt):  # bindings inside a block are the cell's too
                if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                    defined.add(n.id)
    return defined, _global_reads(cell), changed - {None}


def _imported(cell: str) -> set[str]:
    """The names a cell's top-level imports bind."""
    import ast

    return {
        (a.asname or a.name).split(".")[0]
        for stmt in ast.parse(cell).body
        if isinstance(stmt, (ast.Import, ast.ImportFrom))
        for a in stmt.names
    }


def _global_reads(cell: str) -> set[str]:
    """The global names a cell reads: at its top level, and inside its functions and classes (a function's
    parameters and locals are its own)."""
    import symtable

    def walk(table, top: bool) -> set[str]:
        out = {s.get_name() for s in table.get_symbols() if s.is_referenced() and (top or s.is_global())}
        for child in table.get_children():
            out |= walk(child, False)
        return out

    return walk(symtable.symtable(cell, "<cell>", "exec"), True)


def needed_cells(cells: list[str], answers: set[str], checks_need: set[str]) -> list[bool]:
    """Which code cells a grading run must execute so that every answer, and every name the checks read
    (``checks_need``: the public tests' names), is what the notebook would make of it; a cell that only
    trains, plots or prints is skipped.

    Kept: the first cell (the set-up), every ``grader.check`` cell, every cell that is not plain Python,
    every cell that defines an answer, and, repeatedly, every cell that defines or changes in place a
    name that a kept cell or a check reads. Builtins and imported modules are not data: ``print(x)``,
    ``torch.manual_seed(0)`` and ``plt.show()`` keep no cell."""
    import builtins

    info = [_names(c) for c in cells]
    modules = set().union(*(_imported(c) for c, names in zip(cells, info, strict=True) if names is not None))
    ignored = set(dir(builtins)) | modules
    keep = [i == 0 or CHECK.fullmatch(c) is not None or info[i] is None for i, c in enumerate(cells)]
    for i, names in enumerate(info):
        if names and names[0] & set(answers):
            keep[i] = True
    need = set(answers) | set(checks_need)
    for i, names in enumerate(info):
        if keep[i] and names:
            need |= names[1]
    grown = True
    while grown:
        grown = False
        for i, names in enumerate(info):
            if not keep[i] and names and (names[0] | names[2]) & (need - ignored):
                keep[i], grown = True, True
                need |= names[1]
    return keep


def check_reads(code: str) -> set[str]:
    """The names a check (a public test) reads from the notebook: its global reads, less the private names
    (``_x``) it binds itself. A check's own loop variables and temporaries are not the notebook's data, and
    a notebook cell that happens to bind a name of the same spelling need not run for it."""
    names = _names(code)
    own = {n for n in names[0] if n.startswith("_")} if names else set()
    return _global_reads(code) - own
