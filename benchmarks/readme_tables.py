"""Regenerate the result tables of README.md and docs/*.md from benchmarks/results/*.json (so they cannot drift).

python benchmarks/readme_tables.py        # rewrites the blocks between <!-- name --> and <!-- /name -->
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cells  # noqa: E402
import charlm  # noqa: E402
import imdb  # noqa: E402
import music  # noqa: E402
import names  # noqa: E402
import reproduce  # noqa: E402
import sighan_baseline  # noqa: E402
import tagging  # noqa: E402
import timeseries  # noqa: E402
import translation  # noqa: E402
import word2vec  # noqa: E402
from common import RESULTS  # noqa: E402

ROOT_DIR = Path(__file__).resolve().parents[1]
PAGES = [ROOT_DIR / "README.md", *sorted((ROOT_DIR / "docs").glob("*.md"))]


def throughput_table() -> str:
    path = RESULTS / "throughput_imdb_bilstm.json"
    if not path.is_file():
        return "(not measured yet)"
    r = json.loads(path.read_text())
    p, raw, light = r["packed_loop"], r["raw_padded_loop"], r["lightning"]
    return "\n".join(
        [
            "| training loop | tokens/s | epoch time |",
            "|---|---|---|",
            f"| plain PyTorch loop, `nn.LSTM` on `PackedSequence`, shuffled batches | {p['tokens_per_s']:,.0f} | "
            f"{p['epoch_seconds_estimate']:.0f} s (estimated from {p['batches']} batches) |",
            f"| plain PyTorch loop, rnnlab's padded driver + length buckets | {raw['tokens_per_s']:,.0f} | {raw['seconds']:.0f} s |",
            f"| `main.py fit` (Lightning), same model and batches | {light['tokens_per_s']:,.0f} | {light['seconds']:.0f} s |",
            "",
            f"Speed-up of `fit` over the packed loop: **{r['speedup_lightning_vs_packed']:.1f}x**; Lightning's overhead "
            f"over the plain loop on the same driver: **{100 * r['lightning_overhead']:+.1f}%** (mean of "
            f"{len(raw.get('runs', [raw]))} alternated epochs each); padding {100 * light['padding']:.1f}% of positions.",
        ]
    )


def cells_table() -> str:
    path = RESULTS / "cells.json"
    return cells.table(json.loads(path.read_text())["rows"]) if path.is_file() else "(not measured yet)"


def name_samples() -> str:
    path = RESULTS / "charlm_names_generate_gru.json"
    if not path.is_file():
        return "(not measured yet)"
    r = json.loads(path.read_text())
    rows = ["| language | 5 samples (seed 0, temperature " + str(r["model"]["temperature"]) + ") |", "|---|---|"]
    rows += [f"| {lang} | {', '.join(names_)} |" for lang, names_ in r["samples"].items()]
    return "\n".join(rows)


def poems() -> str:
    path = RESULTS / "charlm_tang_poetry_lstm.json"
    if not path.is_file():
        return "(not measured yet)"
    r = json.loads(path.read_text())
    rows = ["| prompt | samples (seed 0, temperature " + str(r["model"]["temperature"]) + ") |", "|---|---|"]
    rows += [f"| {prompt or '(none)'} | {'<br>'.join(ps)} |" for prompt, ps in r["samples"].items()]
    return "\n".join(rows)


def shakespeare_sample() -> str:
    path = RESULTS / "charlm_shakespeare_char_lstm.json"
    if not path.is_file():
        return "(not measured yet)"
    r = json.loads(path.read_text())
    text = r["samples"].get("ROMEO:\n", [""])[0]
    return f"```\n{text.rstrip()}\n```"


BLOCKS = {
    "imdb-table": imdb.table,
    "throughput-table": throughput_table,
    "cells-table": cells_table,
    "names-table": names.table,
    "names-curve-table": names.curve_table,
    "tagging-table": tagging.table,
    "charlm-table": charlm.table,
    "name-samples": name_samples,
    "shakespeare-sample": shakespeare_sample,
    "poem-samples": poems,
    "timeseries-table": timeseries.table,
    "sighan-table": sighan_baseline.table,
    "charlm-cross": charlm.cross_table,
    "music-table": music.table,
    "music-samples": music.samples_table,
    "word2vec-table": word2vec.table,
    "word2vec-neighbours": word2vec.neighbours_table,
    "translation-table": translation.table,
    "translation-samples": translation.samples_table,
    "reproduce-table": reproduce.table,
}


def main() -> None:
    for page in PAGES:
        text = page.read_text()
        for name, make in BLOCKS.items():
            if f"<!-- {name} -->" not in text:
                continue
            block = f"<!-- {name} -->\n{make()}\n<!-- /{name} -->"
            pattern = re.compile(rf"<!-- {name} -->.*?<!-- /{name} -->", re.S)
            text = (
                pattern.sub(lambda _, block=block: block, text)
                if pattern.search(text)
                else text.replace(f"<!-- {name} -->", block)
            )
        page.write_text(text)
        print(f"updated {page}")


if __name__ == "__main__":
    main()
