"""Every experiment config x every preset: each pair parses; every experiment trains one step on the tests'
official-format fixtures under the ``cpu`` and ``bf16`` presets and under 2-process DDP (gloo), and predicts from
its checkpoint. The lists are read from ``configs/``: a new config or preset is covered without editing this file.

The GPU presets (``gpu``, ``ddp``, ``multinode``, ``fp16``) cannot run here: they are checked at parse level, and
``ddp.yaml`` runs with ``--trainer.accelerator=cpu --trainer.devices=2`` (gloo)."""

from __future__ import annotations

import inspect
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rnnlab.cli import _import, main

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))
PRESETS = sorted(
    str(p.relative_to(ROOT / "configs").with_suffix(""))
    for p in [*(ROOT / "configs" / "trainer").glob("*.yaml"), *(ROOT / "configs" / "logger").glob("*.yaml")]
)
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
# split and batch sizes of the real datasets that the tiny fixtures cannot fill: given to every datamodule that
# takes them (a batch of 8 leaves every split at least one batch per DDP rank)
FIXTURE_SIZES = {"val_size": 20, "train_size": 100, "test_size": 20, "val_docs": 2, "batch_size": 8, "seq_len": 16}


def config_path(name: str) -> str:
    return str(ROOT / "configs" / f"{name}.yaml")


def _yaml(name: str) -> dict:
    return yaml.safe_load(Path(config_path(name)).read_text())


def experiment_args(name: str) -> list[str]:
    """``--config configs/<name>.yaml`` and the split sizes the fixtures can fill (for the args the datamodule has)."""
    data = _yaml(name)["data"]
    accepted = set()
    cls = _import(data["class_path"])
    for klass in cls.__mro__:  # **kwargs pass on to the base class
        if "__init__" in vars(klass):
            accepted |= set(inspect.signature(klass.__init__).parameters)
    sizes = [f"--data.init_args.{k}={v}" for k, v in FIXTURE_SIZES.items() if k in accepted]
    return ["--config", config_path(name), *QUIET, *sizes]


def run_name(name: str) -> str:
    """The experiment's run folder: ``<save_dir>/<logger name>`` (e.g. ``runs/imdb_lm_pretrain``)."""
    logger = _yaml(name)["trainer"]["logger"]["init_args"]
    return f"{logger['save_dir']}/{logger['name']}"


def producers() -> dict[str, str]:
    """``{what it writes: experiment}`` for experiments whose output others read: word2vec vectors (``export_path``)
    and every experiment's run folder (a language model's checkpoints, read as ``pretrained_encoder``)."""
    out = {}
    for name in EXPERIMENTS:
        out[run_name(name)] = name
        path = (_yaml(name)["model"].get("init_args") or {}).get("export_path")
        if path:
            out[path] = name
    return out


def reads(name: str) -> str | None:
    """The file or run folder that this experiment reads from another one (None if none)."""
    init = _yaml(name)["model"].get("init_args") or {}
    return init.get("pretrained_embeddings") or init.get("pretrained_encoder")


def needs(name: str) -> str | None:
    """The experiment whose output this one reads (None if none)."""
    path = reads(name)
    return producers().get(path) if path else None


def in_dependency_order(names: list[str]) -> list[str]:
    return sorted(names, key=lambda n: (needs(n) is not None, n))


def provide_inputs(name: str, cwd: Path) -> None:
    """Run the experiment whose output ``name`` reads (one step, and a checkpoint), in ``cwd``, if it is not there
    yet."""
    producer, path = needs(name), reads(name)
    if producer and not (cwd / path).is_file() and not list((cwd / path).glob("*/checkpoints/last.ckpt")):
        one_step = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"]
        main(["fit", *experiment_args(producer), *one_step])


def test_the_matrix_is_not_empty():
    assert len(EXPERIMENTS) >= 30 and {"trainer/cpu", "trainer/bf16", "trainer/ddp", "logger/wandb"} <= set(PRESETS)
    assert not (ROOT / "configs" / "trainer" / "refit.yaml").exists(), "refit is a recipe (configs/recipes/)"


@pytest.mark.parametrize("preset", PRESETS)
def test_every_experiment_parses_with_every_preset(env, preset, cli_parser, capsys):
    """Parse level for all pairs: every key the preset sets must be accepted, and it must reach the config."""
    values = yaml.safe_load((ROOT / "configs" / f"{preset}.yaml").read_text())
    failures = {}
    for name in EXPERIMENTS:
        try:
            cfg = cli_parser.parse_args(
                ["fit", *experiment_args(name), "--config", str(ROOT / "configs" / f"{preset}.yaml")]
            ).fit
        except SystemExit:
            failures[name] = capsys.readouterr().err.strip()[-300:]
            continue
        for key, value in (values.get("trainer") or {}).items():
            if key != "logger" and cfg.trainer[key] != value:
                failures[name] = f"trainer.{key} = {cfg.trainer[key]!r}, preset says {value!r}"
        if "logger" in (values.get("trainer") or {}):
            assert cfg.trainer.logger.class_path == values["trainer"]["logger"]["class_path"]
    assert not failures, f"{len(failures)} experiments do not compose with {preset}: {failures}"


def test_the_parse_check_catches_an_option_a_model_does_not_take(env, cli_parser, tmp_path, capsys):
    bad = tmp_path / "bad_preset.yaml"
    bad.write_text("model:\n  init_args:\n    pooling: max\n")  # only the classifier has it
    with pytest.raises(SystemExit):
        cli_parser.parse_args(["fit", *experiment_args("multi30k_de_en_attn"), "--config", str(bad)])
    assert "pooling" in capsys.readouterr().err
    cli_parser.parse_args(["fit", *experiment_args("imdb_lstm"), "--config", str(bad)])


@pytest.mark.parametrize("preset", ["trainer/cpu", "trainer/bf16"])
@pytest.mark.parametrize("name", in_dependency_order(EXPERIMENTS))
def test_every_experiment_trains_a_step(request, name, preset):
    """Under ``cpu`` the data is downloaded (from a loopback server holding every dataset's official files as
    fixtures) and checked first; under ``bf16`` it comes from local copies."""
    env = request.getfixturevalue("downloading_env" if preset == "trainer/cpu" else "env")
    provide_inputs(name, env)
    main(
        [
            "fit",
            *experiment_args(name),
            "--config",
            str(ROOT / "configs" / f"{preset}.yaml"),
            "--trainer.fast_dev_run=true",
        ]
    )


DDP_DRIVER = ROOT / "tests" / "ddp_matrix.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_experiment_trains_a_step_under_two_process_ddp(env, local_data):
    """``configs/trainer/ddp.yaml`` on the CPU: one torchrun launch of 2 processes (gloo) runs a ``fast_dev_run`` of
    every experiment in turn; each rank reports each experiment's outcome."""
    report = env / "ddp_report"
    names = in_dependency_order(EXPERIMENTS)
    for name in names:  # a fast_dev_run writes no checkpoint: a language model that others read is made beforehand
        if (_yaml(name)["model"].get("init_args") or {}).get("pretrained_encoder"):
            provide_inputs(name, env)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        f"--master_port={_free_port()}",
        str(DDP_DRIVER),
        str(report),
        *names,
    ]
    environ = {
        **os.environ,
        "RNNLAB_LOCAL_DATA": str(local_data),
        "PYTHONPATH": str(ROOT / "tests"),
        "OMP_NUM_THREADS": "1",
    }
    out = subprocess.run(cmd, cwd=env, env=environ, capture_output=True, text=True, timeout=900)
    results = {}
    for rank in (0, 1):
        path = report.with_name(f"{report.name}-{rank}.jsonl")
        assert path.is_file(), f"rank {rank} wrote nothing:\n{out.stderr[-3000:]}"
        for line in path.read_text().splitlines():
            row = json.loads(line)
            results[(row["name"], rank)] = row["status"]
    failed = {k: v for k, v in results.items() if v != "ok"}
    assert not failed, failed
    assert {n for n, _ in results} == set(names), (
        f"not run: {set(names) - {n for n, _ in results}}\n{out.stderr[-3000:]}"
    )
    assert out.returncode == 0, out.stderr[-3000:]


@pytest.mark.parametrize("name", in_dependency_order(EXPERIMENTS))
def test_every_experiment_predicts_from_its_checkpoint(env, name):
    """One training step with a checkpoint, then ``predict`` from it with the datamodule's own examples and a bad
    line: a row per input line, an error on the bad line only, and no new run folder for the predict call."""
    provide_inputs(name, env)
    args = experiment_args(name)
    main(["fit", *args, "--trainer.max_epochs=1", "--trainer.limit_train_batches=1", "--trainer.limit_val_batches=1"])
    ckpts = sorted(env.glob(f"{run_name(name)}/version_*/checkpoints/last.ckpt"))
    assert len(ckpts) == 1, ckpts
    runs_before = sorted(p for p in env.glob("runs/**/*") if p.is_dir())
    data = _yaml(name)["data"]
    dm = _import(data["class_path"])(**(data.get("init_args") or {}))
    examples = list(dm.predict_examples)
    assert examples, f"{type(dm).__name__}.predict_examples is empty"
    inputs = env / "inputs.txt"
    inputs.write_text("\n".join([*examples, dm.predict_bad_example]) + "\n", encoding="utf-8")
    main(
        [
            "predict",
            *args,
            "--ckpt_path",
            str(ckpts[0]),
            "--data.init_args.predict_file",
            str(inputs),
            "--prediction_writer.output",
            "out.jsonl",
        ]
    )
    rows = [json.loads(line) for line in (env / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["line"] for r in rows] == list(range(1, len(examples) + 2))
    assert all("error" not in r for r in rows[:-1]), rows
    assert "error" in rows[-1] and rows[-1]["error"], rows[-1]
    assert sorted(p for p in env.glob("runs/**/*") if p.is_dir()) == runs_before, "predict made a run folder"
