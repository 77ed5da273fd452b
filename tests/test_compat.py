"""The Lightning private API that rnnlab.compat wraps behaves as relied on (an upgrade that changes it fails here)."""

from __future__ import annotations

import inspect

import lightning as L
import pytest
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import SIGTERMException

from rnnlab import compat
from rnnlab.nn.recurrent import RecurrentSpec


def trainer(tmp_path, callbacks, **kw):
    return L.Trainer(
        default_root_dir=tmp_path,
        max_epochs=1,
        limit_train_batches=6,
        limit_val_batches=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
        **kw,
    )


def test_request_stop_ends_fit_after_the_batch_in_flight(tmp_path):
    seen = []

    class Stop(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            seen.append((batch_idx, compat.batch_in_epoch(trainer)))
            if batch_idx == 2:
                compat.request_stop(trainer)

    t = trainer(tmp_path, [Stop()], enable_checkpointing=False)
    with pytest.raises(SIGTERMException):
        t.fit(BoringModel())
    assert seen == [(0, 0), (1, 1), (2, 2)]  # batch_in_epoch is the batch in flight; nothing ran after the request
    assert t.global_step == 3


def test_save_last_writes_last_ckpt_now_and_mark_saved_records_it(tmp_path):
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=0, save_last=True, every_n_epochs=0)
    written = []

    class SaveAtTwo(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if batch_idx == 2:
                compat.save_last(ckpt, trainer)
                written.append(ckpt.last_model_path)

    t = trainer(tmp_path, [ckpt, SaveAtTwo()])
    t.fit(BoringModel())
    assert written and written[0].endswith("last.ckpt") and (tmp_path / "ckpt" / "last.ckpt").is_file()
    compat.mark_saved(ckpt, t, "x.ckpt")
    assert ckpt._last_global_step_saved == t.global_step and ckpt._last_checkpoint_saved == "x.ckpt"


def test_lightning_cli_still_calls_parse_ckpt_path_before_instantiating():
    source = inspect.getsource(LightningCLI.__init__)
    assert "self._parse_ckpt_path()" in source
    assert source.index("self._parse_ckpt_path()") < source.index("self.instantiate_classes()")


def test_checkpoint_hparams_hook_falls_back_to_lightning():
    calls = []

    class Base:
        def _parse_ckpt_path(self):
            calls.append("lightning")

    class Mine(compat.CheckpointHparamsHook, Base):
        handled = False

        def apply_checkpoint_hparams(self):
            calls.append("rnnlab")
            return self.handled

    Mine()._parse_ckpt_path()
    handled = Mine()
    handled.handled = True
    handled._parse_ckpt_path()
    assert calls == ["rnnlab", "lightning", "rnnlab"]


def test_own_hyperparameters_shields_a_module_built_inside_another_from_the_clis_hyperparameters():
    from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

    from rnnlab.compat import own_hyperparameters
    from rnnlab.models import LanguageModel

    with _given_hyperparameters_context({"vocab_size": 99, "something_else": 1}, "jsonargparse"):
        leaked = LanguageModel(vocab_size=7, rnn=RecurrentSpec(hidden_size=8, num_layers=1))
        with own_hyperparameters():
            own = LanguageModel(vocab_size=7, rnn=RecurrentSpec(hidden_size=8, num_layers=1))
    assert "something_else" in leaked.hparams  # what Lightning does, and why the shield is needed
    assert own.hparams.vocab_size == 7 and "something_else" not in own.hparams and own.hparams.word_dropout == 0.0
