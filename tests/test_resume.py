"""Fault tolerance: a fit killed with SIGKILL (or stopped by SIGTERM) mid-epoch and resumed with ``--ckpt_path last``
ends with exactly the weights and metrics of an uninterrupted run; nothing of the interrupted run is overwritten."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow  # every test here runs fits in other processes

ROOT = Path(__file__).resolve().parents[1]
CONFIG = str(ROOT / "configs" / "imdb_lstm.yaml")
ARGS = [
    "--model.init_args.embedding_dim=16",
    "--model.init_args.rnn.hidden_size=16",
    "--data.init_args.val_size=20",
    "--data.init_args.batch_size=8",
    "--data.init_args.max_length=64",
    "--trainer.max_epochs=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
    "--last_checkpoint.every_n_train_steps=3",
    "--early_stopping.patience=5",
]
STEPS_PER_EPOCH = 8  # 60 training reviews of the fixture in batches of 8

KILLER = '''
import os, signal
from lightning.pytorch.callbacks import Callback

class SignalAt(Callback):
    """Sends a signal to this very process when a training step ends (after that step's checkpoints)."""
    def __init__(self, step: int, sig: str = "SIGKILL"):
        self.step, self.sig = step, sig
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.sig))
'''


def fit(cwd: Path, *extra: str, check: bool = True, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    cwd.mkdir(exist_ok=True)
    (cwd / "killer.py").write_text(KILLER)
    env = {**os.environ, "PYTHONPATH": str(cwd), **(extra_env or {})}
    cmd = [sys.executable, str(ROOT / "main.py"), "fit", "--config", CONFIG, *ARGS, *extra]
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    if check and out.returncode != 0:
        raise AssertionError(f"fit failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out


def final_state(run: Path) -> tuple[dict, list[dict]]:
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    val = [{k: r[k] for k in ("epoch", "step", "val/acc", "val/loss")} for r in rows if r.get("val/acc")]
    return ckpt, val


def assert_same_training(a: dict, b: dict) -> None:
    assert a["global_step"] == b["global_step"] == 2 * STEPS_PER_EPOCH
    for key, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][key]), f"{key} differs after resuming"
    for sa, sb in zip(a["optimizer_states"][0]["state"].values(), b["optimizer_states"][0]["state"].values()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])


@pytest.fixture(scope="module")
def uninterrupted(local_data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("uninterrupted")
    old = os.environ.get("RNNLAB_LOCAL_DATA")
    os.environ["RNNLAB_LOCAL_DATA"] = str(local_data)
    try:
        fit(cwd)
    finally:
        if old is None:
            os.environ.pop("RNNLAB_LOCAL_DATA")
        else:
            os.environ["RNNLAB_LOCAL_DATA"] = old
    return final_state(cwd / "runs" / "imdb_lstm" / "version_0")


def test_sigkill_mid_epoch_then_resume_matches_an_uninterrupted_run(env, uninterrupted):
    killed = fit(env, "--trainer.callbacks+=killer.SignalAt", "--trainer.callbacks.step=11", check=False)
    assert killed.returncode == -signal.SIGKILL
    first = env / "runs" / "imdb_lstm" / "version_0"
    saved = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 9 and saved["global_step"] % STEPS_PER_EPOCH != 0  # mid-epoch, after step 9
    before = (first / "checkpoints" / "last.ckpt").read_bytes()
    resumed = fit(env, "--ckpt_path", "last")
    assert "resuming from" in resumed.stderr + resumed.stdout
    assert (first / "checkpoints" / "last.ckpt").read_bytes() == before, "the interrupted run's checkpoint is kept"
    ckpt, val = final_state(env / "runs" / "imdb_lstm" / "version_1")
    assert_same_training(ckpt, uninterrupted[0])
    assert val[-1] == uninterrupted[1][-1]  # the final validation metrics, to the last digit


def test_sigterm_saves_last_checkpoint_and_resume_matches(env, uninterrupted):
    stopped = fit(
        env,
        "--trainer.callbacks+=killer.SignalAt",
        "--trainer.callbacks.step=5",
        "--trainer.callbacks.sig=SIGTERM",
        "--last_checkpoint.every_n_train_steps=0",
        check=False,
    )
    saved = torch.load(env / "runs" / "imdb_lstm" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 5, "saved on SIGTERM, after the batch in flight"
    assert "SIGTERM: saved" in stopped.stderr + stopped.stdout
    fit(env, "--ckpt_path", "last")
    ckpt, val = final_state(env / "runs" / "imdb_lstm" / "version_1")
    assert_same_training(ckpt, uninterrupted[0])
    assert val[-1] == uninterrupted[1][-1]


def test_ckpt_path_last_without_a_checkpoint_starts_fresh(env):
    out = fit(env, "--ckpt_path", "last", "--trainer.max_epochs=1")
    assert "no last.ckpt under" in out.stderr + out.stdout
    assert (env / "runs" / "imdb_lstm" / "version_0" / "checkpoints" / "last.ckpt").is_file()


SCONTROL = '#!/bin/sh\necho "$@" >> "$(dirname "$0")/scontrol.log"\n'


def test_slurm_requeue_signal_saves_requeues_and_the_requeued_job_resumes_from_that_checkpoint(env, uninterrupted):
    """scripts/slurm/train.sbatch asks SLURM for SIGUSR1 before the time limit: the fit stops after the batch in
    flight, writes last.ckpt, and runs ``scontrol requeue <job>``; the restarted job's ``--ckpt_path last`` continues
    from that checkpoint and ends as an uninterrupted run does."""
    bin_dir = env / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(SCONTROL)
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {"SLURM_JOB_ID": "4242", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    stopped = fit(
        env,
        "--trainer.callbacks+=killer.SignalAt",
        "--trainer.callbacks.step=6",
        "--trainer.callbacks.sig=SIGUSR1",
        "--last_checkpoint.every_n_train_steps=0",
        check=False,
        extra_env=slurm,
    )
    printed = stopped.stderr + stopped.stdout
    assert "SIGUSR1: saved" in printed and "requeued SLURM job 4242" in printed
    assert (bin_dir / "scontrol.log").read_text().split() == ["requeue", "4242"]
    saved = torch.load(env / "runs" / "imdb_lstm" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 6, "saved at the signal, after the batch in flight"
    assert not list(env.rglob("hpc_ckpt_*.ckpt")), "Lightning's own SLURM handler did not run"
    resumed = fit(env, "--ckpt_path", "last", extra_env=slurm)
    assert "version_0/checkpoints/last.ckpt" in resumed.stderr + resumed.stdout
    ckpt, val = final_state(env / "runs" / "imdb_lstm" / "version_1")
    assert_same_training(ckpt, uninterrupted[0])
    assert val[-1] == uninterrupted[1][-1]


def test_wandb_run_resumes_from_its_own_checkpoints_and_continues_the_same_run(env):
    """With the W&B logger preset, checkpoints go under runs/<experiment>/<run id>/ and ``--ckpt_path last`` finds
    them; the resumed fit continues the same W&B run (offline here: the same run id)."""
    wandb_preset = ["--config", str(ROOT / "configs" / "logger" / "wandb.yaml")]
    env_offline = {"WANDB_MODE": "offline", "WANDB_API_KEY": ""}
    fit(
        env,
        *wandb_preset,
        "--trainer.callbacks+=killer.SignalAt",
        "--trainer.callbacks.step=5",
        "--trainer.callbacks.sig=SIGTERM",
        extra_env=env_offline,
        check=False,
    )
    first = list((env / "runs" / "imdb_lstm").glob("*/checkpoints/last.ckpt"))
    assert len(first) == 1
    run_id = first[0].parent.parent.name
    saved = torch.load(first[0], weights_only=True)
    assert saved["rnnlab_logger"]["version"] == run_id and saved["global_step"] == 5
    resumed = fit(env, *wandb_preset, "--ckpt_path", "last", extra_env=env_offline)
    out = resumed.stderr + resumed.stdout
    assert f"resuming from runs/imdb_lstm/{run_id}/checkpoints/last.ckpt" in out
    assert f"continuing run {run_id}" in out
    after = torch.load(first[0], weights_only=True)
    assert after["global_step"] == 2 * STEPS_PER_EPOCH, "trained on from step 5 to the end"
    offline_runs = sorted((env / "runs" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 2 and {p.name.rsplit("-", 1)[1] for p in offline_runs} == {run_id}
