"""JSB Chorales benchmark: GRU, LSTM and vanilla RNN on the official split, alone (configs/jsb_chorales_gru.yaml) and
with the pitch-relative convolution term (configs/jsb_chorales_gru_conv.yaml); test NLL per step (nats) and frame
accuracy; a generated chorale as MIDI + piano-roll picture (docs/samples/) with the measures a musician checks.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/music.py            # every run, one process each
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/music.py gru_conv   # one of them
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/music.py refine_choice  # conv_refine on or off, on validation
    python benchmarks/music.py --table
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, choose_on_validation, fit_and_test, load, main, write  # noqa: E402

CONFIG = "configs/jsb_chorales_gru.yaml"  # the recurrent network alone, as the published figures use it
CONV = "configs/jsb_chorales_gru_conv.yaml"  # + the pitch-relative convolution term and an EMA of the weights
# run name -> (config, cell, head)
RUNS = {
    "gru": (CONFIG, "gru", None),
    "lstm": (CONFIG, "lstm", None),
    "rnn": (CONFIG, "rnn", None),
    "gru_autoregressive": (CONFIG, "gru", "autoregressive"),
    "gru_conv": (CONV, "gru", None),
    "lstm_conv": (CONV, "lstm", None),
    "rnn_conv": (CONV, "rnn", None),
}
# Bai, Kolter & Koltun 2018, Table 2 (TCN: 8.10); RNN-NADE: Boulanger-Lewandowski et al. 2012
PUBLISHED = {"gru": 8.43, "lstm": 8.45, "rnn": 8.91, "gru_autoregressive": 5.56}


def run_args(name: str) -> tuple[str, list[str]]:
    config, cell, head = RUNS[name]
    return config, [f"--model.init_args.rnn.cell={cell}"] + ([f"--model.init_args.head={head}"] if head else [])


def refine_choice() -> dict:
    """``conv_refine`` (the convolution also reads the GRU head's probabilities) on or off, decided on validation
    NLL over two seeds; only the chosen one is tested (results/music_choice_refine.json, then its row)."""
    config, extra = run_args("gru_conv")
    record, run = choose_on_validation(
        {
            "conv_refine": (config, [*extra, "--model.init_args.conv_refine=true"]),
            "no_conv_refine": (config, [*extra, "--model.init_args.conv_refine=false"]),
        },
        seeds=(42, 1, 2),
        mode="min",
        name="jsb_refine_choice",
    )
    record["command"] = "python benchmarks/music.py refine_choice"
    write("music_choice_refine", record)
    chosen_config, chosen_extra = (
        record["candidates"][record["chosen"]]["config"],
        record["candidates"][record["chosen"]]["extra"],
    )
    result = row("gru_conv", run, chosen_config, chosen_extra)
    result["chosen_on_validation"] = {k: v["val_mean"] for k, v in record["candidates"].items()}
    write("music_jsb_gru_conv", result)
    return record


def run_one(name: str) -> dict:
    if name == "refine_choice":
        return refine_choice()
    config, extra = run_args(name)
    result = row(name, fit_and_test(config, extra, name=f"jsb_{name}"), config, extra)
    write(f"music_jsb_{name}", result)
    return result


def row(name: str, run, config: str, extra: list[str]) -> dict:
    """The benchmark row of a fitted and tested run: NLL, frame accuracy, five continuations of test chorales."""
    from rnnlab.pianoroll import plot_roll, roll_stats, roll_to_midi

    cli = run.cli
    model, dm = cli.model.eval(), cli.datamodule
    pieces = dm.read()["test"]
    out = ROOT / "docs" / "samples"
    samples = []
    for k in range(5):  # continue the first 8 steps of five test chorales for 56 steps each
        primer = pieces[k][:8]
        roll = model.generate(56, primer, temperature=1.0, seed=k)
        classes = {int(p) % 12 for p in (primer > 0.5).nonzero()[:, 1] + 21}
        samples.append((roll, primer, classes))
    gen = [r[len(p) :] for r, p, _ in samples]
    stats = roll_stats(gen)
    stats["in_key_share"] = round(
        sum(roll_stats([r[len(p) :]], c)["in_key_share"] * float((r[len(p) :] > 0.5).sum()) for r, p, c in samples)
        / max(float(sum((g > 0.5).sum() for g in gen)), 1),
        4,
    )
    reference = roll_stats([p[8:64] for p in pieces[:5]])
    reference["in_key_share"] = round(
        sum(
            roll_stats([p[8:64]], {int(q) % 12 for q in (p[:8] > 0.5).nonzero()[:, 1] + 21})["in_key_share"]
            * float((p[8:64] > 0.5).sum())
            for p in pieces[:5]
        )
        / max(float(sum((p[8:64] > 0.5).sum() for p in pieces[:5])), 1),
        4,
    )
    if name == "gru":
        roll_to_midi(samples[0][0], out / "jsb_gru_test0.mid")
        plot_roll(
            samples[0][0],
            out / "jsb_gru_test0.png",
            title="GRU: test chorale 0, 8 steps of primer + 56 generated",
            primer_steps=8,
        )
    result = {
        "run": name,
        "cell": model.hparams.cell,
        "command": f"python main.py fit --config {config} {' '.join(extra)}",
        "test_nll": round(run.test["test/nll"], 4),
        "test_nll_all": round(run.test["test/nll_all"], 4),
        "test_frame_acc": round(run.test["test/frame_acc"], 4),
        "best_val_nll": round(run.best_score, 4),
        "epochs": cli.trainer.current_epoch,
        "fit_seconds": run.fit_seconds,
        "published_nll": PUBLISHED[name.removesuffix("_conv")],
        "samples": stats,
        "test_set": reference,
        "model": dict(model.hparams),
    }
    return result


def table() -> str:
    rows = [
        "| config | model | test NLL / step (nats) | published | NLL incl. first steps | frame acc | epochs | fit time |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in load("music_jsb_*.json"):
        m = r["model"]
        ar = m.get("head") == "autoregressive"
        model = f"{m['cell'].upper()} {m['hidden_size']}, " + (
            "keys of a step autoregressive" if ar else "independent keys"
        )
        if m.get("conv_kernel"):
            model += (
                f", + pitch-relative conv ({m['conv_kernel']} semitones x {m['conv_channels']}"
                f"{', reading the head' if m.get('conv_refine') else ''}), EMA of the weights"
            )
            if "chosen_on_validation" in r:
                model += " (head reading chosen on validation, 2 seeds)"
        published = f"{r['published_nll']:.2f} ({'RNN-NADE, Boulanger-Lewandowski 2012' if ar else 'Bai et al. 2018'})"
        rows.append(
            f"| `{r['command'].removeprefix('python main.py fit --config ')}` | {model} | "
            f"**{r['test_nll']:.2f}** | {published} | {r['test_nll_all']:.2f} | "
            f"{100 * r['test_frame_acc']:.1f}% | {r['epochs']} | {r['fit_seconds'] / 60:.1f} min"
            f"{' (cores shared with other work)' if r.get('timing_note') else ''} |"
        )
    return "\n".join(rows)


def samples_table() -> str:
    rows = ["| | notes per step | in the primer's pitch classes | pitch range |", "|---|---|---|---|"]
    for r in load("music_jsb_*.json"):
        s = r["samples"]
        rows.append(
            f"| {r.get('run', r['cell'])} samples (5 x 56 steps after 8 of a test chorale) | {s['notes_per_step']:.2f} "
            f"| {100 * s['in_key_share']:.1f}% | {s['pitch_min']}-{s['pitch_max']} |"
        )
    if rows[2:]:
        t = load("music_jsb_*.json")[0]["test_set"]
        rows.append(
            f"| the same test chorales (steps 8-63) | {t['notes_per_step']:.2f} | {100 * t['in_key_share']:.1f}% "
            f"| {t['pitch_min']}-{t['pitch_max']} |"
        )
    return "\n".join(rows)


def tables() -> str:
    return table() + "\n\n" + samples_table()


if __name__ == "__main__":
    main(__file__, run_one, tables, list(RUNS))
