"""Embedding files: written by word2vec (``.pt`` and the word2vec text format), read to initialise a model's
embedding table (``SequenceClassifier(pretrained_embeddings=...)``)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional, Sequence

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from rnnlab.errors import RnnlabError


def export_embeddings(path: str | os.PathLike, words: Sequence[str], vectors: Tensor) -> tuple[Path, Path]:
    """Write ``<stem>.pt`` (``{"words": [...], "vectors": Tensor}``) and ``<stem>.txt`` (word2vec text format:
    ``N D`` then ``word v1 ... vD`` per line), each written to a temporary file and renamed (never half-written).
    ``<pad>``/``<unk>`` are not exported."""
    path = Path(path)
    pt, txt = path.with_suffix(".pt"), path.with_suffix(".txt")
    pt.parent.mkdir(parents=True, exist_ok=True)
    keep = [i for i, w in enumerate(words) if w not in ("<pad>", "<unk>") and w and not any(c.isspace() for c in w)]
    kept_words, kept = [words[i] for i in keep], vectors[keep].float().contiguous()
    tmp = pt.with_suffix(".pt.tmp")
    torch.save({"words": kept_words, "vectors": kept}, tmp)
    os.replace(tmp, pt)
    tmp = txt.with_suffix(".txt.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(f"{len(kept_words)} {kept.shape[1]}\n")
        for w, row in zip(kept_words, kept.tolist()):
            f.write(w + " " + " ".join(f"{x:.6g}" for x in row) + "\n")
    os.replace(tmp, txt)
    return pt, txt


def load_embeddings(path: str | os.PathLike) -> tuple[list[str], Tensor]:
    """``(words, vectors [N, D])`` from a ``.pt`` written by :func:`export_embeddings` or a word2vec text file."""
    path = Path(path)
    if not path.is_file():
        raise RnnlabError(
            f"pretrained embeddings {path} not found: train them first, e.g. "
            f"`python main.py fit --config configs/imdb_word2vec_sgns.yaml` (writes its export_path)"
        )
    if path.suffix == ".pt":
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            words, vectors = list(data["words"]), data["vectors"].float()
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
            raise RnnlabError(
                f"{path} is not an embedding file written by rnnlab ({err}); give its .pt or a "
                f"word2vec text file (.txt/.vec)"
            ) from None
    else:
        words, rows = [], []
        with open(path, encoding="utf-8", errors="replace") as f:
            first = f.readline().split()
            dim = int(first[1]) if len(first) == 2 and all(x.isdigit() for x in first) else None
            if dim is None:  # no header line (GloVe format)
                f.seek(0)
            for n, line in enumerate(f, start=2):
                parts = line.rstrip("\n").split(" ")
                if len(parts) < 2:
                    continue
                if dim is None:
                    dim = len(parts) - 1
                if len(parts) != dim + 1:
                    raise RnnlabError(f"{path}:{n}: expected a word and {dim} numbers, found {len(parts) - 1}")
                words.append(parts[0])
                rows.append([float(x) for x in parts[1:]])
        vectors = torch.tensor(rows, dtype=torch.float)
    if len(words) != len(vectors) or not len(words) or not all(math.isfinite(x) for x in vectors.sum(1).tolist()):
        raise RnnlabError(f"{path} holds no usable vectors ({len(words)} words, shape {tuple(vectors.shape)})")
    return words, vectors


def align_embeddings(
    vocab_words: Sequence[str],
    words: Sequence[str],
    vectors: Tensor,
    weight: Tensor,
    pad_id: int = 0,
    generator: Optional[torch.Generator] = None,
) -> int:
    """Copy pre-trained vectors into the rows of ``weight`` (``[V, D]``) whose vocabulary word they belong to;
    other rows are drawn from ``N(0, std of the pre-trained vectors)``, the padding row is zero. Returns how many
    vocabulary words were found."""
    if vectors.shape[1] != weight.shape[1]:
        raise RnnlabError(
            f"the pre-trained vectors have {vectors.shape[1]} dimensions but the model's embedding has "
            f"{weight.shape[1]}: set model.init_args.embedding_dim: {vectors.shape[1]}"
        )
    index = {w: i for i, w in enumerate(words)}
    with torch.no_grad():
        weight.normal_(0.0, float(vectors.std()), generator=generator)
        found = 0
        for row, word in enumerate(vocab_words):
            if word in index:
                weight[row] = vectors[index[word]]
                found += 1
        weight[pad_id] = 0.0
    return found


def init_embedding(embedding: nn.Embedding, path: str, vocab, pad_id: int = 0) -> float:
    """Initialise ``embedding`` (rows = ``vocab``'s ids) from the vectors in ``path`` (:func:`load_embeddings`,
    :func:`align_embeddings`); returns the share of the vocabulary (without ``<pad>``/``<unk>``) that was found."""
    words, vectors = load_embeddings(path)
    vocab_words = vocab.tokens()
    found = align_embeddings(vocab_words, words, vectors, embedding.weight, pad_id)
    coverage = found / max(len(vocab_words) - 2, 1)
    frozen = "frozen" if not embedding.weight.requires_grad else "fine-tuned"
    rank_zero_info(
        f"pretrained embeddings {path}: {found} of {len(vocab_words) - 2} vocabulary units found "
        f"({coverage:.1%}); {frozen}"
    )
    return coverage


def read_language_model(path: str | os.PathLike) -> dict:
    """What a classifier takes from a language-model checkpoint written by ``fit`` (``LanguageModel``):
    ``{"words": vocabulary in id order, "embedding": [V, D], "encoder": the ``rnn.*`` weights (prefix removed),
    "hparams": the model's init arguments}``. Read as plain data (no code runs from the file). A folder stands for
    the newest ``*/checkpoints/last.ckpt`` under it (an experiment's runs, e.g. ``runs/imdb_lm_pretrain``)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
        if not found:
            raise RnnlabError(f"no */checkpoints/last.ckpt under {path}: pre-train the language model first")
        path = found[-1]
    if not path.is_file():
        raise RnnlabError(
            f"language-model checkpoint {path} not found: pre-train it first, e.g. "
            f"`python main.py fit --config configs/imdb_lm_pretrain.yaml`, and give its checkpoints/last.ckpt"
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        weights, hparams = ckpt["state_dict"], dict(ckpt.get("hyper_parameters", {}))
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise RnnlabError(f"{path} is not a Lightning checkpoint ({err})") from None
    states = [v for k, v in ckpt.items() if k.endswith("DataModule") and isinstance(v, dict) and "vocab" in v]
    if "embedding.weight" not in weights or not any(k.startswith("rnn.") for k in weights) or not states:
        raise RnnlabError(
            f"{path} is not a language model's checkpoint (it needs embedding and rnn weights and a vocabulary): "
            f"give one written by `fit --config configs/imdb_lm_pretrain.yaml`"
        )
    table = json.loads(states[0]["vocab"])["model"]["vocab"]  # a tokenizers WordLevel model: {token: id}
    words = [""] * len(table)
    for token, i in table.items():
        words[i] = token
    encoder = {k[len("rnn.") :]: v for k, v in weights.items() if k.startswith("rnn.")}
    return {"words": words, "embedding": weights["embedding.weight"].float(), "encoder": encoder, "hparams": hparams}
