"""Answers written as edits of one template: a wrong answer that differs from a right one by one line."""

from __future__ import annotations


def variant(template: str, *edits: tuple[str, str]) -> str:
    """``template`` with each ``(old, new)`` replaced; ``old`` must occur, so a variant cannot silently equal
    the template it was meant to change."""
    src = template
    for old, new in edits:
        if old not in src:
            raise ValueError(f"{old!r} is not in the template")
        src = src.replace(old, new)
    return src
