"""``rnnlab export --format onnx``: onnxruntime gives what PyTorch gives (to 1e-4) on the fixtures' own batches, at
batch sizes and lengths other than the ones the graph was traced with; the language model's exported step, fed its own
state back, reproduces the full model's log-probabilities at every position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rnnlab.cli import RnnlabCLI, main
from rnnlab.errors import RnnlabError

pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")
from rnnlab.export import export_onnx, graph_for  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
VAL = "--data.init_args.val_size=20"


def built(config: str, *args: str):
    """The model and DataModule of ``configs/<config>.yaml`` on the fixtures (initial weights, eval mode), and two
    batches of different sizes from its training split."""
    cli = RnnlabCLI(args=["--config", str(ROOT / "configs" / f"{config}.yaml"), *QUIET, *args], run=False)
    dm, model = cli.datamodule, cli.model
    dm.setup("fit")
    model.bind_task(dm.describe_task(), "fit")
    torch.manual_seed(0)
    for p in model.parameters():  # away from the initial values (a zero bias would hide a swapped gate)
        p.data.add_(torch.randn_like(p) * 0.05)
    data = dm.dataset("train")
    first = dm.collate([(*data[i][:2], i) for i in range(3)])
    second = dm.collate([(*data[i][:2], i) for i in range(3, 3 + 7)])
    return model.eval(), dm, first, second


def session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_both(model, path, batch):
    wrapper, inputs, _, _ = graph_for(model, {"tokens": batch.tokens, "lengths": batch.lengths})
    with torch.no_grad():
        expected = wrapper(*inputs.values())
    got = session(path).run(None, {k: v.numpy() for k, v in inputs.items()})
    return expected, got


@pytest.mark.parametrize(
    "config, args",
    [
        ("imdb_lstm", ["--model.init_args.embedding_dim=16", "--model.init_args.rnn.hidden_size=12", VAL]),
        ("imdb_handwritten_gru", ["--model.init_args.embedding_dim=16", "--model.init_args.rnn.hidden_size=12", VAL]),
        ("conll2000_pos_bilstm_crf", ["--model.init_args.rnn.hidden_size=12"]),
    ],
)
def test_onnxruntime_agrees_with_pytorch_at_other_batch_sizes_and_lengths(env, tmp_path, config, args):
    model, dm, first, second = built(config, *args)
    assert first.tokens.shape[1] != second.tokens.shape[1], "the second batch must have another length"
    path = export_onnx(model, {"tokens": first.tokens, "lengths": first.lengths}, tmp_path / "m.onnx")
    for batch in (first, second):
        expected, (got,) = run_both(model, path, batch)
        assert got.shape == tuple(expected.shape)
        assert (torch.from_numpy(got) - expected).abs().max() < 1e-4
    assert model.encoder.impl == ("handwritten" if "handwritten" in config else "torch"), "the model is left as it was"
    sidecar = json.loads(Path(f"{path}.json").read_text())
    assert sidecar["inputs"]["lengths"] == "[batch] int64"
    if "crf" in config:
        assert len(sidecar["crf_transitions"]["transitions"]) == dm.num_classes


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_the_exported_step_fed_its_own_state_reproduces_the_language_model(env, tmp_path, cell):
    model, dm, first, _ = built(
        "shakespeare_char_lstm",
        f"--model.init_args.rnn.cell={cell}",
        "--model.init_args.rnn.hidden_size=16",
        "--model.init_args.embedding_dim=8",
        "--data.init_args.seq_len=12",
    )
    path = export_onnx(model, {"tokens": first.tokens, "lengths": first.lengths}, tmp_path / "step.onnx")
    tokens = first.tokens[:, :10].long()
    with torch.no_grad():
        logits, _ = model(tokens, torch.full((len(tokens),), 10))
    expected = torch.log_softmax(logits.float(), -1)
    step = session(path)
    B, L, H = len(tokens), model.hparams.num_layers, model.hparams.hidden_size
    state = {"h": torch.zeros(L, B, H).numpy()} | ({"c": torch.zeros(L, B, H).numpy()} if cell == "lstm" else {})
    for t in range(tokens.shape[1]):
        log_probs, *new = step.run(None, {"token": tokens[:, t].numpy(), **state})
        state = dict(zip(state, new))
        assert (torch.from_numpy(log_probs) - expected[:, t]).abs().max() < 1e-4, f"step {t}"


def test_a_conditional_language_models_step_takes_its_category(env, tmp_path):
    model, dm, first, _ = built("names_generate_gru", "--model.init_args.rnn.hidden_size=16")
    assert first.category is not None
    path = export_onnx(model, {"tokens": first.tokens, "lengths": first.lengths}, tmp_path / "names.onnx")
    step = session(path)
    assert [i.name for i in step.get_inputs()] == ["token", "h", "category"]
    tokens, category = first.tokens[:, :4].long(), first.category.long()
    with torch.no_grad():
        logits, _ = model(tokens, torch.full((len(tokens),), 4), None, category)
    expected = torch.log_softmax(logits.float(), -1)
    h = torch.zeros(model.hparams.num_layers, len(tokens), model.hparams.hidden_size).numpy()
    for t in range(4):
        log_probs, h = step.run(None, {"token": tokens[:, t].numpy(), "h": h, "category": category.numpy()})
        assert (torch.from_numpy(log_probs) - expected[:, t]).abs().max() < 1e-4, f"step {t}"


def test_what_export_does_not_cover_is_said(env, tmp_path, capsys):
    model, _, first, _ = built("multi30k_de_en_attn", "--model.init_args.rnn.hidden_size=8")
    with pytest.raises(RnnlabError, match="covers a classifier, a tagger or a language model; Seq2Seq"):
        export_onnx(model, {"tokens": first.tokens, "lengths": first.lengths}, tmp_path / "s.onnx")
    with pytest.raises(SystemExit):
        main(["export", "--config", "configs/imdb_lstm.yaml", "--format", "tflite", "--ckpt_path", "x.ckpt"])
    assert "error: --format must be one of onnx, got 'tflite'" in capsys.readouterr().err


@pytest.mark.slow
def test_rnnlab_export_writes_a_checked_graph_from_a_checkpoint(env, capsys):
    tiny = [*QUIET, "--model.init_args.embedding_dim=16", "--model.init_args.rnn.hidden_size=16"]
    config = str(ROOT / "configs" / "imdb_lstm.yaml")
    main(["fit", "--config", config, *tiny, "--trainer.max_epochs=1", "--data.init_args.val_size=20"])
    ckpt = next((env / "runs" / "imdb_lstm" / "version_0" / "checkpoints").glob("epoch*.ckpt"))
    capsys.readouterr()
    main(["export", "--config", config, *tiny, "--ckpt_path", str(ckpt), "--output", "out/imdb.onnx"])
    assert "onnxruntime matches PyTorch to" in capsys.readouterr().err
    sidecar = json.loads((env / "out" / "imdb.onnx.json").read_text())
    assert sidecar["labels"] == ["neg", "pos"] and sidecar["vocabulary"][:2] == ["<pad>", "<unk>"]
    words = "a wonderful film , great acting".split()
    ids = torch.tensor([[sidecar["vocabulary"].index(w) if w in sidecar["vocabulary"] else 1 for w in words]])
    (probs,) = session(env / "out" / "imdb.onnx").run(
        None, {"tokens": ids.numpy(), "lengths": torch.tensor([6]).numpy()}
    )
    assert probs.shape == (1, 2) and abs(float(probs.sum()) - 1) < 1e-5
