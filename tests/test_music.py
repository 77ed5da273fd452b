"""Piano rolls: loaders in both formats, the NLL per step, MIDI round trip, a real learning test, generation."""

import math
import os
import pickle
from pathlib import Path

import pytest
import torch

from conftest import CHORDS, jsb_pieces, predict_rows
from rnnlab.cli import main
from rnnlab.data.music import KEYS, LOW, PianoRollDataModule, from_roll, to_roll
from rnnlab.errors import RnnlabError
from rnnlab.models.music import PianoRollModel, step_nll
from rnnlab.nn.recurrent import RecurrentSpec
from rnnlab.pianoroll import midi_to_roll, roll_stats, roll_to_midi

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


def test_roll_round_trip_and_bad_pitches_are_named():
    steps = [[60, 64, 67], [], [21, 108]]
    roll = to_roll(steps)
    assert roll.shape == (3, KEYS) and roll.sum() == 5 and from_roll(roll) == steps
    with pytest.raises(RnnlabError, match="piece 3, step 1: pitch 110"):
        to_roll([[60], [110]], "piece 3")
    with pytest.raises(RnnlabError, match="step 0: expected a list"):
        to_roll([60], "x")


def test_json_and_pickle_editions_load_the_same_pieces(env, tmp_path):
    json_dm = PianoRollDataModule()
    data = {"train": jsb_pieces(12, 0), "valid": jsb_pieces(4, 1), "test": jsb_pieces(4, 2)}
    path = tmp_path / "JSB Chorales.pickle"
    path.write_bytes(pickle.dumps(data))
    pickle_dm = PianoRollDataModule(pickle=str(path))
    a, b = json_dm.read(), pickle_dm.read()
    assert {k: len(v) for k, v in a.items()} == {"train": 12, "val": 4, "test": 4}
    assert all(torch.equal(x, y) for split in a for x, y in zip(a[split], b[split]))
    json_dm.setup("fit")
    tokens, target, _ = json_dm.datasets["train"][0]
    assert tokens[0].sum() == 0 and torch.equal(tokens[1:], target[:-1])  # step t reads steps < t


class _Hostile:
    def __reduce__(self):  # unpickling this would run a command
        return (os.system, ("touch hacked",))


def test_a_pickle_that_names_any_class_or_function_is_refused_and_runs_nothing(env, tmp_path):
    path = tmp_path / "evil.pickle"
    path.write_bytes(pickle.dumps({"train": [[[60]]], "valid": [], "test": [_Hostile()]}, protocol=2))
    with pytest.raises(RnnlabError, match="only plain lists, dicts and numbers") as err:
        PianoRollDataModule(pickle=str(path)).read()
    assert "posix.system" in str(err.value) or "os.system" in str(err.value)
    assert not (env / "hacked").exists()


def test_step_nll_equals_hand_computation():
    logits = torch.full((2, KEYS), -50.0)  # every key surely off ...
    logits[0, 60 - LOW] = 0.0  # ... except a fair coin on middle C at step 0
    logits[1, 64 - LOW] = math.log(3)  # and p = 3/4 for E at step 1
    target = torch.zeros(2, KEYS)
    target[0, 60 - LOW] = 1
    target[1, 64 - LOW] = 0  # E stays silent: -log(1/4)
    nll = step_nll(logits, target)
    assert torch.allclose(nll, torch.tensor([math.log(2), math.log(4)]), atol=1e-4)


def test_midi_round_trip_keeps_notes_and_timing(tmp_path):
    roll = to_roll([[60, 64], [60, 65], [], [67], [67], [48, 72]])
    path = roll_to_midi(roll, tmp_path / "x.mid")
    back = midi_to_roll(path)
    assert torch.equal(back, roll)
    stats = roll_stats([roll], primer_pitch_classes={0, 4, 7})
    assert (
        stats["notes_per_step"] == pytest.approx(8 / 6, abs=1e-3)
        and stats["pitch_min"] == 48
        and stats["pitch_max"] == 72
    )
    assert stats["in_key_share"] == pytest.approx(7 / 8)  # F (65) is out of the C-major triad


@pytest.mark.slow
def test_model_learns_a_repeating_progression():
    torch.manual_seed(0)
    piece = to_roll([CHORDS[i % 4] for i in range(24)])
    x = torch.cat([torch.zeros(1, KEYS), piece[:-1]]).unsqueeze(0)
    lengths = torch.tensor([24])
    model = PianoRollModel(dropout=0.0, input_dropout=0.0, rnn=RecurrentSpec(hidden_size=32))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(500):
        opt.zero_grad()
        loss = step_nll(model(x, lengths)[0], piece.unsqueeze(0))[:, 4:].mean()
        loss.backward()
        opt.step()
    assert float(loss) < 0.5, float(loss)  # from ~61 nats (88 fair coins) to near certainty
    model.eval()
    primer = piece[:4]
    continuation = model.generate(8, primer, temperature=0, seed=0)
    assert continuation.shape == (12, KEYS)
    assert from_roll(continuation[4:]) == [CHORDS[i % 4] for i in range(4, 12)]


def test_generation_length_seed_and_temperature():
    model = PianoRollModel(rnn=RecurrentSpec(hidden_size=16))
    a = model.generate(10, None, temperature=1.0, seed=3)
    b = model.generate(10, None, temperature=1.0, seed=3)
    assert a.shape == (10, KEYS) and torch.equal(a, b)
    assert model.generate(0, torch.zeros(5, KEYS)).shape == (5, KEYS)


@pytest.mark.parametrize("name", ["jsb_chorales_gru", "jsb_chorales_gru_conv"])
def test_jsb_config_fits_tests_and_writes_midi(env, name):
    config = str(ROOT / "configs" / f"{name}.yaml")
    main(
        [
            "fit",
            "--config",
            config,
            *QUIET,
            "--trainer.max_epochs",
            "2",
            "--model.init_args.rnn.hidden_size",
            "16",
            "--trainer.callbacks.init_args.every_n_epochs",
            "1",
        ]
    )
    run = env / "runs" / name / "version_0"
    assert (run / "samples" / "epoch1.mid").is_file() and (run / "samples" / "epoch1.png").is_file()
    ckpt = str(run / "checkpoints" / "last.ckpt")
    main(["test", "--config", config, *QUIET, "--ckpt_path", ckpt, "--model.init_args.rnn.hidden_size", "16"])
    rows = predict_rows(
        config,
        ckpt,
        '["scratch", "test:1", "test:99"]',
        *QUIET,
        "--model.init_args.rnn.hidden_size",
        "16",
        "--model.init_args.generate_steps",
        "12",
        "--data.init_args.output_dir",
        "out",
    )
    assert rows[0]["steps"] == 12 and Path(rows[0]["midi"]).is_file() and Path(rows[0]["png"]).is_file()
    assert rows[1]["steps"] == 8 + 12 and len(midi_to_roll(rows[1]["midi"])) <= 20
    assert "test: 0-3" in rows[2]["error"]


@pytest.mark.slow
def test_autoregressive_head_uses_only_lower_keys_and_learns_within_step_structure():
    torch.manual_seed(0)
    model = PianoRollModel(head="autoregressive", dropout=0.0, input_dropout=0.0, rnn=RecurrentSpec(hidden_size=8))
    with torch.no_grad():
        model.within.normal_()
    base = torch.randn(KEYS)
    notes = (torch.rand(KEYS) > 0.5).float()
    full = model.step_logits(base, notes)
    for k in (0, 10, 87):  # logit k changes with notes below k only
        changed = notes.clone()
        changed[k:] = 1 - changed[k:]
        assert torch.allclose(model.step_logits(base, changed)[k], full[k])
    # chords whose notes always come together: only the autoregressive head can say so within a step
    pieces = [to_roll([CHORDS[i % 2] if torch.rand(1) < 0.5 else CHORDS[2] for i in range(16)]) for _ in range(8)]
    nll = {}
    for head in ("independent", "autoregressive"):
        torch.manual_seed(0)
        m = PianoRollModel(head=head, dropout=0.0, input_dropout=0.0, rnn=RecurrentSpec(hidden_size=16))
        opt = torch.optim.Adam(m.parameters(), lr=2e-2)
        x = torch.stack([torch.cat([torch.zeros(1, KEYS), p[:-1]]) for p in pieces])
        y = torch.stack(pieces)
        for _ in range(200):
            opt.zero_grad()
            loss = step_nll(m.step_logits(m(x, torch.full((8,), 16))[0], y), y).mean()
            loss.backward()
            opt.step()
        nll[head] = float(loss)
    assert nll["autoregressive"] < nll["independent"] - 1.0, nll
    sample = m.generate(4, None, temperature=1.0, seed=0)
    assert sample.shape == (4, KEYS)


def test_transposition_moves_inputs_and_targets_together(env):
    from rnnlab.data.music import shift

    roll = to_roll([[21, 60], [108]])
    assert from_roll(shift(roll, 2)) == [[23, 62], []] and from_roll(shift(roll, -1)) == [[59], [107]]
    dm = PianoRollDataModule(transpose=3)
    dm.setup("fit")
    torch.manual_seed(0)
    seen = set()
    for _ in range(20):
        x, y, _ = dm.datasets["train"][0]
        assert torch.equal(x[1:], y[:-1])  # still: step t reads steps < t
        seen.add(int(y.nonzero()[0, 1]))
    assert len(seen) > 1  # different transpositions are drawn
    val_x, val_y, _ = dm.datasets["val"][0]
    assert torch.equal(dm.datasets["val"][0][1], val_y)  # evaluation pieces are never transposed


def test_evaluation_scores_every_step_but_each_pieces_first_like_the_published_protocol(env):
    """Bai et al. 2018 feed ``piece[:-1]`` and score ``piece[1:]``: ``val/nll`` leaves each piece's first step out
    (whatever the padding), ``val/nll_all`` keeps it."""
    import lightning as L

    torch.manual_seed(0)
    dm = PianoRollDataModule(batch_size=3)
    dm.setup("fit")
    model = PianoRollModel(rnn=RecurrentSpec(hidden_size=8)).eval()
    ds = dm.datasets["val"]
    per_piece = []
    with torch.no_grad():
        for i in range(len(ds)):
            x, y, _ = ds[i]
            per_piece.append(step_nll(model(x.unsqueeze(0), torch.tensor([len(x)]))[0][0], y))
    loader = torch.utils.data.DataLoader([ds[i] for i in range(len(ds))], batch_size=3, collate_fn=dm.collate)
    assert len({len(p) for p in per_piece}) > 1  # pieces of different lengths: padding in the batches
    out = L.Trainer(logger=False, enable_progress_bar=False).validate(model, loader, verbose=False)[0]
    rest = torch.cat([p[1:] for p in per_piece])
    every = torch.cat(per_piece)
    assert out["val/nll"] == pytest.approx(rest.mean().item(), rel=1e-5)
    assert out["val/nll_all"] == pytest.approx(every.mean().item(), rel=1e-5)
    assert out["val/nll_all"] != pytest.approx(out["val/nll"], rel=1e-4)  # the two protocols do differ here


@pytest.mark.parametrize("refine", [False, True])
def test_pitch_conv_term_is_the_same_in_every_key(refine):
    torch.manual_seed(0)
    model = PianoRollModel(
        conv_kernel=25, conv_channels=8, conv_refine=refine, rnn=RecurrentSpec(hidden_size=16)
    ).eval()
    torch.nn.init.zeros_(model.head.weight)  # the recurrent head says the same for every key: only the conv differs
    torch.nn.init.constant_(model.head.bias, -2.0)
    x = torch.zeros(1, 3, KEYS)
    x[0, :, [30, 34, 37, 42, 49]] = 1.0  # notes well inside the keyboard
    lengths = torch.tensor([3])
    logits, _ = model(x, lengths)
    shifted, _ = model(torch.roll(x, 5, -1), lengths)  # the same music 5 semitones higher
    inner = slice(12 + 5, KEYS - 12)  # keys whose 25-key window never reaches past the keyboard's ends
    assert torch.allclose(shifted[..., inner], logits[..., 12 : KEYS - 12 - 5], atol=1e-5)
    assert not torch.allclose(logits[..., 5:], logits[..., :-5], atol=1e-3)  # and it does depend on the key
    with pytest.raises(RnnlabError, match="odd number of semitones"):
        PianoRollModel(conv_kernel=24)
