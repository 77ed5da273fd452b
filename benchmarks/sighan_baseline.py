"""The SIGHAN 2005 baseline on the real gold files: forward maximum matching with each corpus's training word list,
scored by rnnlab's span metric (precision / recall / F1 / OOV recall as the bakeoff's ``score`` script counts them).

It checks the scorer and the loaders against published numbers without the (missing) training files: the bakeoff
report (Emerson 2005) gives this baseline as F = 0.869 on PKU and 0.933 on MSR.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/sighan_baseline.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load, write  # noqa: E402

PUBLISHED_F = {"pku": 0.869, "msr": 0.933}


def max_match(text: str, words: set[str], longest: int) -> list[str]:
    """Forward maximum matching: at each position the longest dictionary word, else one character."""
    out, i = [], 0
    while i < len(text):
        for n in range(min(longest, len(text) - i), 0, -1):
            if n == 1 or text[i : i + n] in words:
                out.append(text[i : i + n])
                i += n
                break
    return out


def run(corpus: str) -> dict:
    from rnnlab.data.segmentation import read_member, read_segmented
    from rnnlab.data.sources import fetch
    from rnnlab.metrics import scores, span_counts
    from rnnlab.spans import words_to_bmes

    path = fetch("icwb2")["icwb2-data.zip"]
    gold = read_segmented(read_member(path, f"gold/{corpus}_test_gold.utf8"))
    words = set(read_member(path, f"gold/{corpus}_training_words.utf8").split())
    longest = max(map(len, words))
    total = [0] * 5
    for sentence in gold:
        chars, tags = words_to_bmes(sentence)
        pred = words_to_bmes(max_match("".join(sentence), words, longest))[1]
        oov = [int(w not in words) for w in sentence for _ in w]
        total = [a + b for a, b in zip(total, span_counts(tags, pred, "bmes", oov))]
    return {
        "corpus": corpus,
        "sentences": len(gold),
        "gold_words": total[2],
        **{k: round(v, 4) for k, v in scores(total).items()},
        "published_f1": PUBLISHED_F[corpus],
    }


def table() -> str:
    rows = [
        "| corpus (gold test file) | words | precision | recall | F1 | OOV recall | published F1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in load("sighan_baseline_*.json"):
        rows.append(
            f"| {r['corpus'].upper()} | {r['gold_words']:,} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"**{r['f1']:.3f}** | {r['oov_recall']:.3f} | {r['published_f1']:.3f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] != ["--table"]:
        for corpus in ("pku", "msr"):
            write(f"sighan_baseline_{corpus}", run(corpus))
    print(table())
