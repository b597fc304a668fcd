"""The numbers of the lecture notes (``lessons/*.md``) and the recorded figures they quote.

A measured number in the notes carries the key of the figure a notebook recorded for it
(``qlora_course.report.record``), in an HTML comment right after the number, invisible when rendered::

    NF4 uses 3.88<!--fig:entropy_nf4--> of its 4 bits
    a 4-bit LLaMA-7B stores 3.87<!--fig:llama7b_4bit_stored_mb/1000--> GB
    without the story it still scores 88–98<!--fig:qlora_no_story range-->%

Every figure carries a tolerance (``tol``, in its own unit): how much it may differ between machines.
A single number agrees when it is within half its last digit plus the tolerance of the figure (after the
optional ``*factor`` or ``/divisor``), and it may show no digit finer than the tolerance allows
(:meth:`Quote.too_precise`): a figure that moves by a point between CPUs is rounded or quoted as a range.
A range ``low–high`` tagged ``range`` agrees when the figure plus or minus its tolerance lies inside it,
so it holds on any machine. ``lessons/figures.json`` is the snapshot ``make course`` writes; the notebook
tests compare the numbers with a fresh run too. Anything that looks measured and has no tag is an error: a
decimal, a percentage, a ratio (``1.3×``), a count with thousands separators or a K/M/B suffix, or a number
with a unit of memory or time. Settings and definitions (4 bits, blocks of 64, r = 8), formulas in
``$...$``, code, links' targets and section numbers are not figures.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from qlora_course.report import EPS, within

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "lessons" / "figures.json"

NUMBER = r"[-−]?\d[\d,]*(?:\.\d+)?"
# a range ``low–high`` (en dash) is one quote only when its tag says ``range``
TAG = re.compile(
    rf"(?:(?P<low>{NUMBER})–(?={NUMBER}\**<!--[^>]*?\brange\s*-->))?"
    rf"(?P<num>{NUMBER})(?P<mark>\**)<!--\s*fig:(?P<key>\w+)"
    rf"(?:\s*(?P<op>[*/])\s*(?P<factor>[\d.e+-]+))?(?P<range>\s+range)?\s*-->"
)
# a quote's last digit may be uncertain by this many units of it between machines, no more
FINEST = 1.0
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
    low: str | None = None  # the start of a range ``low–shown``

    @staticmethod
    def _number(text: str) -> float:
        return float(text.replace(",", "").replace("−", "-"))

    def value(self) -> float:
        return self._number(self.shown)

    def decimals(self) -> int:
        return max(len(t.split(".")[1]) if "." in t else 0 for t in (self.shown, self.low or ""))

    def step(self) -> float:
        """The last digit shown, as a number: 0.01 for ``3.88``, 1 for ``4,194,304``."""
        return 10.0 ** -self.decimals()

    def text(self) -> str:
        return f"{self.low}–{self.shown}" if self.low is not None else self.shown

    def agrees(self, figure: float, tol: float = 0.0, bounds: tuple[float, float] | None = None) -> bool:
        """Whether ``figure * factor`` shows as this number at the digits it is shown with, give or take the
        figure's tolerance ``tol`` (in the figure's unit); for a range, whether ``figure ± tol`` lies inside it.
        ``bounds`` are the values the figure can take at all (a percentage's 0 and 100): ``figure ± tol`` is
        cut to them, so 99.2% ± 1 is within 98–100."""
        scaled, spread = figure * self.factor, tol * abs(self.factor)
        if not math.isfinite(scaled):
            return False
        if self.low is not None:
            low, high = self._number(self.low), self.value()
            slack = EPS * max(abs(low), abs(high), abs(scaled))
            lo, hi = scaled - spread, scaled + spread
            if bounds is not None:
                edge = sorted(b * self.factor for b in bounds)
                lo, hi = max(lo, edge[0]), min(hi, edge[1])
            return low - slack <= lo and hi <= high + slack
        return abs(scaled - self.value()) <= 0.5 * self.step() * (1 + EPS) + spread + EPS * abs(scaled)

    def too_precise(self, tol: float) -> bool:
        """Whether a single number shows a digit finer than its tolerance: its last digit would change from one
        machine to the next (more than :data:`FINEST` units of it). A range is never too precise."""
        return self.low is None and tol * abs(self.factor) > FINEST * self.step() * (1 + EPS)


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
    """Every tagged number (or range) of one notes file."""
    text = path.read_text(encoding="utf-8")
    out = []
    for m in TAG.finditer(text):
        factor = float(m["factor"]) if m["factor"] else 1.0
        if m["op"] == "/":
            factor = 1 / factor
        line = text.count("\n", 0, m.start()) + 1
        if m["range"] and not m["low"]:
            raise ValueError(f"{path.name}:{line}: a range tag needs low–high (an en dash) right before it")
        out.append(Quote(path.name, line, m["num"], m["key"], factor, m["low"] if m["range"] else None))
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


def tolerances(figures: dict[str, dict]) -> dict[str, float]:
    """``{key: tol}`` of snapshot-style rows (``{key: {"value", "tol", ...}}``); a timing's (``varies``) is
    infinite, a row without one gets 0."""
    return {k: math.inf if v.get("varies") else float(v.get("tol") or 0.0) for k, v in figures.items()}


# the values a figure of a unit can take at all
UNIT_BOUNDS = {"%": (0.0, 100.0), "max |Δ logit|": (0.0, math.inf)}


def bounds(figures: dict[str, dict]) -> dict[str, tuple[float, float]]:
    """``{key: (lowest, highest)}`` of snapshot-style rows whose unit bounds them (:data:`UNIT_BOUNDS`)."""
    return {k: UNIT_BOUNDS[v["unit"]] for k, v in figures.items() if v.get("unit") in UNIT_BOUNDS}


def disagreements(
    figures: dict[str, float],
    lesson: str | None = None,
    tols: dict[str, float] | None = None,
    fresh: bool = False,
    limits: dict[str, tuple[float, float]] | None = None,
) -> list[str]:
    """Quoted numbers that ``figures`` (``{key: value}``) contradict, each figure allowed its tolerance
    (``tols``, ``{key: tol}``; 0 where missing); with ``lesson``, only that lesson's keys that ``figures``
    holds are checked. ``fresh=True`` checks a new run's values, which may sit anywhere within the tolerance
    of the snapshot's: a range then only has to hold the value itself (the snapshot check holds it to
    value ± tol, which covers every machine's value). ``limits`` (``{key: (lowest, highest)}``, see
    :func:`bounds`) cut ``value ± tol`` to what the figure can be."""
    tols, limits = tols or {}, limits or {}
    out = []
    for path in notes():
        for q in quotes(path):
            if q.key not in figures:
                if lesson is None:
                    out.append(f"{q.file}:{q.line}: {q.text()} quotes {q.key!r}, which no notebook records")
                continue
            tol = tols.get(q.key, 0.0)
            if not q.agrees(figures[q.key], 0.0 if fresh and q.low is not None else tol, limits.get(q.key)):
                value = figures[q.key] * q.factor
                out.append(
                    f"{q.file}:{q.line}: {q.text()} quotes {q.key!r} = {value!r}"
                    + (f" ± {tol * abs(q.factor):g} (its tolerance)" if tol else "")
                )
    return out


def not_reproduced(rows: list[dict], snap: dict[str, dict], lesson: str) -> list[str]:
    """How a fresh run's figures (``record``'s rows) fail to reproduce ``lesson``'s in the snapshot: a figure
    beyond its tolerance of the snapshot's value, or a tolerance that differs from the snapshot's (the
    notebook's ``record`` call changed after the last ``make course``). Timings are not compared."""
    live = {r["key"]: r for r in rows}
    out = []
    for key, old in sorted(snap.items()):
        new = live.get(key)
        if old["lesson"] != lesson or new is None or old.get("varies") or new.get("varies"):
            continue
        tol = float(new.get("tol") or 0.0)
        if tol != float(old.get("tol") or 0.0):
            out.append(f"{key}: the notebook records a tolerance of ±{tol:g}, the snapshot ±{old.get('tol')}")
        if not within(new["value"], old["value"], tol):
            out.append(f"{key} = {new['value']!r}, the snapshot's {old['value']!r} ± {tol:g}: beyond its tolerance")
    return out


def too_precise(tols: dict[str, float]) -> list[str]:
    """Single quoted numbers that show a digit finer than their figure's tolerance (``{key: tol}``)."""
    out = []
    for path in notes():
        for q in quotes(path):
            tol = tols.get(q.key, 0.0)
            if math.isfinite(tol) and q.too_precise(tol):
                out.append(
                    f"{q.file}:{q.line}: {q.text()} ({q.key}) shows steps of {q.step():g} but may differ between "
                    f"machines by ±{tol * abs(q.factor):g}: round it, or quote a range "
                    f"(low–high<!--fig:{q.key} range-->)"
                )
    return out
