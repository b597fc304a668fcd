"""The numbers of the lecture notes (``lessons/*.md``) and the recorded figures they quote.

A measured number in the notes carries the key of the figure a notebook recorded for it
(``qlora_course.report.record``), in an HTML comment right after the number, invisible when rendered::

    NF4 uses 3.88<!--fig:entropy_nf4--> of its 4 bits
    a 4-bit LLaMA-7B stores 3.87<!--fig:llama7b_4bit_stored_mb/1000--> GB

The shown number must equal the figure (after the optional ``*factor`` or ``/divisor``) rounded to the
digits shown. ``lessons/figures.json`` is the snapshot ``make course`` writes; the notebook tests compare
the numbers with a fresh run too. Anything that looks measured and has no tag is an error: a decimal, a
percentage, a ratio (``1.3×``), a count with thousands separators or a K/M/B suffix, or a number with a
unit of memory or time. Settings and definitions (4 bits, blocks of 64, r = 8), formulas in ``$...$``,
code, links' targets and section numbers are not figures.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "lessons" / "figures.json"

NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?"
TAG = re.compile(
    rf"(?P<num>{NUMBER})(?P<mark>\**)<!--\s*fig:(?P<key>\w+)(?:\s*(?P<op>[*/])\s*(?P<factor>[\d.e+-]+))?\s*-->"
)
UNITS = r"(?:GB|MB|KB|GiB|MiB|KiB|TB|ms|s|sec|seconds|min|minutes|h|hours|tokens/s)"
MEASURED = re.compile(
    rf"(?<![\w.§/#-])(?:"
    rf"\d+\.\d+(?!\.\d)"  # a decimal (not a version such as 2.13.0)
    rf"|\d+(?:\.\d+)?\s?%"  # a percentage
    rf"|\d+(?:\.\d+)?\s?×"  # a ratio
    rf"|\d{{1,3}}(?:,\d{{3}})+"  # thousands separators
    rf"|\d+(?:\.\d+)?[KM]\b"  # 65K, 4M
    rf"|\d+(?:\.\d+)?\s?{UNITS}\b(?!-)"  # memory or time
    rf")"
)


@dataclass
class Quote:
    file: str
    line: int
    shown: str
    key: str
    factor: float

    def value(self) -> float:
        return float(self.shown.replace(",", "").replace("−", "-"))

    def decimals(self) -> int:
        return len(self.shown.split(".")[1]) if "." in self.shown else 0

    def agrees(self, figure: float) -> bool:
        """Whether ``figure * factor`` shows as this number at the digits it is shown with."""
        scaled = figure * self.factor
        return math.isfinite(scaled) and abs(scaled - self.value()) <= 0.5 * 10 ** -self.decimals() * (1 + 1e-9)


def _prose(text: str) -> str:
    """``text`` with code, math, HTML comments and link targets blanked (line numbers kept)."""
    blank = lambda m: re.sub(r"[^\n]", " ", m.group(0))  # noqa: E731
    for pattern in (
        r"```.*?```",
        r"\$\$.*?\$\$",
        r"`[^`\n]*`",
        r"\$[^$\n]+\$",
        r"<!--.*?-->",
        r"\]\([^)\n]*\)",
        r"arXiv[: ]\d{4}\.\d{4,5}",
    ):
        text = re.sub(pattern, blank, text, flags=re.S)
    return text


def quotes(path: Path) -> list[Quote]:
    """Every tagged number of one notes file."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in TAG.finditer(text):
        factor = float(m["factor"]) if m["factor"] else 1.0
        if m["op"] == "/":
            factor = 1 / factor
        out.append(Quote(path.name, text.count("\n", 0, m.start()) + 1, m["num"], m["key"], factor))
    return out


def untagged(path: Path) -> list[str]:
    """``"file:line: text"`` for each number that looks measured and carries no figure key."""
    text = TAG.sub(lambda m: " " * len(m.group(0)), path.read_text(encoding="utf-8"))
    prose = _prose(text)
    out = []
    for m in MEASURED.finditer(prose):
        line = prose.count("\n", 0, m.start()) + 1
        out.append(f"{path.name}:{line}: {m.group(0).strip()!r} in: {text.splitlines()[line - 1].strip()[:120]}")
    return out


def notes() -> list[Path]:
    return sorted((ROOT / "lessons").glob("*.md"))


def snapshot(path: Path = SNAPSHOT) -> dict[str, dict]:
    return json.loads(path.read_text(encoding="utf-8"))


def disagreements(figures: dict[str, float], lesson: str | None = None) -> list[str]:
    """Quoted numbers that ``figures`` (``{key: value}``) contradict; with ``lesson``, only that lesson's keys
    that ``figures`` holds are checked."""
    out = []
    for path in notes():
        for q in quotes(path):
            if q.key not in figures:
                if lesson is None:
                    out.append(f"{q.file}:{q.line}: {q.shown} quotes {q.key!r}, which no notebook records")
                continue
            if not q.agrees(figures[q.key]):
                out.append(f"{q.file}:{q.line}: {q.shown} quotes {q.key!r} = {figures[q.key] * q.factor!r}")
    return out
