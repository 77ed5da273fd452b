"""Segmentation as tags (``B``/``M``/``E``/``S``) and chunks (``B-X``/``I-X``/``O``): conversions and spans, shared by
the tagging data and the span metrics."""

from __future__ import annotations

from typing import Iterable, Sequence


def words_to_bmes(words: Sequence[str]) -> tuple[list[str], list[str]]:
    """``["我", "爱", "北京"] -> (["我", "爱", "北", "京"], ["S", "S", "B", "E"])``."""
    chars, tags = [], []
    for w in words:
        chars.extend(w)
        tags.extend(["S"] if len(w) == 1 else ["B"] + ["M"] * (len(w) - 2) + ["E"])
    return chars, tags


def bmes_to_words(chars: Sequence[str], tags: Sequence[str]) -> list[str]:
    """Inverse of :func:`words_to_bmes`, total on any tag sequence: a word starts at ``B``/``S`` and after
    ``E``/``S`` (so an ill-formed ``M`` or ``E`` just continues the current word)."""
    words: list[str] = []
    for i, (c, t) in enumerate(zip(chars, tags)):
        if i == 0 or t in ("B", "S") or tags[i - 1] in ("E", "S"):
            words.append(c)
        else:
            words[-1] += c
    return words


def word_spans(words: Iterable[str]) -> list[tuple[int, int]]:
    """Character spans ``[start, end)`` of consecutive words (how the SIGHAN ``score`` script matches words)."""
    spans, start = [], 0
    for w in words:
        spans.append((start, start + len(w)))
        start += len(w)
    return spans


def bmes_spans(tags: Sequence[str]) -> list[tuple[int, int]]:
    return word_spans(bmes_to_words(["x"] * len(tags), tags))


def bio_spans(tags: Sequence[str]) -> list[tuple[int, int, str]]:
    """Chunks ``(start, end, type)`` of ``B-X``/``I-X``/``O`` tags, as ``conlleval`` reads them (an ``I-X`` after
    ``O`` or after another type opens a chunk)."""
    spans: list[tuple[int, int, str]] = []
    start, kind = None, None
    for i, t in enumerate(list(tags) + ["O"]):
        prefix, _, typ = t.partition("-")
        if start is not None and (prefix in ("B", "O") or typ != kind):
            spans.append((start, i, kind))
            start, kind = None, None
        if prefix in ("B", "I") and start is None:
            start, kind = i, typ
    return spans
