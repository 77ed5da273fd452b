"""The command line end to end on a tiny official-format IMDB archive."""

import json
import sys
import time
from pathlib import Path

import pytest
import torch

from rnnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "imdb_lstm.yaml")
TINY = [
    "--model.init_args.embedding_dim",
    "16",
    "--model.init_args.rnn.hidden_size",
    "16",
    "--data.init_args.val_size",
    "20",
    "--data.init_args.batch_size",
    "16",
    "--data.init_args.max_length",
    "64",
    "--trainer.enable_progress_bar",
    "false",
    "--trainer.enable_model_summary",
    "false",
]


def run(*args):
    main(["--config", CONFIG, *args] if args[0] not in ("--help",) else list(args))


def fit(*extra):
    main(["fit", "--config", CONFIG, *TINY, *extra])


def test_fit_fast_dev_run_says_what_it_trains_and_no_third_party_tips(env, caplog):
    with caplog.at_level("INFO"):
        fit("--trainer.fast_dev_run", "true")
    assert "rnnlab fit: SequenceClassifier (" in caplog.text and "on IMDBDataModule (train " in caplog.text
    assert "GPU available" in caplog.text and "Tip" not in caplog.text  # Lightning's own lines, not its advert


def test_fit_then_test_then_predict_from_checkpoint_alone(env, tmp_path, monkeypatch, capsys):
    fit("--trainer.max_epochs", "2")
    ckpt = env / "runs" / "imdb_lstm" / "version_0" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file()
    assert (ckpt.parent.parent / "config.yaml").is_file(), "resolved config saved with the run"
    fit("--trainer.max_epochs", "1")  # a second run in the same place must not abort on the saved config
    assert (env / "runs" / "imdb_lstm" / "version_1" / "config.yaml").is_file()
    main(["test", "--config", CONFIG, *TINY, "--ckpt_path", str(ckpt)])
    # predict needs nothing but the checkpoint: no local data, no cache
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("RNNLAB_LOCAL_DATA")
    inputs = elsewhere / "reviews.txt"
    inputs.write_text("A wonderful, superb film. Loved it!\n\n   \nawful boring waste\nqqqq xxxx\n", encoding="utf-8")
    main(
        [
            "predict",
            "--config",
            CONFIG,
            *TINY,
            "--ckpt_path",
            str(ckpt),
            "--data.init_args.predict_file",
            str(inputs),
            "--prediction_writer.output",
            "out.jsonl",
        ]
    )
    rows = [json.loads(line) for line in (elsewhere / "out.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5]
    assert "empty" in rows[1]["error"] and "empty" in rows[2]["error"]
    for r in (rows[0], rows[3], rows[4]):
        assert r["label"] in ("neg", "pos") and r["top"].startswith(r["label"]) and 0.5 <= r["prob"] <= 1
    assert "unknown" in rows[4]["warning"]
    assert not (elsewhere / "data").exists() or not any((elsewhere / "data").rglob("*.pt"))
    # the same through --data.predict_texts, written as CSV
    main(
        [
            "predict",
            "--config",
            CONFIG,
            *TINY,
            "--ckpt_path",
            str(ckpt),
            "--data.init_args.predict_texts",
            '["great", ""]',
            "--prediction_writer.output",
            "out.csv",
        ]
    )
    lines = (elsewhere / "out.csv").read_text().splitlines()
    assert lines[0].startswith("line,input") and len(lines) == 3 and "empty" in lines[2]


def test_predict_without_input_is_a_clear_error(env, capsys):
    fit("--trainer.fast_dev_run", "true", "--trainer.default_root_dir", "fdr")
    ckpt = next(Path("runs").rglob("*.ckpt"), None)
    if ckpt is None:  # fast_dev_run writes no checkpoint: make one
        fit("--trainer.max_epochs", "1")
        ckpt = next(Path("runs").rglob("last.ckpt"))
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--config", CONFIG, *TINY, "--ckpt_path", str(ckpt)])
    assert exit_.value.code == 2
    assert "nothing to predict" in capsys.readouterr().err


def test_print_config_resolves_the_experiment(env, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", CONFIG, "--print_config"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert (
        "class_path: rnnlab.models.SequenceClassifier" in out and "class_path: rnnlab.data.imdb.IMDBDataModule" in out
    )
    assert "monitor: val/acc" in out


def test_a_typo_in_a_config_key_exits_nonzero_naming_the_key(env, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    hiden_size: 32\n")
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", CONFIG, "--config", str(bad)])
    assert exit_.value.code != 0
    assert "hiden_size" in capsys.readouterr().err


def test_a_bad_value_exits_nonzero_naming_the_choices(env, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", CONFIG, "--model.init_args.rnn.cell", "lstn"])
    assert exit_.value.code != 0
    err = capsys.readouterr().err
    assert "lstn" in err and "cell" in err


def test_missing_data_is_a_clear_error_not_a_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rnnlab.data.sources._download", _no_network)
    with pytest.raises(SystemExit) as exit_:
        fit("--trainer.fast_dev_run", "true")
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "aclImdb_v1.tar.gz" in err and "RNNLAB_LOCAL_DATA" in err


def _no_network(source, remote, target_dir):
    from rnnlab.errors import RnnlabError

    raise RnnlabError(
        f"could not download {remote.url} (no network in tests). Place the file at "
        f"{target_dir / remote.name} or under $RNNLAB_LOCAL_DATA/{source.name}/"
    )


@pytest.mark.slow
def test_bf16_mixed_fit_on_cpu(env):
    fit("--trainer.fast_dev_run", "2", "--trainer.precision", "bf16-mixed")


@pytest.mark.slow
def test_wandb_offline_run_writes_metrics(env, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    import wandb

    fit("--config", str(ROOT / "configs" / "logger" / "wandb.yaml"), "--trainer.max_epochs", "1")
    # A CLI process finishes its run and stops W&B's service process at exit; the test process lives on, so do both
    # here: wandb-core writes the run log in that service process, and only its shutdown guarantees the file is whole.
    wandb.finish()
    wandb.teardown()
    assert "logging offline" in capsys.readouterr().out
    runs = list((env / "runs" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_id = runs[0].name.rsplit("-", 1)[1]
    log = runs[0] / f"run-{run_id}.wandb"  # the offline run log `wandb sync` uploads
    deadline = time.monotonic() + 60
    while b"val/acc" not in (record := log.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.5)  # a loaded machine may still be writing it
    for metric in (b"val/acc", b"train/loss_epoch", b"train/tokens_per_s"):
        assert metric in record, f"{metric} logged"
    assert f"model-{run_id}".encode() in record, "best checkpoint logged as an artifact"
    assert b"best" in record and b"latest" in record, "with the aliases best and latest"
    checkpoints = list((env / "runs" / "imdb_lstm").glob("*/checkpoints/last.ckpt"))  # <experiment>/<run id>/
    assert len(checkpoints) == 1 and (checkpoints[0].parent.parent / "config.yaml").is_file()
    assert checkpoints[0].parent.parent.name == run_id


@pytest.mark.slow
def test_ddp_spawn_two_processes_on_cpu(env):
    fit(
        "--trainer.strategy",
        "ddp_spawn",
        "--trainer.devices",
        "2",
        "--trainer.accelerator",
        "cpu",
        "--trainer.max_epochs",
        "1",
    )
    assert (env / "runs" / "imdb_lstm" / "version_0" / "checkpoints" / "last.ckpt").is_file()


def test_console_script_is_the_same_cli():
    import shutil
    import subprocess

    exe = shutil.which("rnnlab") or str(Path(sys.executable).parent / "rnnlab")
    out = subprocess.run([exe, "fit", "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--data CONFIG | CLASS_PATH_OR_NAME | .INIT_ARG" in out.stdout


def test_handwritten_cells_train_through_the_cli_and_the_checkpoint_loads_into_torch_kernels(env):
    from rnnlab.models import SequenceClassifier

    config = str(ROOT / "configs" / "imdb_handwritten_lstm.yaml")
    main(["fit", "--config", config, *TINY, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "3"])
    ckpt = env / "runs" / "imdb_handwritten_lstm" / "version_0" / "checkpoints" / "last.ckpt"
    hand = SequenceClassifier.load_from_checkpoint(ckpt).eval()
    assert hand.hparams.impl == "handwritten" and hand.hparams.rnn["impl"] == "handwritten"
    fast = SequenceClassifier.load_from_checkpoint(ckpt, rnn={**hand.hparams.rnn, "impl": "torch"}).eval()
    assert fast.encoder.impl == "torch"
    tokens = torch.randint(2, 20, (3, 9))
    lengths = torch.tensor([9, 4, 1])
    torch.testing.assert_close(hand(tokens, lengths), fast(tokens, lengths), atol=1e-5, rtol=0)


@pytest.mark.slow
def test_wandb_sweep_file_drives_the_cli(env):
    """configs/sweeps/imdb_lstm.yaml: every swept parameter, at every listed value (and the range ends), is an
    override the CLI accepts -- what `wandb agent` runs, checked offline up to building the model and the data."""
    import yaml

    from rnnlab.cli import RnnlabCLI

    sweep = yaml.safe_load((ROOT / "configs" / "sweeps" / "imdb_lstm.yaml").read_text())
    assert sweep["program"] == "main.py" and sweep["metric"]["name"] == "val/acc"
    command = sweep["command"]
    assert command[command.index("--config") + 1] == "configs/imdb_lstm.yaml" and command[-1] == "${args}"
    settings = [[]]
    for key, spec in sweep["parameters"].items():
        values = spec.get("values") or [spec["min"], spec["max"]]
        settings.append([f"--{key}={v}" for v in values])
    for overrides in settings:
        for arg in overrides or [None]:
            args = ["--config", CONFIG, *TINY] + ([arg] if arg else [])
            cli = RnnlabCLI(args=args, run=False)
            key, _, value = (arg or "=").lstrip("-").partition("=")
            if key:
                section, _, name = key.partition(".init_args.")
                obj = cli.model if section == "model" else cli.datamodule
                if name == "optimizer.init_args.lr":  # the optimiser is built from this spec in fit
                    got = obj.optimizer_spec(obj.parameters()).defaults["lr"]
                else:  # (the rnn settings are kept flat in the hyperparameters)
                    got = obj.hparams[name.removeprefix("rnn.")] if section == "model" else getattr(obj, name)
                assert str(got) == value, (key, got, value)


def test_a_checkpoint_from_before_the_rnn_spec_rebuilds_its_recurrent_layers_from_the_flat_settings():
    from rnnlab.cli import rnn_from_flat

    classifier = {"cell": "gru", "impl": "torch", "hidden_size": 64, "num_layers": 2, "bidirectional": True}
    assert rnn_from_flat({**classifier, "pooling": "max"}) == classifier
    seq2seq = {"cell": "gru", "hidden_size": 32, "bidirectional": True, "encoder_layers": 2, "decoder_layers": 1}
    assert rnn_from_flat(seq2seq) == {"cell": "gru", "hidden_size": 32, "bidirectional": True, "num_layers": 2}
    captioner = {"cell": "lstm", "hidden_size": 16, "decoder_layers": 3}
    assert rnn_from_flat(captioner) == {"cell": "lstm", "hidden_size": 16, "num_layers": 3}
