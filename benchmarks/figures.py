"""The pictures of the docs' task pages, from real runs: ``python benchmarks/figures.py`` -> docs/img/*.png.

Reads the benchmark run folders (``runs/bench/<experiment>/version_N/``: metrics.csv, confusion_matrix.png,
attention/epoch<N>.png, checkpoints) that ``benchmarks/*.py`` leave behind; a picture whose run is missing is
skipped with a note. The JSB piano roll is sampled from the best checkpoint of the chosen JSB config, and the
forecast plot trains ``configs/macro_gru_local_level.yaml`` (seed 42, about a minute) and fits statsmodels' VAR.
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "runs" / "bench"
OUT = ROOT / "docs" / "img"


def newest(pattern: str) -> Path | None:
    found = sorted(RUNS.glob(pattern), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def metrics(run: Path) -> list[dict]:
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


def series(rows: list[dict], key: str, x: str = "step") -> tuple[list[float], list[float]]:
    pairs = [(float(r[x]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
    return [a for a, _ in pairs], [b for _, b in pairs]


def copy(source: Path | None, name: str) -> str:
    if source is None or not source.is_file():
        return f"{name}: skipped (no run)"
    shutil.copyfile(source, OUT / name)
    return f"{name}: from {source.relative_to(ROOT)}"


def curve(run: Path | None, name: str, title: str, train_key: str, val_key: str, val_label: str) -> str:
    """Training loss per logged step and a validation metric per evaluation, on two axes."""
    if run is None:
        return f"{name}: skipped (no run)"
    rows = metrics(run)
    fig, ax = plt.subplots(figsize=(6.4, 3.2))
    ax.plot(*series(rows, train_key), color="tab:blue", lw=1, label="training loss")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("training loss", color="tab:blue")
    other = ax.twinx()
    other.plot(*series(rows, val_key), "o-", color="tab:red", label=val_label)
    other.set_ylabel(val_label, color="tab:red")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(OUT / name, dpi=90)
    plt.close(fig)
    return f"{name}: from {run.relative_to(ROOT)}/metrics.csv"


def piano_roll() -> str:
    import torch

    from rnnlab.models import PianoRollModel
    from rnnlab.pianoroll import plot_roll

    def step(path: Path) -> int:
        return int(path.stem.rsplit("step", 1)[-1])

    # the longest-trained best checkpoint of the chosen JSB config (GRU with the pitch-relative convolution)
    candidates = sorted(RUNS.glob("jsb_refine_choice/version_*/checkpoints/epoch*.ckpt"), key=step, reverse=True)
    ckpt = next(
        (
            c
            for c in candidates
            if step(c) >= 100  # a real run, not a smoke test
            and torch.load(c, map_location="cpu", weights_only=True)["hyper_parameters"].get("conv_refine")
        ),
        None,
    )
    if ckpt is None:
        return "jsb_piano_roll.png: skipped (no run)"
    model = PianoRollModel.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    roll = model.generate(96, None, 1.0, seed=0)
    plot_roll(roll, OUT / "jsb_piano_roll.png", title="96 sampled steps (quarter notes), temperature 1, seed 0")
    return f"jsb_piano_roll.png: sampled from {ckpt.relative_to(ROOT)}"


def forecast() -> str:
    import numpy as np
    from statsmodels.tsa.api import VAR

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from common import fit_and_test

    run = fit_and_test("configs/macro_gru_local_level.yaml", ["--seed_everything=42"], name="figures_macro", test=False)
    dm, model = run.cli.datamodule, run.cli.model.eval()
    y, columns = dm.series()
    origins = list(dm.origins(len(y), "test"))
    periods = dm.periods(len(y))
    items = dm.encode_predict([periods[t] for t in origins])
    import torch

    with torch.no_grad():
        gru = [
            dm.render_prediction(it, {"forecast": model.forecast_from(it["tokens"].unsqueeze(0).float(), 4)[0]})
            for it in items
        ]
    values = y.numpy()
    fit_end = dm.spans(len(values))["test"][0]
    var = VAR(values[:fit_end]).fit(maxlags=8, ic="aic")
    k, p = columns.index("realinv"), var.k_ar
    t_axis = np.arange(len(origins))
    actual_h4 = [values[t + 4, k] if t + 4 < len(values) else np.nan for t in origins]
    gru_h4 = [g["forecast"]["realinv"][3] for g in gru]
    var_h4 = [var.forecast(values[t - p + 1 : t + 1], 4)[3, k] for t in origins]
    fig, ax = plt.subplots(figsize=(7.2, 3.4))
    ax.plot(t_axis, actual_h4, "k-", lw=1.5, label="actual")
    ax.plot(t_axis, gru_h4, "-", color="tab:red", label="local-level GRU")
    ax.plot(t_axis, var_h4, "--", color="tab:blue", label=f"VAR({p})")
    step = max(1, len(origins) // 8)
    ax.set_xticks(t_axis[::step], [periods[t + 4] if t + 4 < len(periods) else "" for t in origins][::step])
    ax.set_ylabel("log growth of investment")
    ax.set_title("Real investment, forecast 4 quarters ahead over the test span")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(OUT / "macro_forecast.png", dpi=90)
    plt.close(fig)
    return "macro_forecast.png: configs/macro_gru_local_level.yaml (seed 42) and statsmodels VAR on train + val"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    notes = [
        copy(newest("imdb_lstm/version_*/confusion_matrix.png"), "imdb_confusion.png"),
        copy(newest("namesex_bigru/version_0/confusion_matrix.png"), "namesex_confusion.png"),
        copy(
            max(
                RUNS.glob("cmn_eng_zh_en_attn/version_*/attention/epoch*.png"),
                default=None,
                key=lambda p: p.stat().st_mtime,
            ),
            "translation_attention.png",
        ),
        curve(
            newest("imdb_lstm/version_*"),
            "imdb_learning_curve.png",
            "IMDB BiLSTM (configs/imdb_lstm.yaml)",
            "train/loss_step",
            "val/acc",
            "validation accuracy",
        ),
        curve(
            newest("imdb_lm_pretrain/version_*"),
            "imdb_lm_perplexity.png",
            "IMDB language model (configs/imdb_lm_pretrain.yaml)",
            "train/loss_step",
            "val/ppl",
            "validation perplexity (forward)",
        ),
        curve(
            newest("shakespeare_char_lstm/version_*"),
            "shakespeare_learning_curve.png",
            "tiny shakespeare (configs/shakespeare_char_lstm.yaml)",
            "train/loss_step",
            "val/loss",
            "validation loss (nats/char)",
        ),
        piano_roll(),
        forecast(),
    ]
    print("\n".join(notes))


if __name__ == "__main__":
    main()
