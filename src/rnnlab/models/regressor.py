"""Synchronous many-to-many regression: forecasting a multivariate time series (the RNN as a non-linear VAR).

VAR(1) is ``y_{t+1} = c + A y_t + e``; an Elman RNN is ``h_t = f(W x_t + U h_{t-1} + b)``. With ``f`` the identity,
``U = 0``, ``x_t = y_t`` and the output ``h_t`` itself, the RNN *is* a VAR(1) whose least-squares fit is the same as
statsmodels' (``mode: var1``). ``mode: rnn`` frees all of it: any cell, a hidden state, a linear head.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError

from rnnlab.contract import Batch
from rnnlab.errors import RnnlabError
from rnnlab.models.base import RnnlabModule
from rnnlab.nn.recurrent import Recurrent, RecurrentSpec
from rnnlab.optim import OptimizerCallable, Schedule, WarmupCosine, adamw


class SequenceRegressor(RnnlabModule):
    """Recurrent driver -> linear head predicting, at every step, the next ``horizon`` values of all variables
    (``[B, T, horizon, num_features]``). Training: mean squared error over all steps and horizons (scaled units).
    Evaluation: the forecast made at each window's last step; logs ``{stage}/loss`` and RMSE / MAE per horizon in the
    transformed series' own units (``{stage}/rmse_h1`` ... averaged over variables, ``{stage}/rmse_h1/<variable>``).

    ``forecast="iterated"`` evaluates multi-step forecasts by feeding the 1-step prediction back as the next input
    instead of reading the direct ``h``-step head. ``residual=True`` adds an anchor to every prediction, so the
    network learns a correction to it (needs inputs = targets): the mean of the last ``anchor_window`` observations
    up to each step (1: the last value, so a 0 output is the naive forecast). ``relative_inputs=True`` also subtracts
    the anchor from the inputs, as reversible instance normalisation does (Kim et al. 2022, causal here): the network
    sees the series relative to its recent level, so a level that drifts away from the training span's mean (growth
    was lower after 2000) does not take it off the inputs it was trained on.
    """

    def __init__(
        self,
        num_features: int,
        horizon: int = 1,
        mode: Literal["rnn", "var1"] = "rnn",
        rnn: RecurrentSpec = RecurrentSpec("gru", "torch", 32, 1, False, packed=False),
        nonlinearity: Literal["tanh", "relu", "identity"] = "tanh",
        dropout: float = 0.0,
        forecast: Literal["direct", "iterated"] = "direct",
        residual: bool = False,
        anchor_window: int = 1,
        relative_inputs: bool = False,
        optimizer: OptimizerCallable = adamw(3e-3, weight_decay=1e-4),
        scheduler: Schedule = lazy_instance(WarmupCosine, warmup=0.05),
    ) -> None:
        super().__init__()
        rnn = self.init_parts(rnn, optimizer, scheduler)
        if rnn.bidirectional:
            raise RnnlabError("a forecaster reads the past only: set rnn.bidirectional false")
        hidden_size, num_layers, cell, impl = rnn.hidden_size, rnn.num_layers, rnn.cell, rnn.impl
        if num_features < 1:
            raise RnnlabError("SequenceRegressor needs a time-series DataModule (num_features >= 1)")
        D = num_features
        if anchor_window < 1:
            raise RnnlabError(
                f"anchor_window must be >= 1 (observations averaged into the anchor), got {anchor_window}"
            )
        if relative_inputs and not residual:
            raise RnnlabError("relative_inputs subtracts the residual anchor from the inputs: set residual: true too")
        if relative_inputs and anchor_window == 1:
            raise RnnlabError(
                "relative_inputs with anchor_window 1 leaves the network only zeros to read (each input "
                "minus itself): use anchor_window >= 2, e.g. 8"
            )
        if residual and (mode == "var1" or (anchor_window > 1 and forecast == "iterated")):
            raise RnnlabError(
                "residual anchors need mode 'rnn' and, with anchor_window > 1, forecast 'direct' (an "
                "iterated step sees one observation, not the window the anchor averages)"
            )
        if mode == "var1":
            if horizon != 1 and forecast == "direct":
                raise RnnlabError("mode 'var1' predicts one step: use horizon 1 or forecast 'iterated'")
            self.rnn = Recurrent(D, D, cell="rnn", nonlinearity="identity")
            with torch.no_grad():
                self.rnn.weight_hh_l0.zero_()
            self.rnn.weight_hh_l0.requires_grad_(False)  # U = 0: no hidden memory, a VAR(1)
            self.head = None
        elif mode == "rnn":
            self.rnn = Recurrent(
                D,
                hidden_size,
                cell=cell,
                impl=impl,
                num_layers=num_layers,
                dropout=dropout,
                nonlinearity=nonlinearity,
                packed=rnn.packed,
            )
            self.head = nn.Linear(hidden_size, horizon * D)
        else:
            raise RnnlabError(f"mode must be 'rnn' or 'var1', got {mode!r}")
        self.register_buffer("scale", torch.ones(D))
        for stage in ("val", "test"):  # per horizon, per variable (torchmetrics: summed over batches and DDP ranks)
            setattr(
                self,
                f"{stage}_rmse",
                nn.ModuleList(MeanSquaredError(squared=False, num_outputs=D) for _ in range(horizon)),
            )
            setattr(self, f"{stage}_mae", nn.ModuleList(MeanAbsoluteError(num_outputs=D) for _ in range(horizon)))
        self.variables = [f"y{i}" for i in range(D)]

    def forward(self, x: Tensor, lengths: Tensor, state=None):
        """``x [B, T, D]`` -> predictions ``[B, T, H, D]`` (``H = 1`` for ``var1``) and the final state."""
        hp = self.hparams
        anchor = self.anchor(x) if hp.residual else None
        out, state = self.rnn(x - anchor if hp.relative_inputs else x, lengths, state)
        if self.head is None:
            return out.unsqueeze(2), state
        B, T, _ = out.shape
        pred = self.head(out).view(B, T, -1, hp.num_features)
        if hp.residual:  # the network predicts the change from the anchor (the naive forecast + a correction)
            pred = pred + anchor.unsqueeze(2)
        return pred, state

    def anchor(self, x: Tensor) -> Tensor:
        """The mean of the last ``anchor_window`` observations up to and including each step (fewer at a window's
        start): ``[B, T, D]``. Causal, so a step's anchor never sees the values it is trained to predict."""
        k = self.hparams.anchor_window
        if k == 1:
            return x  # exactly the last value (running-sum differences would round)
        total = F.pad(x.cumsum(1), (0, 0, k, 0))  # k zero steps before the running sums
        count = torch.arange(1, x.shape[1] + 1, device=x.device).clamp(max=k).view(1, -1, 1)
        return (total[:, k:] - total[:, :-k]) / count

    @torch.no_grad()
    def forecast_from(self, x: Tensor, steps: int, method: str = "direct") -> Tensor:
        """Forecasts ``[B, steps, D]`` from the end of each window ``x [B, T, D]``."""
        lengths = torch.full((x.shape[0],), x.shape[1], dtype=torch.long)
        pred, state = self(x, lengths)
        if method == "direct" and pred.shape[2] >= steps:
            return pred[:, -1, :steps]
        outs = [pred[:, -1, 0]]
        for _ in range(steps - 1):
            nxt, state = self(outs[-1].unsqueeze(1), torch.ones_like(lengths), state)
            outs.append(nxt[:, -1, 0])
        return torch.stack(outs, 1)

    def setup(self, stage: str) -> None:
        if self.task.scale is not None:
            self.scale.copy_(self.task.scale.to(self.scale))
            self.variables = list(self.task.labels)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict:
        """The ``horizon``-step forecast from the end of each window (scaled units; the DataModule unscales)."""
        return {
            "index": batch.index,
            "forecast": self.forecast_from(batch.features, self.hparams.horizon, self.hparams.forecast),
        }

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        pred, _ = self(batch.features, batch.lengths)
        loss = F.mse_loss(pred, batch.target[:, :, : pred.shape[2]])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch))
        return loss

    def evaluate(self, batch: Batch, stage: str) -> None:
        H = self.hparams.horizon
        pred = self.forecast_from(batch.features, H, self.hparams.forecast)  # [B, H, D]
        gold = batch.target[:, -1, :H]  # the origin's targets [B, H, D]
        self.log(f"{stage}/loss", F.mse_loss(pred, gold), prog_bar=True, batch_size=len(batch), sync_dist=True)
        for h in range(H):  # errors in the transformed series' units
            getattr(self, f"{stage}_rmse")[h].update(pred[:, h] * self.scale, gold[:, h] * self.scale)
            getattr(self, f"{stage}_mae")[h].update(pred[:, h] * self.scale, gold[:, h] * self.scale)

    def epoch_end(self, stage: str) -> None:
        for kind in ("rmse", "mae"):
            for h, metric in enumerate(getattr(self, f"{stage}_{kind}")):
                per_var = metric.compute()
                self.log(f"{stage}/{kind}_h{h + 1}", per_var.mean(), prog_bar=kind == "rmse" and h == 0)
                if kind == "rmse":
                    for name, value in zip(self.variables, per_var):
                        self.log(f"{stage}/rmse_h{h + 1}/{name}", value)
                metric.reset()
