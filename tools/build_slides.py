"""Build a reveal.js slide deck from each lesson's lecture notes, with pandoc.

    make slides        # or: python tools/build_slides.py [--out build/slides]

Each ``lessons/*.md`` becomes ``build/slides/<name>.html``: the first heading is the title slide,
every ``##`` section a slide (its ``###`` subsections stacked below it), tables and equations kept
(MathJax). Pandoc comes from the ``pypandoc_binary`` wheel, so nothing else needs installing. The
decks load reveal.js and MathJax from a CDN when opened; to present offline, open them once online
or pass ``--self-contained`` (pandoc then downloads and embeds everything while building).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _relink(markdown: str) -> str:
    """Links to notebooks (``../solutions/...``) point to the repository's files from ``build/slides``."""
    return re.sub(r"\]\(\.\./", "](../../", markdown)


def build(notes: Path, out_dir: Path, self_contained: bool = False) -> Path:
    """Build one deck; returns its path. Raises ``RuntimeError`` with pandoc's message on failure."""
    import pypandoc

    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{notes.stem}.html"
    args = [
        "--standalone",
        "--slide-level=2",
        "--mathjax",
        "-V",
        "theme=white",
        "-V",
        "slideNumber=true",
        "-V",
        "scrollable=true",
        "--metadata",
        f"pagetitle={notes.stem}",
    ]
    if self_contained:
        args.append("--embed-resources")
    try:
        pypandoc.convert_text(
            _relink(notes.read_text(encoding="utf-8")),
            "revealjs",
            format="gfm+tex_math_dollars",
            outputfile=str(target),
            extra_args=args,
        )
    except RuntimeError as e:
        raise RuntimeError(f"pandoc could not build slides from {notes}: {e}") from e
    return target


def build_all(out_dir: Path = ROOT / "build" / "slides", self_contained: bool = False) -> list[Path]:
    notes = sorted((ROOT / "lessons").glob("*.md"))
    if not notes:
        raise FileNotFoundError(f"no lecture notes in {ROOT / 'lessons'}")
    return [build(n, out_dir, self_contained) for n in notes]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build slide decks from lessons/*.md with pandoc (reveal.js).")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "slides")
    ap.add_argument("--self-contained", action="store_true", help="embed reveal.js and MathJax (needs network)")
    args = ap.parse_args(argv)
    decks = build_all(args.out, args.self_contained)
    for d in decks:
        print(d.relative_to(ROOT) if d.is_relative_to(ROOT) else d)
    return 0


if __name__ == "__main__":
    sys.exit(main())
