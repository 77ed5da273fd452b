"""``rnnlab export --format onnx``: a trained model as an ONNX graph with dynamic batch and length axes.

Three graphs, one per kind of model:

* classifier (:class:`~rnnlab.models.SequenceClassifier`): ``tokens [B, T] int64``, ``lengths [B] int64`` ->
  ``probs [B, C]``;
* tagger (:class:`~rnnlab.models.SequenceTagger`): ``tokens [B, T, K] int64`` (K ids per step: the word, its
  features, its characters), ``lengths [B]`` -> ``scores [B, T, C]`` (per-step log-probabilities; with a CRF its
  emission scores, and the transition matrix is in the sidecar JSON for a Viterbi decoder);
* language model (:class:`~rnnlab.models.LanguageModel`): one step of generation, ``token [B] int64``, ``h [L, B, H]``
  (and ``c`` for an LSTM; ``category [B]`` for a conditional model) -> ``log_probs [B, V]``, ``h_out`` (``c_out``).
  A sampler calls it once per generated symbol, feeding the state back.

Next to ``model.onnx`` goes ``model.onnx.json``: the inputs and outputs, the labels and the vocabulary (id ->
token), pad/bos/eos ids, so that a program without rnnlab can encode inputs and read outputs. The recurrent layers
are exported with torch's kernels whatever ``impl`` trained them: the handwritten cells compute the same function
with the same weights (``tests/test_cells.py``), and ONNX has LSTM/GRU operators for exactly that function.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from rnnlab.errors import RnnlabError, require
from rnnlab.models import LanguageModel, SequenceClassifier, SequenceTagger
from rnnlab.nn.recurrent import Recurrent

FORMATS = ("onnx",)


class _Classifier(nn.Module):
    def __init__(self, model: SequenceClassifier) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return torch.softmax(self.model(tokens, lengths).float(), -1)


class _Tagger(nn.Module):
    def __init__(self, model: SequenceTagger) -> None:
        super().__init__()
        self.model = model

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        scores = self.model(tokens, lengths).float()
        return scores if self.model.crf is not None else torch.log_softmax(scores, -1)


class _LMStep(nn.Module):
    """One step of a language model; the subclasses below fix the inputs (the exporter needs a fixed signature)."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model

    def step(self, token: Tensor, state, category: Tensor | None):
        logits, state = self.model(token.unsqueeze(1), torch.ones_like(token), state, category)
        logits = logits[:, -1].float()
        log_probs = logits if self.model.adaptive else torch.log_softmax(logits, -1)
        return (log_probs, *state) if isinstance(state, tuple) else (log_probs, state)


class _Step(_LMStep):
    def forward(self, token: Tensor, h: Tensor):
        return self.step(token, h, None)


class _LSTMStep(_LMStep):
    def forward(self, token: Tensor, h: Tensor, c: Tensor):
        return self.step(token, (h, c), None)


class _ConditionalStep(_LMStep):
    def forward(self, token: Tensor, h: Tensor, category: Tensor):
        return self.step(token, h, category)


class _ConditionalLSTMStep(_LMStep):
    def forward(self, token: Tensor, h: Tensor, c: Tensor, category: Tensor):
        return self.step(token, (h, c), category)


def graph_for(model: nn.Module, example: dict) -> tuple[nn.Module, dict, dict, dict]:
    """``(wrapper, example inputs, dynamic shapes, description)`` of the graph exported for ``model``; ``example``
    holds a ``tokens`` and ``lengths`` batch of the model's data (the tracing inputs)."""
    tokens, lengths = example["tokens"].long(), example["lengths"].long()
    if isinstance(model, SequenceClassifier):
        other = [type(e).__name__ for e in model.experts.values() if not e.exportable]
        if other:
            raise RnnlabError(
                f"export covers the classifier's network and its BagExpert; this model also has {', '.join(other)}, "
                f"which has no ONNX form: export a model without it"
            )
        B, T = torch.export.Dim("batch"), torch.export.Dim("time")
        inputs = {"tokens": tokens, "lengths": lengths}
        return (
            _Classifier(model),
            inputs,
            {"tokens": {0: B, 1: T}, "lengths": {0: B}},
            {"inputs": {"tokens": "[batch, time] int64 ids", "lengths": "[batch] int64"}, "outputs": ["probs"]},
        )
    if isinstance(model, SequenceTagger):
        if tokens.dim() == 2:
            tokens = tokens.unsqueeze(-1)
        B, T = torch.export.Dim("batch"), torch.export.Dim("time")
        return (
            _Tagger(model),
            {"tokens": tokens, "lengths": lengths},
            {"tokens": {0: B, 1: T}, "lengths": {0: B}},
            {
                "inputs": {"tokens": f"[batch, time, {tokens.shape[-1]}] int64 ids", "lengths": "[batch] int64"},
                "outputs": ["scores"],
            },
        )
    if isinstance(model, LanguageModel):
        hp = model.hparams
        if hp.bidirectional:
            raise RnnlabError(
                "a bidirectional language model has no left-to-right step to export (its backward half reads the "
                "future): export a unidirectional one"
            )
        if model.category is not None and hp.get("condition") == "state":
            raise RnnlabError(
                "this conditional language model turns its category into the initial state, which a step graph fed "
                "its own state never sees: export a model trained with condition: input"
            )
        B = torch.export.Dim("batch")
        n = len(tokens)
        h = torch.zeros(hp.num_layers, n, hp.hidden_size)
        inputs = {"token": tokens[:, 0], "h": h}
        shapes = {"token": {0: B}, "h": {1: B}}
        outputs = ["log_probs", "h_out"]
        if hp.cell == "lstm":
            inputs["c"], shapes["c"] = torch.zeros_like(h), {1: B}
            outputs.append("c_out")
        if model.category is not None:
            inputs["category"], shapes["category"] = torch.zeros(n, dtype=torch.long), {0: B}
        names = {k: "[batch] int64" if k in ("token", "category") else "[layers, batch, hidden]" for k in inputs}
        steps = {(False, False): _Step, (True, False): _LSTMStep, (False, True): _ConditionalStep}
        wrapper = steps.get((hp.cell == "lstm", model.category is not None), _ConditionalLSTMStep)(model)
        return wrapper, inputs, shapes, {"inputs": names, "outputs": outputs}
    kinds = "a classifier, a tagger or a language model"
    raise RnnlabError(f"export --format onnx covers {kinds}; {type(model).__name__} is not one of them")


def export_onnx(model: nn.Module, example: dict, path: str | Path, sidecar: dict | None = None) -> Path:
    """Write ``model`` (see :func:`graph_for`) to ``path`` as ONNX and its description to ``path + '.json'``."""
    require("onnxscript", "export", "ONNX export")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu().float()
    impls = {m: m.impl for m in model.modules() if isinstance(m, Recurrent)}
    for m in impls:  # the same function with the same weights; see the module docstring
        m.impl = "torch" if not (m.cell == "rnn" and m.nonlinearity == "identity") else m.impl
    wrapper, inputs, shapes, description = graph_for(model, example)
    try:
        with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")  # the exporter's notes on torch.export internals, not the user's concern
            program = torch.onnx.export(
                wrapper.eval(),
                tuple(inputs.values()),
                input_names=list(inputs),
                output_names=description["outputs"],
                dynamic_shapes=shapes,
                dynamo=True,
                verbose=False,
            )
        program.save(str(path))
    except RnnlabError:
        raise
    except Exception as err:  # the exporter's own errors are long; keep the first line and say what to do
        cause = err.__cause__ or err
        first = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
        raise RnnlabError(
            f"ONNX export of {type(model).__name__} failed: {first}. Export models built from rnnlab's layers "
            f"(see docs/serving.md)"
        ) from err
    finally:
        for m, impl in impls.items():
            m.impl = impl
    description = {"model": type(model).__name__, "format": "onnx", **description, **(sidecar or {})}
    if isinstance(model, SequenceTagger) and model.crf is not None:
        description["crf_transitions"] = {
            k: v.detach().tolist() for k, v in model.crf.state_dict().items() if torch.is_floating_point(v)
        }
    Path(f"{path}.json").write_text(json.dumps(description, indent=1, ensure_ascii=False) + "\n")
    return path


def verify(model: nn.Module, example: dict, path: str | Path) -> float:
    """The largest absolute difference between onnxruntime running the graph at ``path`` and PyTorch running
    ``model`` on ``example`` (the inputs :func:`graph_for` makes of it)."""
    require("onnxruntime", "export", "running an exported model")
    import onnxruntime

    wrapper, inputs, _, _ = graph_for(model, example)
    with torch.no_grad():
        reference = wrapper(*inputs.values())
    reference = list(reference) if isinstance(reference, tuple) else [reference]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {k: v.numpy() for k, v in inputs.items()})
    return max(float((torch.from_numpy(o) - r.float()).abs().max()) for o, r in zip(outputs, reference))
