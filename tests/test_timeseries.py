"""Time-series forecasting: chronological split without leaks, window alignment, the linear RNN == VAR(1)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from rnnlab.cli import main
from rnnlab.data.timeseries import TimeSeriesDataModule
from rnnlab.models.regressor import SequenceRegressor
from rnnlab.nn.recurrent import RecurrentSpec

ROOT = Path(__file__).resolve().parents[1]


def synthetic_var(T=500, seed=0):
    rng = np.random.default_rng(seed)
    A = np.array([[0.6, 0.2], [-0.1, 0.5]])
    c = np.array([0.3, -0.2])
    y = np.zeros((T, 2))
    for t in range(1, T):
        y[t] = c + A @ y[t - 1] + rng.normal(scale=0.5, size=2)
    return y, A, c


@pytest.fixture
def csv_file(tmp_path) -> Path:
    y, _, _ = synthetic_var(200)
    path = tmp_path / "series.csv"
    path.write_text("a,b\n" + "\n".join(f"{u:.6f},{v:.6f}" for u, v in y) + "\n")
    return path


def test_scaler_uses_the_training_span_only_and_windows_align(env, csv_file):
    dm = TimeSeriesDataModule(
        csv=str(csv_file), transform="none", window=5, horizon=3, val_fraction=0.2, test_fraction=0.2
    )
    dm.setup("fit")
    raw, _ = dm.series()
    train_end = dm.bounds["train"][1]
    assert torch.allclose(torch.tensor(dm.state["mean"]), raw[:train_end].mean(0).float(), atol=1e-5)
    assert not torch.allclose(torch.tensor(dm.state["mean"]), raw.mean(0).float(), atol=1e-3)
    series = (raw - torch.tensor(dm.state["mean"], dtype=raw.dtype)) / torch.tensor(dm.state["std"], dtype=raw.dtype)
    for split in ("train", "val", "test"):
        start, end = dm.bounds[split]
        ds = dm.datasets[split]
        for (x, target, _), t in zip(ds, dm.origins(len(raw), split)):
            assert torch.allclose(x, series[t - 4 : t + 1].float(), atol=1e-5)
            for s in range(5):  # step s of the window predicts the next 3 values after it
                assert torch.allclose(target[s], series[t - 4 + s + 1 : t - 4 + s + 4].float(), atol=1e-5)
            assert start <= t + 1 and t + 3 < end  # forecasts lie inside the split, never in a later one
        if split == "train":
            assert max(dm.origins(len(raw), "train")) + 3 < train_end


def test_linear_rnn_configured_as_var1_equals_statsmodels_var1():
    from statsmodels.tsa.api import VAR

    y, A, c = synthetic_var()
    res = VAR(y).fit(1)
    model = SequenceRegressor(num_features=2, horizon=1, mode="var1")
    x = torch.tensor(y[:-1], dtype=torch.float32).unsqueeze(0)
    target = torch.tensor(y[1:], dtype=torch.float32).unsqueeze(0)
    lengths = torch.tensor([x.shape[1]])
    opt = torch.optim.LBFGS(
        [p for p in model.parameters() if p.requires_grad], lr=1, max_iter=200, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x, lengths)[0][:, :, 0], target)
        loss.backward()
        return loss

    opt.step(closure)
    A_rnn = model.rnn.weight_ih_l0.detach().numpy()
    c_rnn = (model.rnn.bias_ih_l0 + model.rnn.bias_hh_l0).detach().numpy()
    assert np.allclose(A_rnn, res.coefs[0], atol=1e-3) and np.allclose(c_rnn, res.intercept, atol=1e-3)
    assert np.allclose(A_rnn, A, atol=0.1) and np.allclose(c_rnn, c, atol=0.15)  # the true process, recovered
    assert float(model.rnn.weight_hh_l0.abs().max()) == 0.0  # no hidden memory: exactly a VAR(1)
    ours = model.forecast_from(x[:, -10:], 1)[0, 0].numpy()
    theirs = res.forecast(y[-2:-1], 1)[0]
    assert np.allclose(ours, theirs, atol=1e-3)
    # iterated multi-step forecasts follow the VAR recursion too
    ours4 = model.forecast_from(x[:, -10:], 4, method="iterated")[0].numpy()
    assert np.allclose(ours4, res.forecast(y[-2:-1], 4), atol=1e-3)


@pytest.mark.parametrize("name", ["macro_var_gru", "macro_gru_local_level"])
def test_macro_config_fits_and_tests(env, name):
    config = str(ROOT / "configs" / f"{name}.yaml")
    main(
        [
            "fit",
            "--config",
            config,
            "--trainer.max_epochs",
            "3",
            "--trainer.enable_progress_bar",
            "false",
            "--trainer.enable_model_summary",
            "false",
        ]
    )
    ckpt = env / "runs" / name / "version_0" / "checkpoints" / "last.ckpt"
    main(["test", "--config", config, "--ckpt_path", str(ckpt), "--trainer.enable_progress_bar", "false"])
    header = (env / "runs" / name / "version_1" / "metrics.csv").read_text().splitlines()[0]
    assert "test/rmse_h4/realinv" in header and "test/mae_h1" in header


def test_logdiff_of_non_positive_values_is_a_clear_error(env, csv_file):
    from rnnlab.errors import RnnlabError

    with pytest.raises(RnnlabError, match="positive values"):
        TimeSeriesDataModule(csv=str(csv_file), transform="logdiff").series()


def test_residual_regressor_with_a_zero_head_is_the_naive_forecast():
    from rnnlab.models import SequenceRegressor

    model = SequenceRegressor(num_features=3, horizon=4, residual=True, rnn=RecurrentSpec(hidden_size=8))
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    x = torch.randn(2, 5, 3)
    pred, _ = model(x, torch.tensor([5, 5]))
    assert pred.shape == (2, 5, 4, 3)
    assert torch.equal(pred, x.unsqueeze(2).expand(-1, -1, 4, -1))  # every horizon repeats the last value


def test_local_level_anchor_is_the_causal_mean_and_forecasts_shift_with_the_level():
    from rnnlab.errors import RnnlabError
    from rnnlab.models import SequenceRegressor

    torch.manual_seed(0)
    model = SequenceRegressor(
        num_features=3,
        horizon=4,
        residual=True,
        anchor_window=3,
        relative_inputs=True,
        rnn=RecurrentSpec(hidden_size=8),
    )
    x = torch.randn(2, 6, 3)
    by_hand = torch.stack([x[:, max(0, t - 2) : t + 1].mean(1) for t in range(6)], 1)  # never a later step
    assert torch.allclose(model.anchor(x), by_hand, atol=1e-6)
    lengths = torch.tensor([6, 6])
    pred, _ = model(x, lengths)
    shifted, _ = model(x + 5.0, lengths)  # a new level: the network reads the same inputs, forecasts move with it
    assert torch.allclose(shifted, pred + 5.0, atol=1e-5)
    plain = SequenceRegressor(
        num_features=3, horizon=4, residual=True, anchor_window=3, rnn=RecurrentSpec(hidden_size=8)
    )
    assert not torch.allclose(plain(x + 5.0, lengths)[0], plain(x, lengths)[0] + 5.0, atol=1e-3)

    for kwargs, message in (
        ({"relative_inputs": True}, "set residual: true"),
        ({"residual": True, "relative_inputs": True}, "anchor_window >= 2"),
        ({"residual": True, "anchor_window": 0}, "anchor_window must be >= 1"),
        ({"residual": True, "anchor_window": 4, "forecast": "iterated"}, "forecast 'direct'"),
    ):
        with pytest.raises(RnnlabError, match=message):
            SequenceRegressor(num_features=3, horizon=4, **kwargs)
