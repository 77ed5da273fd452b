"""word2vec with negative sampling (Mikolov et al. 2013): skip-gram and CBOW, and the embedding files it writes.

For a centre (skip-gram) or window average (CBOW) input vector ``v``, its true output word ``u_o`` and ``K`` noise
words ``u_j`` drawn from the unigram distribution raised to 0.75:

    E = -( log sigma(u_o . v) + sum_j log(1 - sigma(u_j . v)) )          (1 - sigma(x) = sigma(-x))

Input (``in_embed``) and output (``out_embed``) tables are separate; the input vectors are the word vectors.
Evaluation: ``val/loss`` on fixed held-out pairs, cosine nearest neighbours of probe words and analogies
(``king - man + woman``) after every epoch, printed and saved to ``<run>/neighbours.txt``. At the end of ``fit`` the
vectors go to ``export_path`` as ``.pt`` (``{"words", "vectors"}``, loadable with ``weights_only=True``) and ``.txt``
(the word2vec text format); :func:`load_embeddings` reads both for ``SequenceClassifier(pretrained_embeddings=...)``.
"""

from __future__ import annotations

from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only
from torch import Tensor, nn

from rnnlab.embeddings import export_embeddings
from rnnlab.errors import RnnlabError
from rnnlab.models.base import RnnlabModule
from rnnlab.runs import run_dir

PROBES = ("good", "bad", "awful", "brilliant", "boring", "actor", "funny", "music")
ANALOGIES = (
    "king man woman queen",
    "actor man woman actress",
    "his he she her",
    "better good bad worse",
    "bigger big small smaller",
    "brother boy girl sister",
    "son father mother daughter",
)


def noise_distribution(counts: Tensor, power: float = 0.75) -> Tensor:
    """Unigram counts raised to ``power``, normalised; ``<pad>``/``<unk>`` (ids 0, 1) are never drawn."""
    p = counts.double().clamp(min=0) ** power
    p[:2] = 0
    if p.sum() <= 0:
        raise RnnlabError("no word has a count: the noise distribution is empty (is the corpus empty?)")
    return (p / p.sum()).float()


def negative_sampling_loss(v: Tensor, u_pos: Tensor, u_neg: Tensor) -> Tensor:
    """Mean over the batch of ``-(log sigma(u_o . v) + sum_j log sigma(-u_j . v))``; ``v, u_pos [B, D]``,
    ``u_neg [B, K, D]``."""
    pos = F.logsigmoid((u_pos * v).sum(-1))
    neg = F.logsigmoid(-torch.bmm(u_neg, v.unsqueeze(2)).squeeze(2)).sum(-1)
    return -(pos + neg).mean()


class Word2Vec(RnnlabModule):
    """Skip-gram or CBOW with negative sampling; pairs come from :class:`~rnnlab.data.word2vec.Word2VecDataModule`.

    Args:
        vocab_size: linked from the DataModule.
        mode: ``skipgram`` or ``cbow`` (must match the DataModule's).
        embedding_dim: vector size.
        negatives: noise words per positive pair (``K``).
        optimizer: ``sgd`` (plain SGD on the sum of the pair losses: ``lr`` is the step per pair, as word2vec's ``alpha``;
            sparse updates, the fastest) or ``sparse_adam`` (Adam on the rows a batch touches; mean loss).
            Under multi-process training (DDP) the gradients are dense: NCCL has no sparse all-reduce, and gloo's
            is fragile (a heap corruption seen here once in about a dozen 2-process runs). ``sgd`` updates the same
            rows either way; ``sparse_adam`` becomes ``torch.optim.Adam``, whose moments move every row.
        lr: learning rate, decayed linearly to ``lr * min_lr_ratio`` over ``max_epochs`` (per epoch).
        probe_words / analogies: shown after every epoch (analogies as ``"a b c d"``: ``a - b + c`` should give ``d``;
            those with a word outside the vocabulary are skipped).
        export_path: where to write the vectors at the end of ``fit`` (``.pt`` and ``.txt`` beside it); None: no export.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int = 0,
        pad_id: int = 0,
        mode: Literal["skipgram", "cbow"] = "skipgram",
        embedding_dim: int = 128,
        negatives: int = 5,
        optimizer: Literal["sgd", "sparse_adam"] = "sparse_adam",
        lr: float = 0.003,
        min_lr_ratio: float = 0.1,
        probe_words: Sequence[str] = PROBES,
        analogies: Sequence[str] = ANALOGIES,
        neighbours: int = 8,
        export_path: Optional[str] = None,
        eval_seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(logger=False)
        if mode not in ("skipgram", "cbow"):
            raise RnnlabError(f"mode must be 'skipgram' or 'cbow', got {mode!r}")
        self.in_embed = nn.Embedding(vocab_size, embedding_dim, sparse=True)
        self.out_embed = nn.Embedding(vocab_size, embedding_dim, sparse=True)
        nn.init.uniform_(self.in_embed.weight, -0.5 / embedding_dim, 0.5 / embedding_dim)  # as word2vec's C code
        nn.init.zeros_(self.out_embed.weight)
        self.register_buffer("noise", torch.full((vocab_size,), 1.0 / vocab_size))
        self.words: list[str] = []
        self.examples_seen = 0  # training pairs (skip-gram) or windows (CBOW), for throughput figures

    # ------------------------------------------------------------------ model
    def input_vectors(self, context: Tensor) -> Tensor:
        """Skip-gram: ``context`` is the centre ``[B]`` -> ``[B, D]``; CBOW: a window ``[B, 2W]`` (``-1`` = empty)
        -> the mean of its words' input vectors."""
        if context.dim() == 1:
            return self.in_embed(context)
        mask = context >= 0
        vecs = self.in_embed(context.clamp(min=0)) * mask.unsqueeze(-1)
        return vecs.sum(1) / mask.sum(1, keepdim=True).clamp(min=1)

    def sample_negatives(self, n: int, k: int, generator: Optional[torch.Generator] = None) -> Tensor:
        return torch.multinomial(self.noise, n * k, replacement=True, generator=generator).view(n, k)

    def loss(self, centre: Tensor, context: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        if self.hparams.mode == "skipgram":
            v, target = self.input_vectors(centre), context  # the centre word predicts each context word
        else:
            v, target = self.input_vectors(context), centre  # the window predicts its centre word
        negs = self.sample_negatives(len(target), self.hparams.negatives, generator)
        return negative_sampling_loss(v, self.out_embed(target), self.out_embed(negs))

    # -------------------------------------------------------------- training
    def setup(self, stage: str) -> None:
        task = self.task
        if task.counts is None:
            return
        if task.mode is not None and task.mode != self.hparams.mode:
            raise RnnlabError(
                f"the model's mode is {self.hparams.mode!r} but the data's is {task.mode!r}: set both "
                f"(model.init_args.mode and data.init_args.mode) to the same value"
            )
        if stage == "fit":
            self.noise.copy_(noise_distribution(task.counts))
        if self.trainer.world_size > 1:  # before DDP wraps the model: it reads `sparse` to plan the all-reduce
            self.in_embed.sparse = self.out_embed.sparse = False
        self.words = task.words

    def on_train_epoch_start(self) -> None:
        if self.task.set_epoch is not None:
            self.task.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx: int) -> Tensor:
        centre, context = batch
        loss = self.loss(centre, context)
        self.examples_seen += len(centre)
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(centre))
        return loss * len(centre) if self.hparams.optimizer == "sgd" else loss

    def evaluate(self, batch, stage: str) -> None:
        centre, context = batch
        g = torch.Generator(device=centre.device).manual_seed(self.hparams.eval_seed + len(centre))
        loss = self.loss(centre, context, generator=g)
        self.log(f"{stage}/loss", loss, on_epoch=True, prog_bar=True, batch_size=len(centre), sync_dist=True)

    def configure_optimizers(self):
        if self.hparams.optimizer == "sgd":
            opt = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
        elif self.hparams.optimizer == "sparse_adam" and not self.in_embed.sparse:  # dense gradients (DDP)
            opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        elif self.hparams.optimizer == "sparse_adam":
            opt = torch.optim.SparseAdam(list(self.parameters()), lr=self.hparams.lr)
        else:
            raise RnnlabError(f"optimizer must be 'sgd' or 'sparse_adam', got {self.hparams.optimizer!r}")
        epochs = max(int(self.trainer.max_epochs or 1), 1)
        floor = self.hparams.min_lr_ratio
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: max(1.0 - (1.0 - floor) * e / epochs, floor))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    # ------------------------------------------------------------ evaluation
    def vectors(self) -> Tensor:
        return self.in_embed.weight.detach().float().cpu()

    def report(self) -> str:
        """Nearest neighbours of the probe words and the analogies, as text."""
        if not self.words:
            return ""
        index = {w: i for i, w in enumerate(self.words)}
        vecs = self.vectors()
        lines = []
        for word in self.hparams.probe_words:
            if word in index:
                near = nearest(vecs, self.words, vecs[index[word]], k=self.hparams.neighbours, exclude=[word])
                lines.append(f"{word}: " + ", ".join(f"{w} {s:.2f}" for w, s in near))
        solved, tried = 0, 0
        for quad in self.hparams.analogies:
            a, b, c, d = quad.split()
            if all(w in index for w in (a, b, c, d)):
                tried += 1
                unit = F.normalize(vecs, dim=1)
                query = unit[index[a]] - unit[index[b]] + unit[index[c]]
                best = nearest(vecs, self.words, query, k=3, exclude=[a, b, c])
                solved += best[0][0] == d
                lines.append(f"{a} - {b} + {c} = {', '.join(w for w, _ in best)} (expected {d})")
        if tried:
            lines.append(f"analogies: {solved}/{tried} top-1")
            self.analogy_accuracy = solved / tried
        return "\n".join(lines)

    @rank_zero_only
    def on_train_epoch_end(self) -> None:
        text = self.report()
        if not text:
            return
        rank_zero_info(f"word2vec after epoch {self.current_epoch}:\n{text}")
        folder = run_dir(self.trainer)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "neighbours.txt", "a", encoding="utf-8") as f:
            f.write(f"# epoch {self.current_epoch}\n{text}\n")

    @torch.no_grad()
    def predict_step(self, batch, batch_idx: int) -> dict:
        """Nearest neighbours by cosine of a word or an analogy: ``tokens`` holds ``sign * (id + 1)`` per term."""
        unit = F.normalize(self.in_embed.weight.float(), dim=1)
        codes = batch.tokens.long()
        ids, signs = codes.abs().clamp(min=1) - 1, codes.sign().float()  # padding: sign 0
        query = (unit[ids] * signs.unsqueeze(-1)).sum(1)
        sims = F.normalize(query, dim=1) @ unit.T  # [B, V]
        sims[:, :2] = -2.0  # <pad>, <unk>
        sims.scatter_(1, ids, torch.where(signs != 0, -2.0, sims.gather(1, ids)))  # not the query's own words
        top = sims.topk(min(self.hparams.neighbours, sims.shape[1]), dim=1)
        return {"index": batch.index, "ids": top.indices, "sims": top.values}

    @rank_zero_only
    def on_fit_end(self) -> None:
        if self.hparams.export_path and self.words:
            pt, txt = export_embeddings(self.hparams.export_path, self.words, self.vectors())
            rank_zero_info(f"word2vec vectors written to {pt} and {txt}")


def nearest(
    vectors: Tensor, words: Sequence[str], query: Tensor, k: int = 8, exclude: Sequence[str] = ()
) -> list[tuple[str, float]]:
    """The ``k`` words whose vectors have the highest cosine similarity to ``query`` (special tokens and ``exclude``
    left out)."""
    sims = F.normalize(vectors, dim=1) @ F.normalize(query, dim=0)
    skip = set(exclude) | {"<pad>", "<unk>"}
    out = []
    for i in sims.argsort(descending=True).tolist():
        if words[i] not in skip:
            out.append((words[i], float(sims[i])))
            if len(out) == k:
                break
    return out
