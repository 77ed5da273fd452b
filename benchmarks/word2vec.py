"""word2vec benchmark: skip-gram and CBOW on IMDB train + unsup, then the IMDB BiLSTM initialised from the vectors.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/word2vec.py            # all runs, in order, one process each
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/word2vec.py sgns lstm_sgns
    python benchmarks/word2vec.py --table

Runs: ``sgns``/``cbow`` (configs/imdb_word2vec_*.yaml: held-out negative-sampling loss, neighbours, analogies; vectors
to runs/word2vec/), ``lstm_sgns``, ``lstm_sgns_frozen``, ``lstm_cbow_frozen`` (configs/imdb_lstm_w2v.yaml with those
vectors). The random-initialisation baseline is the same classifier config without vectors: benchmarks/imdb.py
configs/imdb_lstm.yaml (results/imdb_lstm.json). Results: benchmarks/results/word2vec_<run>.json.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fit_and_test, load, main, write  # noqa: E402

VECTORS = {"sgns": "runs/word2vec/imdb_sgns.pt", "cbow": "runs/word2vec/imdb_cbow.pt"}
CLASSIFIERS = {"lstm_sgns": ("sgns", False), "lstm_sgns_frozen": ("sgns", True), "lstm_cbow_frozen": ("cbow", True)}
NAMES = ["sgns", "cbow", *CLASSIFIERS]


def run_one(name: str) -> dict:
    start = time.perf_counter()
    if name in VECTORS:
        config = f"configs/imdb_word2vec_{name}.yaml"
        run = fit_and_test(config, name=f"imdb_word2vec_{name}")
        model = run.cli.model
        neighbours = model.report()  # also sets model.analogy_accuracy
        result = {"config": config, "command": f"python benchmarks/word2vec.py {name}",
                  "val_loss": run.test["test/loss"], "epochs": run.cli.trainer.current_epoch,
                  "fit_seconds": run.fit_seconds, "examples_per_s": round(model.examples_seen / run.fit_seconds),
                  "vocab": len(model.words), "neighbours": neighbours,
                  "analogies": getattr(model, "analogy_accuracy", None), "model": dict(model.hparams)}
    else:
        vectors, frozen = CLASSIFIERS[name]
        config = "configs/imdb_lstm_w2v.yaml"
        extra = [f"--model.init_args.pretrained_embeddings={VECTORS[vectors]}",
                 f"--model.init_args.freeze_embeddings={str(frozen).lower()}"]
        run = fit_and_test(config, extra, name=f"imdb_{name}")
        result = {"config": config, "command": f"python benchmarks/word2vec.py {name}", "vectors": VECTORS[vectors],
                  "frozen": frozen, "coverage": getattr(run.cli.model, "pretrained_coverage", None),
                  "test_acc": run.test["test/acc"], "test_f1": run.test["test/f1"], "best_val_acc": run.best_score,
                  "epochs": len(run.epochs), "fit_seconds": run.fit_seconds,
                  "train_tokens_per_s": run.tokens_per_s, "model": dict(run.cli.model.hparams)}
    result["total_seconds"] = round(time.perf_counter() - start, 1)
    write(f"word2vec_{name}", result)
    return result


def table() -> str:
    rows = ["| embeddings | trained on | held-out NS loss | analogies top-1 | epochs | fit wall time | examples/s |",
            "|---|---|---|---|---|---|---|"]
    for r in load("word2vec_sgns.json") + load("word2vec_cbow.json"):
        rows.append(f"| `{r['config']}` ({r['model']['mode']}, {r['model']['embedding_dim']}-d) | IMDB train+unsup, "
                    f"{r['vocab']:,} words | {r['val_loss']:.4f} | {r['analogies']:.0%} | {r['epochs']} | "
                    f"{r['fit_seconds'] / 60:.1f} min | {r['examples_per_s']:,} |")
    rows += ["", "| IMDB BiLSTM 128 (configs/imdb_lstm*.yaml) | embedding init | test acc | test F1 | best val acc "
             "| fit wall time |", "|---|---|---|---|---|---|"]
    for r in load("imdb_lstm.json"):
        rows.append(f"| `{r['config']}` | random | {100 * r['test_acc']:.2f}% | {100 * r['test_f1']:.2f}% | "
                    f"{100 * r['best_val_acc']:.2f}% | {r['fit_seconds'] / 60:.1f} min |")
    for name in CLASSIFIERS:
        for r in load(f"word2vec_{name}.json"):
            init = f"`{r['vectors']}` ({'frozen' if r['frozen'] else 'fine-tuned'}, {r['coverage']:.1%} of the vocabulary)"
            rows.append(f"| `{r['config']}` | {init} | {100 * r['test_acc']:.2f}% | {100 * r['test_f1']:.2f}% | "
                        f"{100 * r['best_val_acc']:.2f}% | {r['fit_seconds'] / 60:.1f} min |")
    return "\n".join(rows)


def neighbours_table(words=("good", "bad", "awful", "brilliant", "boring")) -> str:
    runs = {r["model"]["mode"]: r for r in load("word2vec_sgns.json") + load("word2vec_cbow.json")}
    if not runs:
        return "(not measured yet)"

    def near(run, word):
        for line in run["neighbours"].splitlines():
            if line.startswith(f"{word}: "):
                pairs = re.findall(r"(\S+) (-?\d+\.\d\d)(?:, |$)", line[len(word) + 2:])
                return ", ".join(f"`{w}`" if not w.isalpha() else w for w, _ in pairs[:6])
        return "-"

    modes = sorted(runs, reverse=True)  # skipgram, cbow
    rows = ["| word | " + " | ".join(f"nearest by cosine, {m}" for m in modes) + " |", "|---|" + "---|" * len(modes)]
    rows += [f"| {w} | " + " | ".join(near(runs[m], w) for m in modes) + " |" for w in words]
    analogies = [line for line in runs[modes[0]]["neighbours"].splitlines() if " = " in line]
    rows += ["", f"Analogies ({modes[0]}, top 3 shown, first must match): " + "; ".join(analogies)]
    return "\n".join(rows)


if __name__ == "__main__":
    main(__file__, run_one, table, NAMES)
