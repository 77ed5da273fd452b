"""Tagging benchmarks: CoNLL-2000 POS (with and without a CRF) and Sinica word segmentation (with and without; with
and without an external lexicon).

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/tagging.py             # every run below, one process each
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/tagging.py sinica_cws_bilstm_nocrf
    python benchmarks/tagging.py --table                                     # table from results/tagging_*.json

Each run trains on the real data, tests the best checkpoint, and writes benchmarks/results/tagging_<run>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fit_and_test, load, main, write  # noqa: E402

RUNS = {  # name: (config, extra CLI arguments)
    "conll2000_pos_bilstm": ("configs/conll2000_pos_bilstm.yaml", []),
    "conll2000_pos_bilstm_crf": ("configs/conll2000_pos_bilstm_crf.yaml", []),
    "sinica_cws_bilstm": ("configs/sinica_cws_bilstm.yaml", []),
    "sinica_cws_bilstm_nocrf": ("configs/sinica_cws_bilstm.yaml", ["--model.init_args.crf=false"]),
    # + a feature from the SIGHAN 2005 PKU and MSR training word lists (an external lexicon)
    "sinica_cws_bilstm_lexicon": ("configs/sinica_cws_bilstm_lexicon.yaml", []),
    "sinica_cws_bilstm_lexicon_nocrf": ("configs/sinica_cws_bilstm_lexicon.yaml", ["--model.init_args.crf=false"]),
    "sinica_cws_bilstm_lexicon_seed1": ("configs/sinica_cws_bilstm_lexicon.yaml", ["--seed_everything=1"]),
    "sinica_cws_bilstm_lexicon_seed2": ("configs/sinica_cws_bilstm_lexicon.yaml", ["--seed_everything=2"]),
    # character vectors from the Tang poems (python benchmarks/names.py gender_char2vec trains them first)
    "sinica_cws_bilstm_char2vec": (
        "configs/sinica_cws_bilstm.yaml",
        ["--model.init_args.pretrained_embeddings=runs/word2vec/tang_chars.pt"],
    ),
}


def run_one(name: str) -> dict:
    config, extra = RUNS[name]
    run = fit_and_test(config, extra, name=name)
    result = {
        "run": name,
        "config": config,
        "extra": extra,
        "command": f"python main.py fit --config {config} {' '.join(extra)}".strip(),
        "test": {k.removeprefix("test/"): round(v, 5) for k, v in run.test.items()},
        "best_val": round(run.best_score, 5),
        "monitor": run.cli.trainer.checkpoint_callback.monitor,
        "epochs": len(run.epochs),
        "fit_seconds": run.fit_seconds,
        "train_units_per_s": run.tokens_per_s,
        "model": dict(run.cli.model.hparams),
        "lexicon": list(getattr(run.cli.datamodule, "lexicon", [])),
    }
    write(f"tagging_{name}", result)
    return result


def table() -> str:
    rows = [
        "| run | task | model | test acc | test acc (unseen words) | test F1 | OOV recall | epochs | fit time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in load("tagging_*.json"):
        m, t, lexicon = r["model"], r["test"], r.get("lexicon", [])
        bigrams = m["unit_features"] - 1 - bool(lexicon)
        model = (
            f"Bi{m['cell'].upper()} {m['hidden_size']}"
            + (f" + char {m['char_encoder']}" if m["char_encoder"] != "none" else "")
            + (f" + {bigrams} bigrams" if bigrams else "")
            + (f" + lexicon ({'+'.join(lexicon)} word lists)" if lexicon else "")
            + (" + CRF" if m["crf"] else "")
            + (" + Tang char vectors" if m.get("pretrained_embeddings") else "")
        )
        task = "POS" if "pos" in r["run"] else "segmentation"
        f1 = f"{100 * t['f1']:.2f}" if "f1" in t else "-"
        oov = f"{100 * t['oov_recall']:.2f}%" if "oov_recall" in t else "-"
        rows.append(
            f"| `{r['command'].removeprefix('python main.py fit --config ')}` | {task} | {model} | "
            f"{100 * t['acc']:.2f}% | {100 * t['acc_oov']:.2f}% | {f1} | {oov} | {r['epochs']} | "
            f"{r['fit_seconds'] / 60:.1f} min |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main(__file__, run_one, table, list(RUNS))
