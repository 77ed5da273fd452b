"""Character language model benchmarks: tiny shakespeare (stateful vs stateless truncated BPTT) and names by language.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/charlm.py                 # every run below, one process each
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/charlm.py names_generate_gru
    python benchmarks/charlm.py --table                                         # tables from results/charlm_*.json

Each run trains, evaluates the best checkpoint on the held-out text (nats and bits per character), writes samples,
and saves benchmarks/results/charlm_<run>.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build_cli, fit_and_test, load, main, previous, write  # noqa: E402

RUNS = {  # name: (config, extra CLI arguments)
    "shakespeare_char_lstm": ("configs/shakespeare_char_lstm.yaml", []),
    "shakespeare_char_lstm_stateless": ("configs/shakespeare_char_lstm.yaml", ["--data.init_args.stateful=false"]),
    "names_generate_gru": ("configs/names_generate_gru.yaml", []),
    "tang_poetry_lstm": ("configs/tang_poetry_lstm.yaml", []),
}


def run_one(name: str) -> dict:

    config, extra = RUNS[name]
    run = fit_and_test(config, extra, name=name)
    cli = run.cli
    model, dm = cli.model.eval(), cli.datamodule
    samples: dict[str, list[str]] = {}
    if name.startswith("names"):
        prompts, per_prompt = dm.default_prompts(), 5
    elif name.startswith("tang"):
        prompts, per_prompt = ["", "月", "春", "山", "藏头:春夏秋冬"], 20
    else:
        prompts, per_prompt = ["\n", "ROMEO:\n"], 1
    items = dm.encode_predict(prompts)
    batch = dm.collate([(it["tokens"], None, k) for k, it in enumerate(items) for _ in range(per_prompt)])
    hp = model.hparams
    heads = [items[k // per_prompt].get("line_heads") for k in range(len(batch))]
    generated = model.generate(
        batch.tokens,
        batch.lengths,
        hp.max_new,
        hp.temperature,
        hp.top_k,
        eos_id=model.task.eos_id,
        seed=0,
        banned=model.task.banned_ids(),
        line_heads=heads,
        line_ends=tuple(model.task.line_end_ids),
        category=batch.category,
    )
    for k, row in enumerate(generated):
        item = items[k // per_prompt]
        samples.setdefault(item["input"], []).append(dm.render_prediction(item, {"generated": row})["output"])
    extra_stats = {}
    if name.startswith("tang"):
        from rnnlab.data.poetry import regular_form

        poems = [p for ps in samples.values() for p in ps]
        test_docs = [t for t, _ in dm.read_documents()[0]["test"]]
        extra_stats = {
            "samples_regular_share": round(sum(regular_form(p) is not None for p in poems) / len(poems), 4),
            "samples_counted": len(poems),
            "test_regular_share": round(sum(regular_form(p) is not None for p in test_docs) / len(test_docs), 4),
        }
        samples = {k: v[:3] for k, v in samples.items()}
    if name.startswith("shakespeare"):
        extra_stats["test_loss_nats_nanogpt_protocol"] = nanogpt_protocol(cli)
        extra_stats["protocol"] = (
            "text split 90/5/5 (train / validation for the checkpoint / test, contiguous); test_loss_nats: the test "
            "slice with the hidden state carried across it (stateful) or per shuffled 128-character window "
            "(stateless); test_loss_nats_nanogpt_protocol: 256-character windows each from an empty state, in "
            "expectation nanoGPT's random-window protocol"
        )
    result = {
        "run": name,
        **extra_stats,
        "config": config,
        "extra": extra,
        "command": f"python main.py fit --config {config} {' '.join(extra)}".strip(),
        "test_loss_nats": round(run.test["test/loss"], 4),
        "test_bpc": round(run.test["test/bpc"], 4),
        "best_val_loss": round(run.best_score, 4),
        "epochs": len(run.epochs),
        "fit_seconds": run.fit_seconds,
        "train_chars_per_s": run.tokens_per_s,
        "stateful": bool(getattr(dm, "stateful", False)),
        "samples": samples,
        "model": {k: v for k, v in hp.items()},
    }
    if name.startswith("shakespeare"):
        result["previous"] = previous(
            f"charlm_{name}",
            ("test_loss_nats", "test_bpc", "best_val_loss"),
            "text split 90/10; the 10% both chose the checkpoint and was reported (no test slice)",
        )
    write(f"charlm_{name}", result)
    return result


def nanogpt_protocol(cli) -> float:
    """The best checkpoint's test loss on 256-character windows of the test slice, each read from an empty state
    (nanoGPT scores random 256-character windows: every window position is equally likely there too)."""
    dm = cli.datamodule
    windows = type(dm)(
        path=dm.path,
        seq_len=256,
        val_fraction=dm.val_fraction,
        test_fraction=dm.test_fraction,
        stateful=False,
        batch_size=dm.batch_size,
        root=str(dm.root),
        local_dir=dm.local_dir,
    )
    res = cli.trainer.test(cli.model, ckpt_path="best", datamodule=windows, verbose=False)[0]
    return round(float(res["test/loss"]), 4)


def table() -> str:
    rows = [
        "| run | model | held-out loss (nats/char) | bits/char | nanoGPT protocol (nats/char) | epochs | fit time | "
        "train chars/s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in [r for r in load("charlm_*.json") if "model" in r]:
        m = r["model"]
        kind = (
            ("stateful TBPTT" if r["stateful"] else "stateless windows")
            if "shakespeare" in r["run"]
            else (
                "language at every step"
                if r["run"].startswith("names")
                else f"one poem per sequence; {100 * r.get('samples_regular_share', 0):.0f}% of {r.get('samples_counted', 0)} "
                f"samples are regular verse"
            )
        )
        model = f"{m['num_layers']}x{m['cell'].upper()} {m['hidden_size']}, {kind}"
        if "shakespeare" in r["run"]:
            model += ", test slice" if "protocol" in r else ", validation text (no test slice then)"
        nano = r.get("test_loss_nats_nanogpt_protocol")
        rows.append(
            f"| `{r['command'].removeprefix('python main.py fit --config ')}` | {model} | "
            f"{r['test_loss_nats']:.4f} | {r['test_bpc']:.4f} | {f'{nano:.4f}' if nano else '-'} | "
            f"{r['epochs']} | {r['fit_seconds'] / 60:.1f} min | "
            f"{r['train_chars_per_s']:,} |"
        )
    return "\n".join(rows)


def cross_eval() -> dict:
    """Both shakespeare models (best checkpoints), each evaluated both ways: with the state carried through the
    held-out text and from a zero state per 128-character window -- separating the training effect from the
    evaluation effect."""
    import glob

    out = {}
    for name in ("shakespeare_char_lstm", "shakespeare_char_lstm_stateless"):
        ckpt = sorted(glob.glob(f"runs/bench/{name}/version_*/checkpoints/epoch*.ckpt"))[-1]
        for stateful in (True, False):
            cli = build_cli(
                [
                    "--config",
                    RUNS[name][0],
                    "--trainer.enable_progress_bar=false",
                    "--trainer.logger=false",
                    f"--data.init_args.stateful={str(stateful).lower()}",
                ]
            )
            res = cli.trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt, verbose=False)[0]
            out[f"{name} | {'stateful' if stateful else 'stateless'} evaluation"] = round(float(res["test/loss"]), 4)
    write("charlm_shakespeare_cross_eval", {"loss_nats": out})
    return out


def cross_table() -> str:
    results = load("charlm_shakespeare_cross_eval.json")
    if not results:
        return "(not measured yet)"
    r = results[0]["loss_nats"]
    rows = ["| trained | evaluated with the state carried | evaluated from a zero state per window |", "|---|---|---|"]
    for name, label in (
        ("shakespeare_char_lstm", "stateful (TBPTT, state carried)"),
        ("shakespeare_char_lstm_stateless", "stateless (shuffled windows)"),
    ):
        rows.append(
            f"| {label} | {r[f'{name} | stateful evaluation']:.4f} | {r[f'{name} | stateless evaluation']:.4f} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--cross"]:
        print(cross_eval())
        print(cross_table())
    else:
        main(__file__, run_one, table, list(RUNS))
