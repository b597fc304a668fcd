"""The shape of the package `qlora_course`: no import cycles (imports inside functions included) and no
private names used across modules. Read from the source with `ast`, so nothing is imported and it is fast."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "qlora_course"
NAME = "qlora_course"


def modules() -> dict[str, Path]:
    """Every module of the package by its dotted name (``qlora_course.estimator``), subpackages included."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imported(module: str, source: str, known: set[str]) -> list[tuple[str, str, int]]:
    """``(imported module, imported name or "", line)`` for every import of a module in ``known`` that
    ``source`` (the text of ``module``) makes, wherever it stands: at the top, inside a function or
    class, under ``if TYPE_CHECKING``."""
    package = module if (PACKAGE / "/".join(module.split(".")[1:]) / "__init__.py").exists() else None
    package = package or module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(a.name, "", node.lineno) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in known:  # from . import lora
                    found.append((submodule, "", node.lineno))
                elif target in known:
                    found.append((target, alias.name, node.lineno))
    return [f for f in found if f[0] != module]


def import_graph() -> dict[str, set[str]]:
    """``module -> the package's modules it imports`` (the package's ``__init__`` left out of the targets:
    importing a submodule always runs it, so an edge to it says nothing)."""
    mods = modules()
    known = set(mods) - {NAME}
    return {m: {t for t, _, _ in imported(m, p.read_text(encoding="utf-8"), known)} for m, p in mods.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts (``[a, b, a]``), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert graph[f"{NAME}.estimator"] >= {f"{NAME}.llama", f"{NAME}.validate"}, "the import graph looks empty"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle (imports inside functions count too): " + " -> ".join(cycle)


def test_no_module_imports_another_modules_private_names():
    mods = modules()
    known = set(mods) - {NAME}
    private = [
        f"{path.relative_to(PACKAGE.parent)}:{line}: {name} from {target}"
        for module, path in mods.items()
        for target, name, line in imported(module, path.read_text(encoding="utf-8"), known)
        if name.startswith("_")
    ]
    assert not private, "make these public (e.g. in qlora_course.validate) or keep them in one module:\n" + "\n".join(
        private
    )


@pytest.mark.parametrize(
    "source,expected",
    [
        ("from .llama import LLAMA_LINEAR", {"qlora_course.llama"}),
        ("def f():\n    from .nf4 import check_blocksize\n", {"qlora_course.nf4"}),
        ("from . import lora, nf4", {"qlora_course.lora", "qlora_course.nf4"}),
        ("import qlora_course.lora as L", {"qlora_course.lora"}),
        ("from qlora_course.loading import nf4_config", {"qlora_course.loading"}),
        ("if TYPE_CHECKING:\n    from .settings import TrainingSettings\n", {"qlora_course.settings"}),
        ("import torch\nfrom .estimator import _nbytes", {"qlora_course.estimator"}),
    ],
)
def test_every_kind_of_import_is_seen(source, expected):
    known = set(modules()) - {NAME}
    assert {t for t, _, _ in imported("qlora_course.paging", source, known)} == expected


def test_a_cycle_is_found_and_named():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
