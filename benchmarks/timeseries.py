"""Forecasting benchmark on statsmodels' macrodata: the GRU config, the linear RNN configured as a VAR(1), statsmodels'
VAR (lag order by AIC, and VAR(1)) and the naive last-value forecast, on the same test forecast origins.

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


def train(extra: list[str], name: str) -> dict:
    run = fit_and_test(CONFIG, extra, name=name)
    return {"test": {k.removeprefix("test/"): v for k, v in run.test.items()}, "fit_seconds": run.fit_seconds,
            "epochs": run.cli.trainer.current_epoch,
            "command": f"python main.py fit --config {CONFIG} {' '.join(extra)}".strip()}


def baselines(H: int) -> dict:
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
        rmse = np.sqrt((errs ** 2).mean(0))  # [H, D]
        return {f"rmse_h{h + 1}": float(rmse[h].mean()) for h in range(H)} | {
            f"rmse_h{h + 1}/{c}": float(rmse[h, d]) for h in range(H) for d, c in enumerate(columns)}

    for name, lags in (("VAR (lag by AIC)", None), ("VAR(1)", 1)):
        model = VAR(y[:fit_end])
        res = model.fit(maxlags=8, ic="aic") if lags is None else model.fit(1)
        p = res.k_ar
        out[name] = {"lags": p, **score(lambda t: res.forecast(y[t - p + 1 : t + 1], H))}
    out["naive (last value)"] = score(lambda t: np.repeat(y[t : t + 1], H, 0))
    out["training mean"] = score(lambda t: np.repeat(y[:fit_end].mean(0, keepdims=True), H, 0))
    return {"origins": len(origins), "columns": columns, "rows": out}


def table() -> str:
    results = load("timeseries.json")
    if not results:
        return "(not measured yet)"
    r = results[0]
    rows = ["| forecaster | RMSE h=1 | RMSE h=4 | " + " | ".join(f"h=1 {c}" for c in r["columns"]) + " |",
            "|---|---|---|" + "---|" * len(r["columns"])]
    for name, m in r["rows"].items():
        rows.append(f"| {name} | {m['rmse_h1']:.5f} | {m['rmse_h4']:.5f} | "
                    + " | ".join(f"{m[f'rmse_h1/{c}']:.5f}" for c in r["columns"]) + " |")
    return "\n".join(rows)


if __name__ == "__main__":
    if sys.argv[1:] == ["--table"]:
        print(table())
        sys.exit()
    rnn = train([], "macro_var_gru")
    var1 = train(["--model.init_args.mode=var1", "--model.init_args.forecast=iterated"], "macro_linear_rnn_var1")
    # the residual GRU (naive forecast + learned correction), 5 seeds: its spread is as large as the margins
    residual = [train(["--model.init_args.residual=true", f"--seed_everything={seed}"], f"macro_gru_residual_s{seed}")
                for seed in (42, 1, 2, 3, 4)]
    mean_row = {k: float(np.mean([r["test"][k] for r in residual])) for k in residual[0]["test"]}
    base = baselines(4)
    rows = {"GRU 16 (`configs/macro_var_gru.yaml`)": rnn["test"],
            "GRU 16 residual (`--model.init_args.residual true`), seed 42": residual[0]["test"],
            "GRU 16 residual, mean of 5 seeds (42, 1, 2, 3, 4)": mean_row,
            "linear RNN as VAR(1), gradient descent (`--model.init_args.mode var1`)": var1["test"], **base["rows"]}
    write("timeseries", {"origins": base["origins"], "columns": base["columns"], "rows": rows,
                         "runs": {"gru": rnn, "linear_rnn_var1": var1, "gru_residual": residual}})
    print(table())
