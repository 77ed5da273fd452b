"""Regenerate the result tables of README.md and docs/*.md from benchmarks/results/*.json (so they cannot drift).

python benchmarks/readme_tables.py        # rewrites the blocks between <!-- name --> and <!-- /name -->
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import captioning  # noqa: E402
import cells  # noqa: E402
import charlm  # noqa: E402
import imdb  # noqa: E402
import imdb_lm  # noqa: E402
import music  # noqa: E402
import names  # noqa: E402
import reproduce  # noqa: E402
import sighan_baseline  # noqa: E402
import speed  # noqa: E402
import tagging  # noqa: E402
import time_to_accuracy  # noqa: E402
import timeseries  # noqa: E402
import translation  # noqa: E402
import word2vec  # noqa: E402
from common import RESULTS  # noqa: E402

ROOT_DIR = Path(__file__).resolve().parents[1]
PAGES = [ROOT_DIR / "README.md", *sorted((ROOT_DIR / "docs").rglob("*.md"))]


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


def _json(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _value(result: dict, spec):
    """A figure of ``result`` by its path (a list of keys; a first key ``name.json`` reads another result file),
    scaled by ``scale`` when ``spec`` is ``{"path": ..., "scale": ...}``."""
    path, scale = (spec["path"], spec.get("scale", 1)) if isinstance(spec, dict) else (spec, 1)
    value = result
    if isinstance(path[0], str) and path[0].endswith(".json"):
        value, path = _json(path[0].removesuffix(".json")), path[1:]
    for key in path:
        value = value[key]
    return value * scale if scale != 1 else value


def _text(result: dict, spec) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, list):  # a path
        return str(_value(result, spec))
    return spec["text"].format(*(_value(result, v) for v in spec.get("values", [])))


def tasks_table() -> str:
    """README: task -> config -> what it reaches -> the published figure it compares with -> fit time (2 CPU cores).
    One row per result file with a ``readme`` block: its label, config, figures (paths into the result) and the
    published figure are data in the result JSON, written beside the figures; nothing here names a task."""
    rows = [
        "| task | config | reaches (test) | published figure | fit time |",
        "|---|---|---|---|---|",
    ]
    results = [r for r in (json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))) if "readme" in r]
    for r in sorted(results, key=lambda r: r["readme"]["order"]):
        spec = r["readme"]
        seconds = sum(_value(r, path) for path in spec["fit_seconds"]) if spec.get("fit_seconds") else None
        fit = (("<= " if "timing_note" in r else "") + _minutes(seconds)) if seconds else "-"
        rows.append(
            f"| {spec['task']} | `{_text(r, spec['config'])}` | {_text(r, spec['reached'])} | "
            f"{_text(r, spec['published'])} | {fit} |"
        )
    return "\n".join(rows)


def serve_table() -> str:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("serve_*.json"))]
    if not rows:
        return "(not measured yet)"
    out = [
        "| config | batching | clients | requests/s | p50 latency | p99 latency | mean batch | errors |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        batching = "off" if r.get("max_batch") == 1 else f"up to {r.get('max_batch', 64)}"
        out.append(
            f"| `{Path(r['config']).stem}` | {batching} | {r['clients']} | {r['requests_per_s']:.1f} | "
            f"{r['latency_ms_p50']:.1f} ms | {r['latency_ms_p99']:.1f} ms | {r.get('mean_batch', 1):.2f} | "
            f"{r['errors']} |"
        )
    cpu = rows[0]["machine"].get("cpu_model", "")
    out += [
        "",
        f"{rows[0]['seconds']:.0f} s per row, clients and server on the same {rows[0]['machine']['cpus']} "
        f"CPU cores ({cpu}); `{rows[0]['command']}`.",
    ]
    return "\n".join(out)


def export_table() -> str:
    r = _json("export_latency")
    if r is None:
        return "(not measured yet)"
    out = [
        "| config | graph | weights | batch | PyTorch p50 / p99 | onnxruntime p50 / p99 | speed-up (p50) | max diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for config, v in r["results"].items():
        weights = "trained" if v["weights"].endswith(".ckpt") else "initial"
        graph = f"{v['model']}, {v['length']} step" + ("s" if v["length"] > 1 else "")
        for b in ("batch_1", "batch_32"):
            t, o = v[b]["torch"], v[b]["onnxruntime"]
            out.append(
                f"| `{config}` | {graph} | {weights} | {b.split('_')[1]} | {t['p50_ms']:.2f} / {t['p99_ms']:.2f} ms | "
                f"{o['p50_ms']:.2f} / {o['p99_ms']:.2f} ms | {v[b]['speedup_p50']:.2f}x | {v[b]['max_abs_diff']:.0e} |"
            )
    m = r["machine"]
    out += [
        "",
        f"onnxruntime {r['onnxruntime']}, torch {m['torch']}, {r['threads']} threads, {m.get('cpu_model', '')} "
        f"({', '.join(m.get('cpu_flags', []))}); `{r['command']}`.",
    ]
    return "\n".join(out)


BLOCKS = {
    "captioning-table": captioning.table,
    "serve-table": serve_table,
    "export-table": export_table,
    "tasks-table": tasks_table,
    "imdb-table": imdb.table,
    "imdb-lm-table": imdb_lm.table,
    "throughput-table": throughput_table,
    "cells-table": cells_table,
    "speed-precision-table": speed.precision_table,
    "speed-profile-table": speed.profile_table,
    "speed-ddp-table": speed.ddp_table,
    "time-to-accuracy-table": time_to_accuracy.table,
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
    "translation-published-table": translation.published_table,
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
