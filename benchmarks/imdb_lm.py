"""IMDB from IMDB alone: language-model pre-training, then the classifier fine-tuned from it (issue 30).

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/imdb_lm.py pretrain    # configs/imdb_lm_pretrain.yaml
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/imdb_lm.py finetune    # variants on validation, test once
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/imdb_lm.py combine     # + an NBSVM expert, one checkpoint
    python benchmarks/imdb_lm.py --table

``pretrain`` writes results/imdb_lm_pretrain.json (validation perplexity per evaluation, tokens/s, fit time).
``finetune`` fits configs/imdb_lstm_lm.yaml and its ablations (each part of the recipe taken away) without reading
the test set, picks the best on validation, tests it once: results/imdb_lm_finetune.json. ``combine`` adds the
classifier's NBSVM expert (``bag_nb``: naive-Bayes scaled binary uni+bigrams, fitted when ``fit`` starts) to the
better single network on validation -- one config, one checkpoint -- and tests it once:
results/imdb_lm_combination.json.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import choose_on_validation, fit_and_test, load, write  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FINETUNE = "configs/imdb_lstm_lm.yaml"
VARIANTS = {
    "full recipe": [],
    "no pre-training (same recipe, random init)": ["--model.init_args.pretrained_encoder=null"],
}
MORE_VARIANTS = {  # `finetune all`: each further part of the recipe taken away
    "no gradual unfreezing": ["--model.init_args.gradual_unfreezing=false"],
    "no discriminative lr": ["--model.init_args.discriminative_lr=1.0"],
    "max pooling (not concat)": ["--model.init_args.pooling=max"],
}


def curve(log_dir: str) -> list[dict]:
    """Validation loss and perplexity at every evaluation, from the run's metrics.csv."""
    rows = []
    with open(Path(log_dir) / "metrics.csv") as f:
        for row in csv.DictReader(f):
            if row.get("val/ppl"):
                rows.append(
                    {
                        "step": int(row["step"]),
                        "epoch": int(row["epoch"]),
                        "val_loss": float(row["val/loss"]),
                        "val_ppl": float(row["val/ppl"]),
                        "val_ppl_backward": float(row["val/ppl_backward"]),
                    }
                )
    return rows


def pretrain(extra: list[str]) -> dict:
    start = time.perf_counter()
    run = fit_and_test("configs/imdb_lm_pretrain.yaml", extra, test=False)
    evaluations = curve(run.cli.trainer.logger.log_dir)
    result = {
        "config": "configs/imdb_lm_pretrain.yaml",
        "command": "python benchmarks/imdb_lm.py pretrain " + " ".join(extra),
        "best_val_loss": run.best_score,
        "val_ppl": min(e["val_ppl"] for e in evaluations),
        "val_ppl_backward": min(e["val_ppl_backward"] for e in evaluations),
        "evaluations": evaluations,
        "epochs": len(run.epochs),
        "train_tokens": run.cli.datamodule.seq_len * len(run.cli.datamodule.dataset("train")),
        "fit_seconds": run.fit_seconds,
        "total_seconds": round(time.perf_counter() - start, 1),
        "train_tokens_per_s": run.tokens_per_s,
        "epoch_seconds": [round(e["epoch_seconds"], 1) for e in run.epochs],
        "checkpoint": str(Path(run.cli.trainer.logger.log_dir) / "checkpoints" / "last.ckpt"),
        "model": dict(run.cli.model.hparams),
        "protocol": "LM text: IMDB train reviews outside the classifier's validation movies + 50k unlabelled; "
        "validation: the classifier's validation reviews; test reviews never read",
    }
    write("imdb_lm_pretrain", result)
    return result


def finetune(extra: list[str]) -> dict:
    variants = {**VARIANTS, **MORE_VARIANTS} if extra[:1] == ["all"] else VARIANTS
    extra = extra[1:] if extra[:1] == ["all"] else extra
    candidates = {label: (FINETUNE, [*extra, *args]) for label, args in variants.items()}  # a variant wins
    record, chosen = choose_on_validation(candidates, name="imdb_lstm_lm")
    result = {
        "config": FINETUNE,
        "command": "python benchmarks/imdb_lm.py finetune " + " ".join(extra),
        **record,
        "test_acc": chosen.test["test/acc"],
        "test_f1": chosen.test["test/f1"],
        "best_val_acc": chosen.best_score,
        "fit_seconds": chosen.fit_seconds,
        "train_tokens_per_s": chosen.tokens_per_s,
        "epochs": len(chosen.epochs),
        "model": dict(chosen.cli.model.hparams),
        "protocol": "validation: whole movies held out of the official train set; the test set read once, for "
        "the variant chosen on validation",
    }
    write("imdb_lm_finetune", result)
    return result


COMBINED = "configs/imdb_lstm_nbsvm.yaml"  # the default BiLSTM (better on validation than the LM recipe) + NBSVM


def combine(extra: list[str]) -> dict:
    """The NBSVM expert beside the default BiLSTM (from scratch: best validation 90.23%, above the LM-fine-tuned
    recipe's 89.55% -- chosen on those validation figures), one config and one checkpoint; tested once."""
    record, chosen = choose_on_validation({"default BiLSTM + NBSVM expert": (COMBINED, [])})
    result = {
        "config": COMBINED,
        "command": "python benchmarks/imdb_lm.py combine",
        **record,
        "test_acc": chosen.test["test/acc"],
        "test_f1": chosen.test["test/f1"],
        "best_val_acc": chosen.best_score,
        "fit_seconds": chosen.fit_seconds,
        "protocol": "validation: whole movies held out; the test set read once",
    }
    write("imdb_lm_combination", result)
    return result


def table() -> str:
    rows = ["| stage | result | fit wall time | tokens/s |", "|---|---|---|---|"]
    for r in load("imdb_lm_pretrain.json"):
        rows.append(
            f"| LM pre-training ({r['epochs']} epochs, {r['train_tokens'] / 1e6:.1f}M tokens/epoch) | validation "
            f"perplexity {r['val_ppl']:.1f} forward, {r['val_ppl_backward']:.1f} backward | "
            f"{r['fit_seconds'] / 60:.0f} min | {r['train_tokens_per_s']:,} |"
        )
    for r in load("imdb_lm_finetune.json"):
        for label, c in r["candidates"].items():
            mark = f"test {100 * r['test_acc']:.2f}%" if label == r["chosen"] else "test not read"
            rows.append(
                f"| fine-tune: {label} | best validation {100 * c['val_mean']:.2f}%; {mark} | "
                f"{c['fit_seconds'] / 60:.1f} min | |"
            )
    for r in load("imdb_lm_combination.json"):
        rows.append(
            f"| combination: {r['chosen']} | best validation {100 * r['best_val_acc']:.2f}%; test "
            f"{100 * r['test_acc']:.2f}% | {r['fit_seconds'] / 60:.1f} min | |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--table"]:
        print(table())
    elif argv[:1] in (["pretrain"], ["finetune"], ["combine"]):
        out = {"pretrain": pretrain, "finetune": finetune, "combine": combine}[argv[0]](argv[1:])
        print(json.dumps(out, indent=2, default=str))
        print(table())
    else:
        sys.exit(__doc__)
