"""Forecasting benchmark on statsmodels' macrodata: the GRU config, the linear RNN configured as a VAR(1), statsmodels'
VAR (lag order by AIC, and VAR(1)) and the naive last-value forecast, on the same test forecast origins; the
residual GRU and the local-level GRU (`configs/macro_gru_local_level.yaml`) over 5 seeds each.

    python benchmarks/timeseries.py          # prints a table, writes benchmarks/results/timeseries.json

Errors are RMSE of the log growth rates (percentage points x 0.01) at horizons 1 and 4, averaged over the variables.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fit_and_test, load, write  # noqa: E402

CONFIG = "configs/macro_var_gru.yaml"
LEVEL = "configs/macro_gru_local_level.yaml"
SEEDS = (42, 1, 2, 3, 4)
WINDOWS = (4, 8, 16)  # anchor windows tried for the local-level GRU, the one with the lowest validation loss is kept


def train(extra: list[str], name: str, config: str = CONFIG) -> dict:
    run = fit_and_test(config, extra, name=name)
    val = run.cli.trainer.validate(run.cli.model, datamodule=run.cli.datamodule, verbose=False)[0]  # best ckpt
    return {
        "test": {k.removeprefix("test/"): v for k, v in run.test.items()},
        "val": {k.removeprefix("val/"): float(v) for k, v in val.items()},
        "fit_seconds": run.fit_seconds,
        "epochs": run.cli.trainer.current_epoch,
        "command": f"python main.py fit --config {config} {' '.join(extra)}".strip(),
    }


def seeds(extra: list[str], name: str, config: str = CONFIG) -> tuple[list[dict], dict, dict]:
    """The runs with seeds 42, 1, 2, 3, 4, and their mean test and validation metrics."""
    runs = [train([*extra, f"--seed_everything={seed}"], f"{name}_s{seed}", config) for seed in SEEDS]
    return runs, *({k: float(np.mean([r[part][k] for r in runs])) for k in runs[0][part]} for part in ("test", "val"))


def baselines(H: int, anchor: int) -> dict:
    from statsmodels.tsa.api import VAR

    from rnnlab.data.timeseries import TimeSeriesDataModule

    dm = TimeSeriesDataModule()
    y, columns = dm.series()
    y = y.numpy()
    origins = list(dm.origins(len(y), "test"))
    fit_end = dm.spans(len(y))["test"][0]  # fitted on train + val (the RNN uses val only to pick its epoch)
    out = {}

    def score(forecast) -> dict:
        errs = np.stack([forecast(t) - y[t + 1 : t + 1 + H] for t in origins])  # [N, H, D]
        rmse = np.sqrt((errs**2).mean(0))  # [H, D]
        return {f"rmse_h{h + 1}": float(rmse[h].mean()) for h in range(H)} | {
            f"rmse_h{h + 1}/{c}": float(rmse[h, d]) for h in range(H) for d, c in enumerate(columns)
        }

    for name, lags in (("VAR (lag by AIC)", None), ("VAR(1)", 1)):
        model = VAR(y[:fit_end])
        res = model.fit(maxlags=8, ic="aic") if lags is None else model.fit(1)
        p = res.k_ar
        out[name] = {"lags": p, **score(lambda t, res=res, p=p: res.forecast(y[t - p + 1 : t + 1], H))}
    # the local-level GRU's idea without the GRU: one linear direct forecast per horizon of y[t+h] - level[t] from
    # y[t] - level[t] (level: the mean of the last `anchor` quarters), least squares on train + val
    level = lambda t: y[max(0, t - anchor + 1) : t + 1].mean(0)  # noqa: E731
    fit_origins = range(anchor, fit_end - H)
    x = np.stack([np.r_[1.0, y[t] - level(t)] for t in fit_origins])
    coef = [
        np.linalg.lstsq(x, np.stack([y[t + h] - level(t) for t in fit_origins]), rcond=None)[0] for h in range(1, H + 1)
    ]
    out[f"linear direct, relative to the {anchor}-quarter level (least squares)"] = score(
        lambda t: np.stack([np.r_[1.0, y[t] - level(t)] @ c + level(t) for c in coef])
    )
    out["naive (last value)"] = score(lambda t: np.repeat(y[t : t + 1], H, 0))
    out["training mean"] = score(lambda t: np.repeat(y[:fit_end].mean(0, keepdims=True), H, 0))
    return {"origins": len(origins), "columns": columns, "rows": out}


def table() -> str:
    results = load("timeseries.json")
    if not results:
        return "(not measured yet)"
    r = results[0]
    rows = [
        "| forecaster | RMSE h=1 | RMSE h=4 | " + " | ".join(f"h=1 {c}" for c in r["columns"]) + " |",
        "|---|---|---|" + "---|" * len(r["columns"]),
    ]
    for name, m in r["rows"].items():
        rows.append(
            f"| {name} | {m['rmse_h1']:.5f} | {m['rmse_h4']:.5f} | "
            + " | ".join(f"{m[f'rmse_h1/{c}']:.5f}" for c in r["columns"])
            + " |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        print(table())
        sys.exit()
    rnn = train([], "macro_var_gru")
    var1 = train(["--model.init_args.mode=var1", "--model.init_args.forecast=iterated"], "macro_linear_rnn_var1")
    # the residual GRU (naive forecast + learned correction), 5 seeds: its spread is as large as the margins
    residual, residual_mean, _ = seeds(["--model.init_args.residual=true"], "macro_gru_residual")
    # relative to the recent level: each anchor window over 5 seeds, chosen on mean validation loss (never on test)
    level = {k: seeds([f"--model.init_args.anchor_window={k}"], f"macro_gru_level{k}", LEVEL) for k in WINDOWS}
    chosen = min(WINDOWS, key=lambda k: level[k][2]["loss"])
    base = baselines(4, chosen)
    rows = {
        "GRU 16 (`configs/macro_var_gru.yaml`)": rnn["test"],
        "GRU 16 residual (`--model.init_args.residual true`), seed 42": residual[0]["test"],
        "GRU 16 residual, mean of 5 seeds (42, 1, 2, 3, 4)": residual_mean,
    }
    for k in WINDOWS:
        runs, test, val = level[k]
        pick = " (chosen on validation)" if k == chosen else ""
        rows[
            f"GRU 16 local level, anchor {k} quarters{pick}, mean of 5 seeds; worst seed h=4 "
            f"{max(r['test']['rmse_h4'] for r in runs):.5f}, validation loss {val['loss']:.4f}"
        ] = test
    rows |= {"linear RNN as VAR(1), gradient descent (`--model.init_args.mode var1`)": var1["test"], **base["rows"]}
    write(
        "timeseries",
        {
            "origins": base["origins"],
            "columns": base["columns"],
            "rows": rows,
            "chosen_anchor": chosen,
            "runs": {
                "gru": rnn,
                "linear_rnn_var1": var1,
                "gru_residual": residual,
                **{f"gru_local_level_{k}": level[k][0] for k in WINDOWS},
            },
        },
    )
    print(table())
