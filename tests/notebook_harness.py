"""Run course notebooks in a real Jupyter kernel and grade exercises with otter's own test runner."""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


def load(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def questions(solution: nbformat.NotebookNode) -> dict[str, str]:
    """``exercise name -> solution code`` from the otter markers of a solution notebook (the build's parser)."""
    from build_notebooks import answers

    return answers(solution)


def solution_answers(lesson: str) -> dict[str, str]:
    """``exercise name -> solution code`` of a lesson's solution notebook."""
    return questions(load(ROOT / "solutions" / f"{lesson}.ipynb"))


def answer_namespace(lesson: str) -> dict:
    """A namespace in which a lesson's answers run as in its notebook: the notebook's imports, then the
    solution's answers (a later answer may call an earlier one)."""
    import ast

    ns: dict = {}
    for cell in load(ROOT / "solutions" / f"{lesson}.ipynb").cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        imports = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
        exec(compile(ast.Module(imports, []), f"<{lesson} imports>", "exec"), ns)
    for code in solution_answers(lesson).values():
        exec(code, ns)
    return ns


def stubs(student: nbformat.NotebookNode) -> list[str]:
    """The answer cells of a student notebook, in order."""
    return [c.source for c in student.cells if "otter_answer_cell" in c.get("metadata", {}).get("tags", [])]


# kernels started here draw sliders as static figures: no live widget can stall the headless client
os.environ.setdefault("QLORA_COURSE_STATIC_WIDGETS", "1")


@contextmanager
def kernel(nb: nbformat.NotebookNode, cwd: Path, timeout: int = 900):
    """A started kernel; yields ``run(code) -> outputs`` and the client (to execute the notebook's cells)."""
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}})
    with client.setup_kernel():
        scratch = nbformat.v4.new_notebook()

        def run(code: str) -> str:
            cell = nbformat.v4.new_code_cell(code)
            scratch.cells.append(cell)
            notebook, client.nb = client.nb, scratch  # the client writes the executed cell back at its index
            try:
                client.execute_cell(cell, len(scratch.cells) - 1)
            finally:
                client.nb = notebook
            return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")

        yield run, client


def execute_all(client: NotebookClient, nb: nbformat.NotebookNode, stop=None) -> None:
    """Execute ``nb``'s code cells in order (up to the first cell for which ``stop(cell)`` is true)."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if stop is not None and stop(cell):
            return
        try:
            client.execute_cell(cell, index)
        except CellExecutionError as err:
            raise AssertionError(f"cell {index} failed:\n{cell.source[:800]}\n{str(err)[-3000:]}") from None


GRADE_HELPER = """
from otter.test_files import OKTestFile as _OKTestFile
def _course_grade(path):
    _tf = _OKTestFile.from_file(path)
    _tf.run(globals())
    _public = all(r.passed for r in _tf.test_case_results if not r.test_case.hidden)
    _hidden = all(r.passed for r in _tf.test_case_results if r.test_case.hidden)
    if not _tf.passed_all:
        print(_tf.summary())
    return _public, _hidden, _tf.score
"""

# An answer of the wrong kind that claims to equal anything: tests must type-check before comparing.
ALWAYS_EQUAL = """
class _AlwaysEqual:
    def __eq__(self, other): return True
    def __ne__(self, other): return False
    __lt__ = __le__ = __gt__ = __ge__ = __eq__
    def __bool__(self): return True
    def __getattr__(self, name): return self
    def __call__(self, *a, **k): return self
    def __getitem__(self, key): return self
    def __iter__(self): return iter([self, self, self])
    def __len__(self): return 3
    def __abs__(self): return self
    def __sub__(self, other): return self
    __rsub__ = __add__ = __radd__ = __mul__ = __rmul__ = __truediv__ = __sub__
    def __float__(self): return 0.0
def {name}(*args, **kwargs):
    return _AlwaysEqual()
"""


def grade(run, test_file: Path) -> tuple[bool, bool, float, str]:
    """Run one otter test file in the kernel's globals: ``(public passed, hidden passed, score, report)``."""
    out = run(f"print('GRADE', *_course_grade({json.dumps(str(test_file))}))")
    line = next(row for row in out.splitlines() if row.startswith("GRADE "))
    _, public, hidden, score = line.split()
    return public == "True", hidden == "True", float(score), out


def hidden_lines(case_code: str) -> list[str]:
    """The distinctive statements of one hidden otter test case (doctest source): every line after
    ``# HIDDEN`` without its prompt, leaving out imports, comments and blank lines."""
    out = []
    for line in case_code.splitlines()[1:]:
        text = line[4:] if line.startswith((">>> ", "... ")) else line
        text = text.strip()
        if text and not text.startswith(("#", "from ", "import ")):
            out.append(text)
    return out


def leaked(case_code: str, text: str) -> bool:
    """Whether ``text`` (what a student can read) contains a hidden test case: all its statements."""
    lines = hidden_lines(case_code)
    return bool(lines) and all(line in text for line in lines)
