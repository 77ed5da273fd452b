"""Bad input, case by case: each gets a specific message that names the fix, a non-zero exit (2), and nothing
half-written. docs/reliability.md's "When things go wrong" table lists the same cases.

| case | what happens |
|---|---|
| dataset missing, no network | `error:` names the file, the URL and `$RNNLAB_LOCAL_DATA/<dataset>/` |
| corrupt or truncated archive | `error: ... is not a readable tar.gz archive; replace it with <URL>` |
| checksum mismatch on a download | `error: download of <URL> is corrupt or changed upstream ...`; nothing kept |
| a download with no pinned checksum | refused: place a copy you checked under `$RNNLAB_LOCAL_DATA` |
| local copy with missing files | `error: ... no reviews under aclImdb/test/neg/ ...` (the structural check) |
| archive member escaping its folder, or a link | `error: refusing archive member '../x' ...` (nothing is extracted anyway) |
| config key typo / wrong type / bad choice | `error: model (<class>): Option 'hiden_size' is not accepted`, first line |
| a checkpoint of another task given to predict | `error: checkpoint ... holds no <DataModule> state ...: use the matching config` |
| empty or whitespace-only line to predict | that line's row has `error: empty input`; the other lines are predicted |
| no readable input at all | `error: none of the 2 inputs can be predicted (line 1: empty input ...)` |
| unknown words/characters, control characters | predicted, with a `warning` naming the unknown units |
| input longer than the training length | truncated to `max_length`, with a `warning` |
| predict file with invalid UTF-8 | `error: ... not UTF-8: byte 0xff at line 2, column 5`; no output file written |
| NaN/inf training loss | `error: the training loss is nan at step N ...`; stopped before the update, checkpoints kept |
| disk full while saving a checkpoint | `error: no space left ...`; the previous `last.ckpt` intact (write to a temp file, rename) |
"""

from __future__ import annotations

import errno
import io
import json
import sys
import tarfile
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from conftest import write_imdb_archive
from rnnlab.cli import main

ROOT = Path(__file__).resolve().parents[1]
IMDB = str(ROOT / "configs" / "imdb_lstm.yaml")
TINY = [
    "--model.init_args.embedding_dim=16",
    "--model.init_args.rnn.hidden_size=16",
    "--data.init_args.val_size=20",
    "--data.init_args.batch_size=16",
    "--data.init_args.max_length=64",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def fails(capsys, *args) -> str:
    """Run the CLI, expect exit code 2, return stderr."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(list(args))
    assert exit_.value.code == 2
    return capsys.readouterr().err


def no_network(source, remote, target_dir):
    raise AssertionError("no download may be attempted in this test")


# ------------------------------------------------------------------------------------------------ data
def test_missing_dataset_without_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pooch.retrieve", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("no route to host")))
    err = fails(capsys, "fit", "--config", IMDB, *TINY)
    assert "could not download https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz" in err
    assert "$RNNLAB_LOCAL_DATA/imdb/aclImdb_v1.tar.gz" in err and "Traceback" not in err


def test_truncated_archive(tmp_path, monkeypatch, capsys):
    good = write_imdb_archive(tmp_path / "src" / "aclImdb_v1.tar.gz").read_bytes()
    local = tmp_path / "local" / "imdb"
    local.mkdir(parents=True)
    (local / "aclImdb_v1.tar.gz").write_bytes(good[: len(good) // 2])
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "local"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rnnlab.data.sources._download", no_network)
    err = fails(capsys, "fit", "--config", IMDB, *TINY)
    assert "is not a readable tar.gz archive" in err and "replace it with https://ai.stanford.edu" in err
    assert not list((tmp_path / "data").rglob("*.pt")), "no cache written from a broken archive"


def test_checksum_mismatch_on_download_keeps_nothing(tmp_path, monkeypatch, capsys):
    def corrupt(url, known_hash, fname, path, **kw):  # as pooch: delete the file, raise ValueError
        raise ValueError(
            f"SHA256 hash of downloaded file ({fname}) does not match the known hash: expected {known_hash}, got 0000"
        )

    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pooch.retrieve", corrupt)
    err = fails(capsys, "fit", "--config", IMDB, *TINY)
    assert "download of https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz is corrupt" in err
    assert not (tmp_path / "data" / "imdb" / "aclImdb_v1.tar.gz").exists()


def test_download_without_a_pinned_checksum_is_refused_with_pinned_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RNNLAB_PINNED_ONLY", "1")
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("pooch.retrieve", lambda *a, **k: pytest.fail("an unverifiable file was downloaded"))
    err = fails(
        capsys,
        "fit",
        "--config",
        str(ROOT / "configs" / "conll2000_pos_bilstm.yaml"),
        "--data.init_args.edition=official",
        "--trainer.fast_dev_run=true",
    )
    assert "has no published checksum" in err and "$RNNLAB_LOCAL_DATA/conll2000/train.txt.gz" in err
    assert "RNNLAB_PINNED_ONLY is set" in err


def test_local_copy_with_missing_files(tmp_path, monkeypatch, capsys):
    archive = write_imdb_archive(tmp_path / "src.tar.gz")
    local = tmp_path / "local" / "imdb"
    local.mkdir(parents=True)
    with tarfile.open(archive) as src, tarfile.open(local / "aclImdb_v1.tar.gz", "w:gz") as dst:
        for member in src:
            if not member.name.startswith("aclImdb/test/neg/"):
                dst.addfile(member, src.extractfile(member))
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "local"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rnnlab.data.sources._download", no_network)
    err = fails(capsys, "fit", "--config", IMDB, *TINY)
    assert "no reviews under aclImdb/test/neg/" in err and "Get the archive from" in err


@pytest.mark.parametrize(
    "member,kind",
    [
        ("../../outside.txt", "a path outside the archive"),
        ("/etc/passwd_copy", "a path outside the archive"),
        ("aclImdb/train/pos/999_9.txt", "a link"),
    ],
)
def test_crafted_archive_members_are_refused(tmp_path, monkeypatch, capsys, member, kind):
    local = tmp_path / "local" / "imdb"
    archive = write_imdb_archive(local / "aclImdb_v1.tar.gz")
    raw = io.BytesIO()
    with tarfile.open(archive) as src, tarfile.open(fileobj=raw, mode="w:gz") as dst:
        for m in src:
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
        evil = tarfile.TarInfo(member)
        if kind == "a link":
            evil.type, evil.linkname = tarfile.SYMTYPE, "/etc/passwd"
            dst.addfile(evil)
        else:
            evil.size = 4
            dst.addfile(evil, io.BytesIO(b"evil"))
    archive.write_bytes(raw.getvalue())
    monkeypatch.setenv("RNNLAB_LOCAL_DATA", str(tmp_path / "local"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("rnnlab.data.sources._download", no_network)
    err = fails(capsys, "fit", "--config", IMDB, *TINY)
    assert f"refusing archive member {member!r} ({kind}" in err
    assert not (tmp_path / "outside.txt").exists() and not (tmp_path.parent / "outside.txt").exists()


# ---------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "arg,expected",
    [
        (
            "--model.init_args.hiden_size=3",
            "error: model (rnnlab.models.SequenceClassifier): Option 'hiden_size' is not accepted",
        ),
        (
            "--data.init_args.batch_size=abc",
            "error: data (rnnlab.data.imdb.IMDBDataModule): Parser key \"batch_size\": Expected a <class 'int'>. Got value: abc",
        ),
        (
            "--model.init_args.rnn.cell=lstn",
            "Parser key \"rnn.cell\": Expected a typing.Literal['lstm', 'gru', 'rnn']. Got value: lstn",
        ),
    ],
)
def test_config_mistakes_are_the_first_line(env, capsys, arg, expected):
    err = fails(capsys, "fit", "--config", IMDB, arg)
    assert expected in err.splitlines()[0] and "usage:" not in err


@pytest.mark.parametrize(
    "config,arg,expected",
    [
        (
            "jsb_chorales_gru_conv.yaml",
            "--model.init_args.conv_kernel=96",
            "error: conv_kernel must be 0 (off) or an odd",
        ),
        (
            "macro_gru_local_level.yaml",
            "--model.init_args.forecast=iterated",
            "error: residual anchors need mode 'rnn'",
        ),
    ],
)
def test_invalid_model_arguments_are_one_clear_line(env, capsys, config, arg, expected):
    """An RnnlabError raised in a model's __init__ reaches the user as its own message, not jsonargparse's traceback."""
    err = fails(capsys, "fit", "--config", str(ROOT / "configs" / config), arg)
    assert err.splitlines()[0].startswith(expected) and "Traceback" not in err


def test_typo_in_a_config_file(env, capsys):
    (env / "bad.yaml").write_text("model:\n  init_args:\n    hiden_size: 32\n")
    err = fails(capsys, "fit", "--config", IMDB, "--config", "bad.yaml")
    assert "Option 'hiden_size' is not accepted" in err.splitlines()[0]


# --------------------------------------------------------------------------------------------- predict
@pytest.fixture(scope="module")
def imdb_checkpoint(local_data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("imdb_ckpt")
    mp = pytest.MonkeyPatch()
    mp.setenv("RNNLAB_LOCAL_DATA", str(local_data))
    mp.chdir(cwd)
    try:
        main(["fit", "--config", IMDB, *TINY, "--trainer.max_epochs=1", "--data.init_args.max_length=12"])
    finally:
        mp.undo()
    return cwd / "runs" / "imdb_lstm" / "version_0" / "checkpoints" / "last.ckpt"


def test_checkpoint_of_another_task(env, capsys, imdb_checkpoint):
    err = fails(
        capsys,
        "predict",
        "--config",
        str(ROOT / "configs" / "namesex_bigru.yaml"),
        "--ckpt_path",
        str(imdb_checkpoint),
        "--data.init_args.predict_texts=[文偉]",
    )
    assert "holds no" in err and "IMDBDataModule" in err and "use the matching config" in err


def test_odd_lines_to_predict(env, imdb_checkpoint):
    long = " ".join(["great"] * 500)
    lines = ["wonderful film", "", "   \t ", "zzqx qqvv", "bell\x07 \x00 ring\x1b[31m", long]
    (env / "in.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    main(
        [
            "predict",
            "--config",
            IMDB,
            *TINY,
            "--ckpt_path",
            str(imdb_checkpoint),
            "--data.init_args.predict_file=in.txt",
            "--prediction_writer.output=out.jsonl",
        ]
    )
    rows = [json.loads(line) for line in (env / "out.jsonl").read_text().splitlines()]
    assert len(rows) == len(lines)
    assert rows[0]["label"] in ("neg", "pos") and "warning" not in rows[0]
    assert "empty" in rows[1]["error"] and "empty" in rows[2]["error"]
    assert rows[3]["label"] and "every word is unknown" in rows[3]["warning"]
    assert rows[4]["label"] and "unknown" in rows[4]["warning"]
    assert rows[5]["label"] and "500 words, truncated to 64" in rows[5]["warning"]


def test_predict_file_with_invalid_utf8(env, capsys, imdb_checkpoint):
    (env / "in.txt").write_bytes(b"good film\nbad \xff\xfe film\n")
    err = fails(
        capsys,
        "predict",
        "--config",
        IMDB,
        *TINY,
        "--ckpt_path",
        str(imdb_checkpoint),
        "--data.init_args.predict_file=in.txt",
        "--prediction_writer.output=out.jsonl",
    )
    assert "not UTF-8: byte 0xff at line 2, column 5" in err and "iconv" in err
    assert not (env / "out.jsonl").exists()


# -------------------------------------------------------------------------------------------- training
class PoisonAt(Callback):
    """Sets a weight to NaN after training step ``step`` (as an exploding gradient would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, *args):
        if trainer.global_step == self.step:
            with torch.no_grad():
                pl_module.head.bias.fill_(float("nan"))


@pytest.mark.slow
def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(env, capsys):
    err = fails(
        capsys,
        "fit",
        "--config",
        IMDB,
        *TINY,
        "--data.init_args.batch_size=8",
        "--trainer.max_epochs=3",
        "--last_checkpoint.every_n_train_steps=2",
        "--trainer.callbacks+=test_bad_input.PoisonAt",
        "--trainer.callbacks.step=3",
    )
    assert "the training loss is nan at step 3" in err and "--ckpt_path last" in err
    ckpt = torch.load(env / "runs" / "imdb_lstm" / "version_0" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2
    assert all(torch.isfinite(t).all() for t in ckpt["state_dict"].values() if t.is_floating_point())


class DiskFullAfter(Callback):
    """From step ``step`` on, every file write fails with ENOSPC (as on a full disk)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == self.step:
            from fsspec.implementations.local import LocalFileOpener

            def full(self, data):
                raise OSError(errno.ENOSPC, "No space left on device")

            LocalFileOpener.write = full


@pytest.mark.slow
def test_disk_full_while_saving_keeps_the_previous_checkpoint(env, capsys, monkeypatch):
    from fsspec.implementations.local import LocalFileOpener

    monkeypatch.setattr(LocalFileOpener, "write", LocalFileOpener.write)  # restored after the test
    err = fails(
        capsys,
        "fit",
        "--config",
        IMDB,
        *TINY,
        "--data.init_args.batch_size=8",
        "--trainer.max_epochs=3",
        "--last_checkpoint.every_n_train_steps=2",
        "--trainer.callbacks+=test_bad_input.DiskFullAfter",
        "--trainer.callbacks.step=3",
    )
    assert "no space left on the device" in err and "the previous one is intact" in err
    folder = env / "runs" / "imdb_lstm" / "version_0" / "checkpoints"
    ckpt = torch.load(folder / "last.ckpt", weights_only=True)  # complete and loadable
    assert ckpt["global_step"] == 2
    assert sorted(p.name for p in folder.iterdir()) == ["last.ckpt"], "no half-written file left behind"


def test_predict_with_nothing_readable(env, capsys, imdb_checkpoint):
    err = fails(
        capsys,
        "predict",
        "--config",
        IMDB,
        *TINY,
        "--ckpt_path",
        str(imdb_checkpoint),
        "--data.init_args.predict_texts=['', '   ']",
        "--prediction_writer.output=out.jsonl",
    )
    assert "none of the 2 inputs can be predicted (line 1: empty input" in err


def test_an_error_raised_in_a_loader_worker_is_reported_by_its_message_alone():
    from rnnlab.cli import _worker_message

    wrapped = (
        "Caught RnnlabError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1\nrnnlab.errors.RnnlabError: lower data.batch_size\n'
    )
    assert _worker_message(wrapped) == "lower data.batch_size"
    assert _worker_message("plain message") == "plain message"


def test_no_code_loads_a_file_in_a_way_that_can_run_code():
    """torch.load with weights_only=True and no pickle.load(s) anywhere in the package, benchmarks or scripts (the
    music loader's pickles go through a plain-data unpickler)."""
    import re

    offenders = []
    for folder in ("src", "benchmarks", "scripts", "main.py"):
        paths = [ROOT / folder] if folder.endswith(".py") else (ROOT / folder).rglob("*.py")
        for path in paths:
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
                if re.search(r"weights_only\s*=\s*False|pickle\.loads?\(|torch\.load\((?!.*weights_only=True)", line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, offenders


def _midi(tmp):
    from rnnlab.pianoroll import roll_to_midi

    roll_to_midi(torch.zeros(2, 88), tmp / "x.mid")


def _opencc(tmp):
    from rnnlab.data.names import _Converter

    _Converter("simplified")


def _macrodata(tmp):
    from rnnlab.errors import require

    require("statsmodels.datasets.macrodata", "timeseries", "the macrodata series")


@pytest.mark.parametrize(
    "module, extra, call",
    [("mido", "music", _midi), ("opencc", "zh", _opencc), ("statsmodels", "timeseries", _macrodata)],
)
def test_a_missing_optional_extra_names_the_pip_install_that_brings_it(monkeypatch, tmp_path, module, extra, call):
    from rnnlab.errors import RnnlabError

    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # as if the package were not installed
    with pytest.raises(RnnlabError, match=rf"pip install 'rnnlab\[{extra}\]'"):
        call(tmp_path)
