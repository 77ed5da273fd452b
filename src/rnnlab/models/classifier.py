"""Many-to-one: a sequence in, one label out (sentiment, name -> gender, name -> language)."""

from __future__ import annotations

import functools
from typing import Callable, Literal, Optional

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from torchmetrics import MaxMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassF1Score

from rnnlab.compat import own_hyperparameters
from rnnlab.contract import Batch, Task
from rnnlab.errors import RnnlabError
from rnnlab.models.base import RnnlabModule
from rnnlab.models.ngram import NgramLM
from rnnlab.nn.pooling import Pooling
from rnnlab.nn.recurrent import Recurrent, RecurrentSpec
from rnnlab.optim import OneCycle, OptimizerCallable, Schedule, adamw


class OneHot(nn.Module):
    """One-hot "embedding" ``[B, T] -> [B, T, V]`` (padding is the zero vector), for the course's recipes."""

    def __init__(self, num_embeddings: int, padding_idx: int = 0) -> None:
        super().__init__()
        self.num_embeddings, self.padding_idx = num_embeddings, padding_idx

    def forward(self, tokens: Tensor) -> Tensor:
        out = F.one_hot(tokens, self.num_embeddings).float()
        out[..., self.padding_idx] = 0.0
        return out


class TokenBag(nn.Module):
    """A logistic regression on the bag of a text's tokens, its n-grams and the whole text: one weight row per token
    id, and one per hashed n-gram (``ngrams`` >= 2) or token sequence (``whole``), in ``buckets`` shared rows (the
    whole name is what a name's second sighting is recognised by). ``nb``: NBSVM's features (Wang & Manning 2012)
    -- each feature present or not (binarised), scaled by its naive Bayes log-count ratio
    ``r = log((p / |p|) / (q / |q|))`` (``p``, ``q``: 1 + the training texts of class 1, 0 that hold it); two classes.
    The ``bag`` expert of :class:`SequenceClassifier`. :meth:`fit` minimises scikit-learn's
    ``LogisticRegression(C=1/l2)`` objective to convergence (full-batch L-BFGS) and freezes the weights."""

    PRIME = 1_000_003

    def __init__(
        self, vocab_size: int, num_classes: int, buckets: int, ngrams: int = 1, whole: bool = True, nb: bool = False
    ) -> None:
        super().__init__()
        if buckets < 1:
            raise RnnlabError(f"BagExpert's buckets must be at least 1, got {buckets}")
        if ngrams < 1 or (nb and num_classes != 2):
            raise RnnlabError(
                f"BagExpert's ngrams must be >= 1 (got {ngrams}); its nb needs two classes (got {num_classes})"
            )
        self.vocab_size, self.buckets, self.ngrams, self.whole_text, self.nb = vocab_size, buckets, ngrams, whole, nb
        self.weight = nn.EmbeddingBag(vocab_size + buckets, num_classes, mode="sum")
        nn.init.zeros_(self.weight.weight)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        if nb:  # (only then: plain bags' checkpoints keep their keys)
            self.register_buffer("ratio", torch.ones(vocab_size + buckets))

    def whole(self, tokens: Tensor, mask: Tensor) -> Tensor:
        """``[B]`` bucket of each row's token sequence: ``sum_t x_t P^t mod buckets`` over its real tokens."""
        powers = torch.tensor([pow(self.PRIME, t, self.buckets) for t in range(tokens.shape[1])], device=tokens.device)
        return ((tokens * powers) % self.buckets * mask).sum(1) % self.buckets

    def features(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``(ids [B, K], weights [B, K])`` of each text's features (weight 0: not a feature), before ``ratio``."""
        mask = torch.arange(tokens.shape[1], device=tokens.device)[None] < lengths.to(tokens.device)[:, None]
        ids, weights = [tokens], [mask]
        T = tokens.shape[1]
        for n in range(2, self.ngrams + 1):  # hashed n-grams ending at every real position
            if T < n:
                break
            h = torch.zeros_like(tokens[:, : T - n + 1])
            for k in range(n):
                h = (h * self.PRIME + tokens[:, k : T - n + 1 + k]) % self.buckets
            ids.append(self.vocab_size + h)
            weights.append(mask[:, n - 1 :])
        if self.whole_text:
            ids.append((self.vocab_size + self.whole(tokens, mask))[:, None])
            weights.append(mask.new_ones(len(tokens), 1))
        ids, weights = torch.cat(ids, 1), torch.cat(weights, 1)
        if self.nb:  # binarise: a feature counts once per text
            ids = ids.masked_fill(~weights, self.vocab_size + self.buckets)  # non-features sort last, apart
            ids, _ = ids.sort(1)
            weights = ids < self.vocab_size + self.buckets
            weights[:, 1:] &= ids[:, 1:] != ids[:, :-1]
            ids = ids.masked_fill(~weights, 0)
        return ids, weights.to(self.bias.dtype)

    def score(self, ids: Tensor, weights: Tensor) -> Tensor:
        if self.nb:
            weights = weights * self.ratio[ids]
        return self.weight(ids, per_sample_weights=weights) + self.bias

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``tokens [B, T]``, ``lengths [B]`` -> logits ``[B, num_classes]``."""
        return self.score(*self.features(tokens, lengths))

    def l2(self) -> Tensor:
        """The penalty ``||w||^2 / 2`` (not on the bias, as in scikit-learn)."""
        return self.weight.weight.float().pow(2).sum() / 2

    def objective(self, tokens: Tensor, lengths: Tensor, targets: Tensor, l2: float) -> Tensor:
        """Mean cross-entropy + ``l2 ||w||^2 / 2N``: scikit-learn's objective divided by the ``N`` examples."""
        return F.cross_entropy(self(tokens, lengths).float(), targets) + l2 * self.l2() / len(targets)

    def fit(self, tokens: Tensor, lengths: Tensor, targets: Tensor, l2: float, max_iter: int = 500) -> float:
        """Fit on all examples at once, from zero weights (with ``nb``, the ratios first, from these examples);
        returns the final objective. The weights are then frozen: the optimiser of the model around it leaves them
        alone."""
        tokens, lengths, targets = (t.to(self.bias.device) for t in (tokens, lengths, targets))
        ids, weights = self.features(tokens, lengths)  # once: every L-BFGS evaluation reuses them
        if self.nb:
            rows = self.vocab_size + self.buckets
            p, q = (
                1
                + torch.zeros(rows, device=ids.device).index_add_(
                    0, ids[targets == c].flatten(), weights[targets == c].flatten().float()
                )
                for c in (1, 0)
            )
            self.ratio.copy_(((p / p.sum()) / (q / q.sum())).log())
        nn.init.zeros_(self.weight.weight)
        nn.init.zeros_(self.bias)
        self.requires_grad_(True)
        opt = torch.optim.LBFGS(
            self.parameters(),
            lr=1,
            max_iter=max_iter,
            tolerance_grad=1e-7,
            tolerance_change=1e-10,
            history_size=20,
            line_search_fn="strong_wolfe",
        )

        def objective() -> Tensor:
            return F.cross_entropy(self.score(ids, weights).float(), targets) + l2 * self.l2() / len(targets)

        def closure() -> Tensor:
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
            loss = float(objective().detach())
        opt.zero_grad(set_to_none=True)
        self.requires_grad_(False)
        return loss


class Expert(nn.Module):
    """An opinion on a text's class beside the classifier's network: :meth:`log_posterior` gives
    ``log p(class | text)``, ``[B, num_classes]``, and :class:`SequenceClassifier` combines it with the network's
    (:func:`geometric_mean`). A trained expert adds :meth:`loss` to the network's; a counted or convex one is fitted
    to the training split in :meth:`fit` when ``fit`` starts, then left alone.

    In a config, each entry of the classifier's ``experts`` names an expert by ``class_path`` with its own
    ``init_args``; the classifier supplies ``vocab_size``, ``num_classes`` and ``pad_id``."""

    key = "expert"  # its name in the classifier's ``experts`` (state-dict prefix)
    exportable = False  # whether rnnlab export can put it into an ONNX graph

    def __init__(self, vocab_size: int, num_classes: int, pad_id: int = 0) -> None:
        super().__init__()
        self.vocab_size, self.num_classes, self.pad_id = vocab_size, num_classes, pad_id

    def log_posterior(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, batch: Batch) -> Optional[Tensor]:
        """This expert's training loss on ``batch`` (added to the network's), or None: it does not train."""
        return None

    def fit(self, task: Task) -> None:
        """Fit to the training data that ``task`` describes (when ``fit`` starts; the checkpoint keeps the result)."""


class _WithPrior(Expert):
    """A generative expert: ``p(c | x)`` proportional to ``p(x | c) p(c)``, the prior from the training classes."""

    def __init__(self, vocab_size: int, num_classes: int, pad_id: int = 0) -> None:
        super().__init__(vocab_size, num_classes, pad_id)
        self.register_buffer("log_prior", torch.zeros(num_classes))

    def log_likelihoods(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``log p(tokens | c)`` for every class ``c``: ``[B, num_classes]``."""
        raise NotImplementedError

    def log_posterior(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return torch.log_softmax(self.log_likelihoods(tokens, lengths) + self.log_prior, -1)

    def fit(self, task: Task) -> None:
        if task.class_counts:
            freq = torch.tensor(task.class_counts, dtype=torch.float).clamp(min=1)
            self.log_prior.copy_((freq / freq.sum()).log())


class GenerativeExpert(_WithPrior):
    """``log p(text | class)`` from a unidirectional character (or word) language model with the class embedding
    beside every input step -- :class:`~rnnlab.models.LanguageModel` itself (``condition="input"``), trained with the
    network on the true class (its loss: NLL per token). Id ``vocab_size`` is the boundary symbol (``<bos>`` in,
    ``<eos>`` out)."""

    key = "generative"

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        hidden_size: int = 256,
        embedding_dim: int = 32,
        class_dim: int = 32,
        cell: Literal["lstm", "gru", "rnn"] = "lstm",
        impl: Literal["torch", "handwritten"] = "torch",
        dropout: float = 0.3,
    ) -> None:
        from rnnlab.models.language_model import LanguageModel

        super().__init__(vocab_size, num_classes, pad_id)
        self.boundary = vocab_size
        with own_hyperparameters():  # not the classifier's, under the CLI
            self.lm = LanguageModel(
                vocab_size + 1,
                num_classes,
                pad_id,
                embedding_dim=embedding_dim,
                dropout=dropout,
                category_dim=class_dim,
                condition="input",
                rnn=RecurrentSpec(hidden_size=hidden_size, num_layers=1, cell=cell, impl=impl),
            )

    def log_likelihood(self, tokens: Tensor, lengths: Tensor, classes: Tensor) -> Tensor:
        """``[B]``: ``log p(tokens, <eos> | class)`` of right-padded ``tokens [B, T]``."""
        return self.lm.log_likelihood(tokens, lengths, self.boundary, self.boundary, category=classes)

    def log_likelihoods(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        B, K = len(tokens), self.num_classes  # the batch is run once per class
        classes = torch.arange(K, device=tokens.device).repeat(B)
        return self.log_likelihood(tokens.repeat_interleave(K, 0), lengths.repeat_interleave(K, 0), classes).view(B, K)

    def loss(self, batch: Batch) -> Tensor:
        nll = -self.log_likelihood(batch.tokens, batch.lengths, batch.target).sum()
        return nll / (batch.lengths + 1).sum()


class NgramExpert(_WithPrior):
    """``log p(text | class)`` from a class-conditional n-gram model of ``order`` with interpolated absolute
    discounting ``discount`` (:class:`~rnnlab.models.ngram.NgramLM`), counted on the training split."""

    key = "ngram"

    def __init__(self, vocab_size: int, num_classes: int, pad_id: int = 0, order: int = 3, discount: float = 0.9):
        super().__init__(vocab_size, num_classes, pad_id)
        self.lm = NgramLM(vocab_size, num_classes, order, discount)

    def log_likelihoods(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return self.lm.scores(tokens, lengths)

    def fit(self, task: Task) -> None:
        super().fit(task)
        sequences, targets = task.train_examples()
        self.lm.fit(list(sequences), targets)


class BagExpert(Expert):
    """A logistic regression on the bag of the text's tokens and the whole text (:class:`TokenBag`, hashed into
    ``buckets`` rows), fitted to convergence on the training split when ``fit`` starts, on scikit-learn's
    ``LogisticRegression(C=1/l2)`` objective, then frozen. ``ngrams`` adds hashed n-grams up to that order,
    ``whole: false`` drops the whole-text feature (long texts never repeat), ``nb`` makes it NBSVM's naive-Bayes
    scaled binary features (two classes). With ``char_features`` in the data it sees each character's components
    and pinyin too."""

    key = "bag"
    exportable = True

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        buckets: int = 1 << 18,
        l2: float = 1.0,
        ngrams: int = 1,
        whole: bool = True,
        nb: bool = False,
    ) -> None:
        super().__init__(vocab_size, num_classes, pad_id)
        self.l2 = l2
        self.bag = TokenBag(vocab_size, num_classes, buckets, ngrams, whole, nb)

    def log_posterior(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        return torch.log_softmax(self.bag(tokens, lengths).float(), -1)

    def fit(self, task: Task) -> None:
        sequences, targets = task.train_examples()
        batch = task.collate([(s, y, i) for i, (s, y) in enumerate(zip(sequences, targets))])  # one padded batch
        loss = self.bag.fit(batch.tokens, batch.lengths, batch.target, self.l2)
        rank_zero_info(f"bag: logistic regression fitted on {len(batch)} training examples, objective {loss:.4f}")


ExpertCallable = Callable[[int, int, int], Expert]


def expert_from_spec(spec: dict) -> Callable[[int, int, int], Expert]:
    """The inverse of :func:`expert_spec`: ``{"class_path", "init_args"}`` -> the expert's constructor."""
    import importlib

    module, _, name = spec["class_path"].rpartition(".")
    return functools.partial(getattr(importlib.import_module(module), name), **spec.get("init_args", {}))


def expert_spec(make) -> dict:
    """``{"class_path", "init_args"}`` of an expert as given (a class, a ``functools.partial`` of one, or what the CLI
    builds from a config entry): what a checkpoint keeps to rebuild it."""
    cls, kwargs = make, {}
    if isinstance(make, functools.partial):
        cls = make.func if isinstance(make.func, type) else next(a for a in make.args if isinstance(a, type))
        kwargs = dict(make.keywords)
    elif isinstance(make, Expert):
        cls = type(make)
    if not (isinstance(cls, type) and issubclass(cls, Expert)):
        raise RnnlabError(f"an expert is an Expert class with its init_args, got {make!r}")
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": kwargs}


def geometric_mean(log_posteriors: list[Tensor]) -> Tensor:
    """The combiner: the normalised geometric mean of the posteriors, ``log_softmax(mean_i log p_i(c | x))``. Its
    argmax is the product's; the root keeps the probabilities calibrated (the plain product is overconfident)."""
    return torch.log_softmax(sum(log_posteriors) / len(log_posteriors), -1)


class SequenceClassifier(RnnlabModule):
    """embedding -> :class:`~rnnlab.nn.recurrent.Recurrent` -> length-aware pooling -> dropout -> linear.

    ``rnn``: the encoder's :class:`~rnnlab.nn.recurrent.RecurrentSpec` (default a one-layer BiLSTM of 128 per
    direction); its ``packed`` None (the default) runs torch's packed-sequence kernels when the batch is on a CUDA
    device (cuDNN) and the padded driver on the CPU, where it is faster; True or False forces one.
    ``input_encoding="onehot"`` feeds one-hot vectors instead of a learned embedding (``embedding_dim`` unused).
    ``class_weighting`` weights the training loss against class imbalance (from the DataModule's ``class_counts``).
    ``pretrained_embeddings``: a ``.pt`` or word2vec text file (e.g. written by :class:`~rnnlab.models.word2vec.Word2Vec`)
    whose vectors initialise the embedding rows of the same words when ``fit`` starts (other words: random, see
    :func:`~rnnlab.models.word2vec.align_embeddings`); ``freeze_embeddings`` keeps them fixed.

    ``experts``: a hybrid. Each :class:`Expert` gives its own ``log p(class | text)``; predictions and every
    evaluation metric come from the normalised geometric mean of the network's posterior and the experts'
    (:func:`geometric_mean`); training metrics are the network's alone. :class:`GenerativeExpert` (a language model of
    the text given the class, trained with the network), :class:`NgramExpert` (counted n-grams) and
    :class:`BagExpert` (a logistic regression on the bag of tokens, fitted when ``fit`` starts)::

        experts:
          - class_path: rnnlab.models.classifier.GenerativeExpert
            init_args: {hidden_size: 256, cell: gru}
          - class_path: rnnlab.models.classifier.NgramExpert
            init_args: {order: 3}

    or on the command line ``--model.init_args.experts+=NgramExpert --model.init_args.experts.order=1``.

    ``pretrained_encoder``: a language model's checkpoint (:class:`~rnnlab.models.LanguageModel`, e.g. from
    ``configs/imdb_lm_pretrain.yaml``) or a run folder (its newest ``*/checkpoints/last.ckpt``): its embedding (rows
    matched by word) and recurrent weights initialise this model when ``fit`` starts; the sizes must match. Fine-tune
    it ULMFiT-style with ``pooling: concat`` (last state, max and mean), ``discriminative_lr`` d (encoder at lr/d,
    embedding at lr/d^2) and ``gradual_unfreezing`` (epoch 0 the head alone, epoch 1 with the encoder, then all).

    Hooks: ``setup`` (class weights), ``training_step``, ``validation_step``, ``test_step``, ``predict_step`` (class probabilities),
    ``configure_optimizers`` (from :class:`RnnlabModule`). Logs ``{train,val,test}/{loss,acc,f1}`` and
    ``val/acc_best``. ``vocab_size``, ``num_classes`` and ``pad_id`` are linked from the DataModule by the CLI.
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        pad_id: int = 0,
        input_encoding: Literal["embedding", "onehot"] = "embedding",
        embedding_dim: int = 128,
        rnn: RecurrentSpec = RecurrentSpec("lstm", "torch", 128, 1, True),
        pooling: Literal["last", "max", "mean", "attention", "concat"] = "max",
        dropout: float = 0.3,
        embedding_dropout: float = 0.2,
        optimizer: OptimizerCallable = adamw(2e-3),
        scheduler: Schedule = lazy_instance(OneCycle, warmup=0.1),
        class_weighting: Literal["none", "balanced", "sqrt"] = "none",
        pretrained_embeddings: Optional[str] = None,
        freeze_embeddings: bool = False,
        experts: Optional[list[ExpertCallable]] = None,
        pretrained_encoder: Optional[str] = None,
        discriminative_lr: float = 1.0,
        gradual_unfreezing: bool = False,
    ) -> None:
        super().__init__()
        rnn = self.init_parts(rnn, optimizer, scheduler, ignore=("experts",))
        hidden_size, num_layers, cell, impl, bidirectional, packed = (
            rnn.hidden_size,
            rnn.num_layers,
            rnn.cell,
            rnn.impl,
            rnn.bidirectional,
            rnn.packed,
        )
        if input_encoding == "onehot":  # the course's one-hot inputs: a fixed identity "embedding"
            self.embedding = OneHot(vocab_size, pad_id)
            embedding_dim = vocab_size
        else:
            self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_id)
            self.embedding.weight.requires_grad_(not freeze_embeddings)
        self.embedding_dropout = nn.Dropout(embedding_dropout)
        self.encoder = Recurrent(
            embedding_dim,
            hidden_size,
            cell=cell,
            impl=impl,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            packed=packed,
        )
        self.register_buffer("class_weights", torch.ones(num_classes))
        self.pooling = Pooling(pooling, self.encoder.output_size)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.pooling.output_size, num_classes)
        if discriminative_lr < 1:
            raise RnnlabError(
                f"discriminative_lr is a divisor per layer group and must be >= 1, got {discriminative_lr}"
            )
        self.experts = nn.ModuleDict()
        makers = [expert_from_spec(m) if isinstance(m, dict) else m for m in experts or []]  # (from a checkpoint)
        self.hparams["experts"] = [expert_spec(make) for make in makers]  # plain data a checkpoint rebuilds from
        for make in makers:
            expert = make(vocab_size, num_classes, pad_id) if not isinstance(make, Expert) else make
            key, n = expert.key, 2
            while key in self.experts:
                key, n = f"{expert.key}_{n}", n + 1
            self.experts[key] = expert
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_acc_best = MaxMetric()

    def forward(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """``tokens [B, T]``, ``lengths [B]`` -> logits ``[B, num_classes]`` (with ``experts``: the log of the
        normalised geometric mean of the network's and the experts' posteriors)."""
        logits = self.discriminate(tokens, lengths)
        if not self.experts:
            return logits
        network = torch.log_softmax(logits.float(), -1)
        return geometric_mean([network] + [e.log_posterior(tokens, lengths) for e in self.experts.values()])

    def discriminate(self, tokens: Tensor, lengths: Tensor) -> Tensor:
        """The discriminative network's logits ``[B, num_classes]``."""
        x = self.embedding_dropout(self.embedding(tokens))
        outputs, state = self.encoder(x, lengths)
        h_n = state[0] if isinstance(state, tuple) else state
        pooled = self.pooling(outputs, lengths, h_n, self.encoder.num_directions)
        return self.head(self.dropout(pooled))

    def on_task(self, stage: str) -> None:
        """``class_weighting``: weight the loss by inverse class frequency (``balanced``) or its square root (from
        the DataModule's training ``class_counts``); each expert fits itself to the training data (:meth:`Expert.fit`)."""
        task = self.task
        if stage == "fit" and self.hparams.pretrained_embeddings and task.vocab is not None:
            self.load_pretrained(self.hparams.pretrained_embeddings, task.vocab)
        if stage == "fit" and self.hparams.pretrained_encoder and task.vocab is not None:
            self.load_encoder(self.hparams.pretrained_encoder, task.vocab)
        if stage != "fit":
            return
        for expert in self.experts.values():
            expert.fit(task)
        counts = task.class_counts
        if counts and self.hparams.class_weighting != "none":
            freq = torch.tensor(counts, dtype=torch.float).clamp(min=1)
            w = freq.sum() / (len(freq) * freq)
            self.class_weights.copy_(w.sqrt() if self.hparams.class_weighting == "sqrt" else w)

    def load_pretrained(self, path: str, vocab) -> None:
        """Initialise the embedding rows of ``vocab``'s words from the vectors in ``path`` (before training; a resumed
        run's checkpoint then replaces them)."""
        from rnnlab.embeddings import init_embedding

        if not isinstance(self.embedding, nn.Embedding):
            raise RnnlabError("pretrained_embeddings needs input_encoding: embedding (one-hot inputs have no vectors)")
        self.pretrained_coverage = init_embedding(self.embedding, path, vocab, self.hparams.pad_id)

    def load_encoder(self, path: str, vocab) -> None:
        """Initialise the embedding (by word) and the recurrent encoder (weight for weight) from a language model's
        checkpoint (``pretrained_encoder``; before training -- a resumed run's checkpoint then replaces them)."""
        from rnnlab.embeddings import align_embeddings, read_language_model

        lm, hp = read_language_model(path), self.hparams
        theirs = {k: lm["hparams"].get(k) for k in ("cell", "hidden_size", "num_layers", "bidirectional")}
        ours = {k: hp[k] for k in theirs}
        theirs["embedding_dim"], ours["embedding_dim"] = lm["embedding"].shape[1], hp.embedding_dim
        if theirs != ours or hp.input_encoding != "embedding":
            differ = ", ".join(f"{k}: {theirs[k]} (this model {ours[k]})" for k in ours if theirs[k] != ours[k])
            raise RnnlabError(
                f"the language model {path} does not fit this classifier's encoder ({differ or 'one-hot inputs'}): "
                f"give the classifier the language model's sizes"
            )
        self.encoder.load_state_dict(lm["encoder"])
        words = vocab.tokens()
        align_embeddings(words, lm["words"], lm["embedding"], self.embedding.weight, hp.pad_id)
        found = len(set(words[2:]) & set(lm["words"]))  # (<pad> and <unk> are in both)
        rank_zero_info(
            f"pretrained encoder {path}: recurrent weights loaded; {found} of {len(words) - 2} vocabulary words found "
            f"in its vocabulary"
        )

    # ------------------------------------------------- fine-tuning (ULMFiT)
    def lr_scale(self, name: str) -> float:
        """``discriminative_lr`` = d: the head (and pooling) learn at ``lr``, the encoder at ``lr / d``, the
        embedding at ``lr / d^2``."""
        d = self.hparams.discriminative_lr
        if name.startswith("embedding."):
            return 1 / d**2
        if name.startswith("encoder."):
            return 1 / d
        return 1.0

    def will_train(self, name: str, param: nn.Parameter) -> bool:
        """With ``gradual_unfreezing`` the encoder and embedding join the optimiser frozen and thaw later."""
        if self.hparams.gradual_unfreezing and name.startswith("encoder."):
            return True
        if self.hparams.gradual_unfreezing and name.startswith("embedding.") and not self.hparams.freeze_embeddings:
            return True
        return param.requires_grad

    def frozen(self) -> tuple[str, ...]:
        """Parameter prefixes that ``gradual_unfreezing`` (ULMFiT) keeps fixed in this epoch: epoch 0 trains the
        head alone, epoch 1 adds the encoder, epoch 2 on the embedding as well."""
        if not self.hparams.gradual_unfreezing:
            return ()
        epoch = self.current_epoch
        return ("encoder.",) * (epoch < 1) + ("embedding.",) * (epoch < 2)

    def on_train_epoch_start(self) -> None:
        """A frozen part gets no gradient in one process (its backward is skipped). Under DDP every parameter must
        keep taking part in the backward, so there :meth:`on_before_optimizer_step` drops their gradients instead;
        either way the optimiser leaves them alone."""
        if not self.hparams.gradual_unfreezing or self.trainer.world_size > 1:
            return
        frozen = self.frozen()
        self.encoder.requires_grad_("encoder." not in frozen)
        if isinstance(self.embedding, nn.Embedding):
            self.embedding.weight.requires_grad_("embedding." not in frozen and not self.hparams.freeze_embeddings)

    def on_before_optimizer_step(self, optimizer) -> None:
        frozen = self.frozen()
        if frozen:
            for name, p in self.named_parameters():
                if name.startswith(frozen):
                    p.grad = None

    def _step(self, batch: Batch, metrics: MetricCollection, stage: str) -> tuple[Tensor, Tensor]:
        weight = self.class_weights if stage == "train" else None
        if stage == "train" and self.experts:  # each on its own loss (fitted experts add none)
            logits = self.discriminate(batch.tokens, batch.lengths)
            loss = F.cross_entropy(logits.float(), batch.target, weight=weight)
            for expert in self.experts.values():
                extra = expert.loss(batch)
                if extra is not None:
                    loss = loss + extra
        else:
            logits = self(batch.tokens, batch.lengths)
            loss = F.cross_entropy(logits.float(), batch.target, weight=weight)
        metrics.update(logits.detach(), batch.target)
        on_step = stage == "train"
        self.log(
            f"{stage}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch),
            sync_dist=not on_step,
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=len(batch))
        return loss, logits

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        return self._step(batch, self.train_metrics, "train")[0]

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._step(batch, self.val_metrics, "val")

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self.val_acc_best(self.val_metrics["acc"].compute())
            self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=False)

    def test_step(self, batch: Batch, batch_idx: int) -> dict:
        _, logits = self._step(batch, self.test_metrics, "test")
        return {"preds": logits.argmax(-1), "target": batch.target}  # for the confusion-matrix callback

    LEGACY_PREFIXES = {
        "generative.": "experts.generative.lm.",
        "ngram.": "experts.ngram.lm.",
        "bag.": "experts.bag.bag.",
    }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Checkpoints written before the experts were configured as a list (``generative``, ``ngram_order``,
        ``bag`` flags) keep their weights under the old names: renamed here."""
        weights = checkpoint.setdefault("state_dict", {})
        legacy = checkpoint.pop("ngram", None)  # before the counts became buffers they were kept here
        if legacy is not None and legacy.get("tables") is not None and "ngram.event_keys" not in weights:
            weights.update({f"ngram.{k}": v for k, v in legacy["tables"].items()})
            weights["ngram._extra_state"] = {"order": legacy["order"], "discount": legacy["discount"]}
        for key in [k for k in weights if k.startswith(tuple(self.LEGACY_PREFIXES)) or k == "log_prior"]:
            value = weights.pop(key)
            if key == "log_prior":  # one prior then, shared by the generative experts
                for name, expert in self.experts.items():
                    if isinstance(expert, _WithPrior):
                        weights[f"experts.{name}.log_prior"] = value
                continue
            old = next(p for p in self.LEGACY_PREFIXES if key.startswith(p))
            weights[self.LEGACY_PREFIXES[old] + key[len(old) :]] = value
        for key, expert in self.experts.items():
            if isinstance(expert, NgramExpert) and f"experts.{key}.lm.event_keys" not in weights:
                raise RnnlabError(
                    "this checkpoint has no n-gram counts: it was not trained with an NgramExpert; "
                    "use the config it was trained with"
                )

    def predict_step(self, batch: Batch, batch_idx: int) -> dict:
        return {"index": batch.index, "probs": torch.softmax(self(batch.tokens, batch.lengths).float(), -1)}
