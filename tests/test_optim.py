"""rnnlab.optim: the optimiser and the schedule a config gives a model."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from rnnlab.errors import RnnlabError
from rnnlab.optim import Constant, OneCycle, WarmupCosine, adamw, build_optimizer, configure


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(5, 3)
        self.encoder = nn.Linear(3, 4)
        self.head = nn.Linear(4, 2)


def _groups(result):
    opt = result["optimizer"] if isinstance(result, dict) else result
    return opt, opt.param_groups


def test_matrices_decay_biases_and_embeddings_do_not_and_scales_multiply_the_rate() -> None:
    m = Tiny()
    scale = {"embedding": 0.25, "encoder": 0.5, "head": 1.0}
    result = configure(m.named_parameters(), adamw(0.01, 0.1), Constant(), lambda: 10, lambda n: scale[n.split(".")[0]])
    opt, groups = _groups(result)
    assert isinstance(opt, torch.optim.AdamW) and not isinstance(result, dict)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert by_param[id(m.head.weight)]["weight_decay"] == 0.1 and by_param[id(m.head.weight)]["lr"] == 0.01
    assert by_param[id(m.encoder.weight)]["weight_decay"] == 0.1 and by_param[id(m.encoder.weight)]["lr"] == 0.005
    assert by_param[id(m.encoder.bias)]["weight_decay"] == 0.0 and by_param[id(m.encoder.bias)]["lr"] == 0.005
    assert by_param[id(m.embedding.weight)]["weight_decay"] == 0.0 and by_param[id(m.embedding.weight)]["lr"] == 0.0025
    assert [g["weight_decay"] for g in groups] == sorted((g["weight_decay"] for g in groups), reverse=True)


def test_any_torch_optimiser_as_the_cli_passes_it() -> None:
    spec = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.01)  # what jsonargparse builds
    opt, groups = _groups(configure(Tiny().named_parameters(), spec, Constant(), lambda: 10))
    assert isinstance(opt, torch.optim.SGD) and groups[0]["momentum"] == 0.9 and groups[0]["lr"] == 0.1


def test_one_cycle_peaks_at_each_groups_rate_after_the_warmup_and_ends_near_zero() -> None:
    m = Tiny()
    result = configure(
        m.named_parameters(), adamw(0.01), OneCycle(0.2), lambda: 100, lambda n: 0.5 ** ("head" not in n)
    )
    opt, sched = result["optimizer"], result["lr_scheduler"]["scheduler"]
    assert result["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(100):
        lrs.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    peak = max(range(100), key=lambda s: lrs[s][0])
    assert 18 <= peak <= 21
    assert sorted({round(v, 6) for v in lrs[peak]}) == [0.005, 0.01]
    assert max(lrs[-1]) < 1e-4


def test_warmup_cosine_rises_linearly_then_decays_to_zero() -> None:
    opt = build_optimizer(adamw(1.0, 0.0), [{"params": [nn.Parameter(torch.zeros(1))]}])
    sched = WarmupCosine(0.1).build(opt, 100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[55] == pytest.approx(0.5, abs=0.03)
    assert lrs[-1] < 0.01


def test_a_one_step_fit_has_no_schedule() -> None:
    result = configure(Tiny().named_parameters(), adamw(0.01), OneCycle(), lambda: 1)
    assert isinstance(result, torch.optim.Optimizer)


def test_bad_optimiser_and_schedule_are_named() -> None:
    with pytest.raises(RnnlabError, match="class_path"):
        build_optimizer("adamw", [])
    with pytest.raises(RnnlabError, match="not found"):
        build_optimizer({"class_path": "torch.optim.AdamX"}, [{"params": [nn.Parameter(torch.zeros(1))]}])
    with pytest.raises(RnnlabError, match="rnnlab.optim.OneCycle"):
        configure(Tiny().named_parameters(), adamw(0.01), "onecycle", lambda: 10)
    with pytest.raises(RnnlabError, match="warmup"):
        OneCycle(1.5)


def test_the_cli_takes_a_torch_optimiser_and_a_schedule_by_class_path(cli_parser, monkeypatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    cfg = cli_parser.parse_args(
        [
            "fit",
            "--config",
            "configs/namesex_bigru.yaml",
            "--model.init_args.optimizer=torch.optim.SGD",
            "--model.init_args.optimizer.init_args.lr=0.5",
            "--model.init_args.optimizer.init_args.momentum=0.9",
            "--model.init_args.scheduler=rnnlab.optim.WarmupCosine",
            "--model.init_args.vocab_size=10",
            "--model.init_args.num_classes=2",
        ]
    )
    model = cli_parser.instantiate(cfg).fit.model
    assert isinstance(model.schedule, WarmupCosine) and model.schedule.warmup == 0.1  # (the config's, carried over)
    opt, groups = _groups(configure(model.named_parameters(), model.optimizer_spec, Constant(), lambda: 10))
    assert isinstance(opt, torch.optim.SGD) and groups[0]["lr"] == 0.5 and groups[0]["momentum"] == 0.9
    assert "optimizer" not in model.hparams and "scheduler" not in model.hparams  # a checkpoint holds plain values
    with pytest.raises(SystemExit):
        cli_parser.parse_args(["fit", "--config", "configs/namesex_bigru.yaml", "--model.init_args.scheduler=onecycle"])
