"""JSB Chorales benchmark: GRU, LSTM and vanilla RNN on the official split, alone (configs/jsb_chorales_gru.yaml) and
with the pitch-relative convolution term (configs/jsb_chorales_gru_conv.yaml); test NLL per step (nats) and frame
accuracy; a generated chorale as MIDI + piano-roll picture (docs/samples/) with the measures a musician checks.

    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/music.py            # every run, one process each
    RNNLAB_LOCAL_DATA=../shared/data python benchmarks/music.py gru_conv   # one of them
    python benchmarks/music.py --table
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, fit_and_test, load, main, write  # noqa: E402

CONFIG = "configs/jsb_chorales_gru.yaml"  # the recurrent network alone, as the published figures use it
CONV = "configs/jsb_chorales_gru_conv.yaml"  # + the pitch-relative convolution term and an EMA of the weights
# run name -> (config, cell, head)
RUNS = {"gru": (CONFIG, "gru", None), "lstm": (CONFIG, "lstm", None), "rnn": (CONFIG, "rnn", None),
        "gru_autoregressive": (CONFIG, "gru", "autoregressive"),
        "gru_conv": (CONV, "gru", None), "lstm_conv": (CONV, "lstm", None), "rnn_conv": (CONV, "rnn", None)}
# Bai, Kolter & Koltun 2018, Table 2 (TCN: 8.10); RNN-NADE: Boulanger-Lewandowski et al. 2012
PUBLISHED = {"gru": 8.43, "lstm": 8.45, "rnn": 8.91, "gru_autoregressive": 5.56}


def run_one(name: str) -> dict:
    from rnnlab.models.music import plot_roll, roll_stats, roll_to_midi

    config, cell, head = RUNS[name]
    extra = [f"--model.init_args.cell={cell}"] + ([f"--model.init_args.head={head}"] if head else [])
    run = fit_and_test(config, extra, name=f"jsb_{name}")
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
    gen = [r[len(p):] for r, p, _ in samples]
    stats = roll_stats(gen)
    stats["in_key_share"] = round(sum(roll_stats([r[len(p):]], c)["in_key_share"] * float((r[len(p):] > .5).sum())
                                      for r, p, c in samples) / max(float(sum((g > .5).sum() for g in gen)), 1), 4)
    reference = roll_stats([p[8:64] for p in pieces[:5]])
    reference["in_key_share"] = round(sum(roll_stats([p[8:64]], {int(q) % 12 for q in (p[:8] > .5).nonzero()[:, 1] + 21})
                                          ["in_key_share"] * float((p[8:64] > .5).sum()) for p in pieces[:5])
                                      / max(float(sum((p[8:64] > .5).sum() for p in pieces[:5])), 1), 4)
    if name == "gru":
        roll_to_midi(samples[0][0], out / "jsb_gru_test0.mid")
        plot_roll(samples[0][0], out / "jsb_gru_test0.png", title="GRU: test chorale 0, 8 steps of primer + 56 generated",
                  primer_steps=8)
    result = {
        "run": name, "cell": cell, "command": f"python main.py fit --config {config} {' '.join(extra)}",
        "test_nll": round(run.test["test/nll"], 4), "test_nll_all": round(run.test["test/nll_all"], 4),
        "test_frame_acc": round(run.test["test/frame_acc"], 4),
        "best_val_nll": round(run.best_score, 4), "epochs": cli.trainer.current_epoch,
        "fit_seconds": run.fit_seconds, "published_nll": PUBLISHED[name.removesuffix("_conv")],
        "samples": stats, "test_set": reference, "model": dict(model.hparams),
    }
    write(f"music_jsb_{name}", result)
    return result


def table() -> str:
    rows = ["| config | model | test NLL / step (nats) | published | NLL incl. first steps | frame acc | epochs | fit time |",
            "|---|---|---|---|---|---|---|---|"]
    for r in load("music_jsb_*.json"):
        m = r["model"]
        ar = m.get("head") == "autoregressive"
        model = f"{m['cell'].upper()} {m['hidden_size']}, " + ("keys of a step autoregressive" if ar else
                                                               "independent keys")
        if m.get("conv_kernel"):
            model += (f", + pitch-relative conv ({m['conv_kernel']} semitones x {m['conv_channels']}"
                      f"{', reading the head' if m.get('conv_refine') else ''}), EMA of the weights")
        published = f"{r['published_nll']:.2f} ({'RNN-NADE, Boulanger-Lewandowski 2012' if ar else 'Bai et al. 2018'})"
        rows.append(f"| `{r['command'].removeprefix('python main.py fit --config ')}` | {model} | "
                    f"**{r['test_nll']:.2f}** | {published} | {r['test_nll_all']:.2f} | "
                    f"{100 * r['test_frame_acc']:.1f}% | {r['epochs']} | {r['fit_seconds'] / 60:.1f} min |")
    return "\n".join(rows)


def samples_table() -> str:
    rows = ["| | notes per step | in the primer's pitch classes | pitch range |", "|---|---|---|---|"]
    for r in load("music_jsb_*.json"):
        s = r["samples"]
        rows.append(f"| {r.get('run', r['cell'])} samples (5 x 56 steps after 8 of a test chorale) | {s['notes_per_step']:.2f} "
                    f"| {100 * s['in_key_share']:.1f}% | {s['pitch_min']}-{s['pitch_max']} |")
    if rows[2:]:
        t = load("music_jsb_*.json")[0]["test_set"]
        rows.append(f"| the same test chorales (steps 8-63) | {t['notes_per_step']:.2f} | {100 * t['in_key_share']:.1f}% "
                    f"| {t['pitch_min']}-{t['pitch_max']} |")
    return "\n".join(rows)


def tables() -> str:
    return table() + "\n\n" + samples_table()


if __name__ == "__main__":
    main(__file__, run_one, tables, list(RUNS))
