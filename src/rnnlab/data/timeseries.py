"""Multivariate time series for forecasting: statsmodels' ``macrodata`` (US quarterly, 1959Q1-2009Q3; ships inside
the package, no download) or any CSV of numeric columns.

Pipeline: select columns -> transform (``logdiff``: quarter-on-quarter log growth, the usual VAR input; ``diff``;
``none``) -> chronological split into train / val / test spans -> standardise with the mean and standard deviation
of the *training span only* -> sliding windows. A window ending at step ``t`` (its forecast origin) holds the inputs
``y[t-w+1 .. t]`` and, for every input step ``s``, the targets ``y[s+1 .. s+H]`` (``target [w, H, D]``): training
uses every step (synchronous many-to-many), evaluation the origin's forecast only. A split's windows are those
whose first forecast step lies in the split; their inputs may reach back into earlier spans (the past is known at
forecast time), their targets never reach into later ones.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal, Optional

import torch
from torch import Tensor

from rnnlab.contract import ForecastRow, Task
from rnnlab.data.base import SequenceDataModule
from rnnlab.data.batching import SequenceDataset
from rnnlab.errors import RnnlabError, require

MACRO_COLUMNS = ["realgdp", "realcons", "realinv"]


def load_frame(csv: Optional[str]):
    import pandas as pd

    if csv is None:
        macrodata = require("statsmodels.datasets.macrodata", "timeseries", "the macrodata series")

        return macrodata.load_pandas().data
    path = Path(csv)
    if not path.is_file():
        raise RnnlabError(f"csv {path} not found: give a CSV file with a header row and numeric columns")
    return pd.read_csv(path)


def transform(values: Tensor, kind: str, columns: list[str]) -> Tensor:
    if kind == "none":
        return values
    if kind == "diff":
        return values[1:] - values[:-1]
    if kind == "logdiff":
        bad = [c for c, ok in zip(columns, (values > 0).all(0).tolist()) if not ok]
        if bad:
            raise RnnlabError(
                f"transform 'logdiff' needs positive values, but {bad} have zeros or negatives; use "
                f"'diff' or 'none' for them"
            )
        logs = values.log()
        return logs[1:] - logs[:-1]
    raise RnnlabError(f"transform must be 'logdiff', 'diff' or 'none', got {kind!r}")


class TimeSeriesDataModule(SequenceDataModule):
    """Sliding windows over a multivariate series, for :class:`~rnnlab.models.regressor.SequenceRegressor`.

    Args:
        csv: a CSV file (header row, numeric columns); None: statsmodels' ``macrodata``.
        columns: the variables to model (default for macrodata: real GDP, consumption, investment).
        transform: ``logdiff`` (log growth rates), ``diff`` or ``none``.
        window: input steps per window.
        horizon: forecast steps ``H`` (1..H are all predicted, "direct" multi-step).
        val_fraction, test_fraction: the last parts of the series, in time order (test last).
        **kwargs: see :class:`~rnnlab.data.base.SequenceDataModule`.
    """

    name = "macrodata"
    batch_layout = "features"  # batch.features: the window's values

    def __init__(
        self,
        csv: Optional[str] = None,
        columns: Optional[list[str]] = None,
        transform: Literal["logdiff", "diff", "none"] = "logdiff",
        window: int = 16,
        horizon: int = 4,
        val_fraction: float = 0.15,
        test_fraction: float = 0.15,
        **kwargs,
    ) -> None:
        kwargs.setdefault("batch_size", 32)
        super().__init__(**kwargs)
        if window < 1 or horizon < 1:
            raise RnnlabError(f"window and horizon must be >= 1, got {window} and {horizon}")
        if transform not in ("logdiff", "diff", "none"):
            raise RnnlabError(f"transform must be 'logdiff', 'diff' or 'none', got {transform!r}")
        self.csv, self.columns, self.kind = csv, columns, transform
        self.window, self._horizon = window, horizon
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        if csv:
            self.name = f"csv_{Path(csv).stem}"
        self.bounds: dict[str, tuple[int, int]] = {}

    def encoding_args(self) -> dict:
        args = {"columns": self.columns, "transform": self.kind, "val": self.val_fraction, "test": self.test_fraction}
        if self.csv and Path(self.csv).is_file():
            args["csv"] = [str(Path(self.csv).resolve()), Path(self.csv).stat().st_mtime]
        return args

    # ----------------------------------------------------------------- building
    def series(self) -> tuple[Tensor, list[str]]:
        """The transformed, unscaled series ``[n, D]`` and its column names."""
        frame = load_frame(self.csv)
        columns = self.columns or (MACRO_COLUMNS if self.csv is None else list(frame.columns))
        missing = [c for c in columns if c not in frame.columns]
        if missing:
            raise RnnlabError(f"columns {missing} not in the data; it has {list(frame.columns)}")
        try:
            values = torch.tensor(frame[columns].astype("float64").to_numpy())
        except (ValueError, TypeError) as err:
            raise RnnlabError(f"columns {columns} must be numeric ({err})") from None
        if torch.isnan(values).any():
            rows = torch.isnan(values).any(1).nonzero().flatten()[:5].tolist()
            raise RnnlabError(f"missing values in rows {rows} (0-based): fill or drop them first")
        return transform(values, self.kind, columns), list(columns)

    def spans(self, n: int) -> dict[str, tuple[int, int]]:
        n_test, n_val = round(self.test_fraction * n), round(self.val_fraction * n)
        test_start, val_start = n - n_test, n - n_test - n_val
        if min(n_test, n_val) < self._horizon or val_start <= self.window + self._horizon:
            raise RnnlabError(
                f"{n} steps are too few for window {self.window}, horizon {self._horizon} and these split fractions"
            )
        return {"train": (0, val_start), "val": (val_start, test_start), "test": (test_start, n)}

    def build(self, state: Optional[dict]) -> dict:
        y, columns = self.series()
        spans = self.spans(len(y))
        if state is None:
            train = y[: spans["train"][1]]
            state = {
                "columns": columns,
                "mean": train.mean(0).tolist(),
                "std": train.std(0).clamp(min=1e-12).tolist(),
                "transform": self.kind,
                "labels": columns,
            }
        scaled = (y - torch.tensor(state["mean"], dtype=y.dtype)) / torch.tensor(state["std"], dtype=y.dtype)
        return {"state": state, "splits": {"series": {"values": scaled.float()}}}

    def origins(self, n: int, split: str) -> range:
        """Forecast origins of a split: the steps ``t`` whose first forecast step ``t + 1`` lies in the split, with
        a full window before and all ``H`` targets inside the split."""
        start, end = self.spans(n)[split]
        return range(max(start - 1, self.window - 1), end - self._horizon)

    def windows(self, series: Tensor, split: str) -> SequenceDataset:
        w, H = self.window, self._horizon
        inputs, targets = [], []
        for t in self.origins(len(series), split):
            inputs.append(series[t - w + 1 : t + 1])
            steps = torch.arange(t - w + 1, t + 1).unsqueeze(1) + torch.arange(1, H + 1)  # [w, H]
            targets.append(series[steps])
        if not inputs:
            raise RnnlabError(f"no {split} windows: the {split} span is shorter than the horizon")
        return SequenceDataset(inputs, targets)

    def make_datasets(self, splits: dict) -> dict[str, SequenceDataset]:
        """Windows over the one cached series, cut at the chronological bounds."""
        series = splits["series"]["values"]
        self.bounds = self.spans(len(series))
        return {split: self.windows(series, split) for split in ("train", "val", "test")}

    def describe_task(self) -> Task:
        return replace(super().describe_task(), scale=self.scale)

    def on_state(self, state: dict) -> None:
        self.labels = list(state["columns"])

    # ----------------------------------------------------------------- predict
    predict_examples = ("last", "2007Q4")
    predict_bad_example = "tomorrow"

    def periods(self, n: int) -> list[str]:
        """A label per step of the transformed series: ``YYYYQn`` when the data has ``year`` and ``quarter`` columns
        (macrodata), else the step number."""
        frame = load_frame(self.csv)
        if {"year", "quarter"} <= set(frame.columns):
            labels = [f"{int(y)}Q{int(q)}" for y, q in zip(frame["year"], frame["quarter"])]
            return labels[len(labels) - n :]  # a difference transform drops the first step
        return [str(i) for i in range(n)]

    def encode_predict(self, texts: list[str]) -> list[dict]:
        """Each line a forecast origin: ``last`` (or empty: the end of the data), a period such as ``2007Q4`` or a
        step number; the forecast covers the ``horizon`` steps after it, from the ``window`` steps up to it."""
        series = self._load_or_build()["splits"]["series"]["values"]
        periods = self.periods(len(series))
        items = []
        for raw in texts:
            spec = raw.strip()
            t = len(series) - 1 if spec in ("", "last") else periods.index(spec) if spec in periods else None
            if t is None or t < self.window - 1:
                items.append(
                    {
                        "input": raw,
                        "error": (
                            f"unknown origin {spec!r}: give 'last' or a period from {periods[self.window - 1]} to "
                            f"{periods[-1]}"
                            if t is None
                            else f"{spec} has fewer than window={self.window} steps before it"
                        ),
                    }
                )
                continue
            items.append({"input": raw, "tokens": series[t - self.window + 1 : t + 1], "origin": periods[t]})
        return items

    prediction_row = ForecastRow  # the fields of render_prediction's rows (rnnlab.contract)

    def render_prediction(self, item: dict, output: dict, top_k: int = 3) -> dict:
        """The forecast of each variable for steps 1..H after the origin, in the transformed series' units (e.g.
        quarter-on-quarter log growth for ``logdiff``)."""
        mean, std = torch.tensor(self.state["mean"]), torch.tensor(self.state["std"])
        values = output["forecast"].double() * std + mean  # [H, D]
        return {
            "origin": item["origin"],
            "units": self.kind,
            "forecast": {c: [round(float(v), 6) for v in values[:, k]] for k, c in enumerate(self.labels)},
        }

    @property
    def scale(self) -> Tensor:
        """Per-variable standard deviations (to report errors in the transformed series' units)."""
        self._ensure_state()
        return torch.tensor(self.state["std"])

    @property
    def num_features(self) -> int:
        self._ensure_state()
        return len(self.state["columns"])

    @property
    def horizon(self) -> int:
        return self._horizon
