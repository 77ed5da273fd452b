"""Encoder-decoder with attention: the asynchronous many-to-many shape (translation).

The encoder (any cell, torch or handwritten, usually bidirectional) reads the whole source; a bridge turns its final
states into the decoder's initial state; the decoder writes the target from ``<bos>`` until ``<eos>``. At every
decoder step ``t`` (Luong et al. 2015)::

    h_t   = RNN([emb(y_{t-1}); a_{t-1}], h_{t-1})          a_{t-1}: the previous attentional vector (input feeding)
    c_t   = sum_s softmax_s(score(h_t, e_s)) e_s           e_s: encoder outputs, padding masked out
    a_t   = tanh(W_c [h_t; c_t])
    p(y_t | y_<t, x) = softmax(W_o a_t)

``score`` is ``additive`` (Bahdanau), ``general`` or ``dot`` (Luong); ``attention="none"`` replaces ``c_t`` by the
encoder's final states at every step (Cho et al. 2014), the baseline that attention must beat. Training is teacher
forced (``teacher_forcing`` < 1 feeds the model's own previous prediction instead, per sentence and step); without
input feeding and with full teacher forcing all steps run in one recurrent call.

Decoding: greedy, or batched beam search (``beam_size``, ``length_penalty`` alpha: hypotheses are ranked by
``log p / length^alpha``); ``beam_size=1`` is greedy. BLEU and chrF (sacrebleu, on detokenised output) are computed
over the whole validation/test split each epoch.
"""

from __future__ import annotations

import math
from typing import Literal, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import Tensor, nn

from rnnlab.contract import IGNORE_INDEX, Batch
from rnnlab.errors import RnnlabError
from rnnlab.metrics import translation_scores
from rnnlab.models.base import RnnlabModule
from rnnlab.nn.attention import Attention
from rnnlab.nn.recurrent import Recurrent, RecurrentSpec, State
from rnnlab.optim import OneCycle, OptimizerCallable, Schedule, adamw


def reorder_state(state: State, index: Tensor) -> State:
    """Select batch rows (dim 1) of a recurrent state (beam search bookkeeping)."""
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def length_normaliser(length: Tensor, alpha: float, kind: str = "power") -> Tensor:
    """``lp(length)`` that beam search divides a hypothesis' log-probability by: ``length^alpha`` (``power``) or
    GNMT's ``((5 + length) / 6)^alpha`` (``gnmt``, Wu et al. 2016); 1 for ``alpha = 0``."""
    length = length.float().clamp(min=1)
    if kind == "gnmt":
        return ((5 + length) / 6) ** alpha
    if kind != "power":
        raise RnnlabError(f"length_norm must be power or gnmt, got {kind!r}")
    return length**alpha


class EncoderDecoder(RnnlabModule):
    """The decoder side every encoder-decoder shares: target embedding, bridge, recurrent decoder, attention over
    the encoder's memory, output layer; teacher-forced training, greedy and beam decoding, BLEU/chrF per epoch,
    ``predict``. A subclass builds its encoder in ``__init__`` (then :meth:`build_decoder`) and implements
    :meth:`encode`: :class:`Seq2Seq` reads text, :class:`~rnnlab.models.captioner.ImageCaptioner` an image."""

    inference_hparams = ("beam_size", "val_beam_size", "length_penalty", "length_norm", "max_decode_len")

    def build_decoder(self, K: int) -> None:
        """The decoder side, for an encoder whose memory vectors have ``K`` features: the target embedding, the bridge
        from the encoder's summary to the decoder's initial state, the decoder, attention and the output layer
        (from ``self.hparams``; an encoder of another kind -- an image's CNN -- reuses it as it is)."""
        hp = self.hparams
        H, E, V, L = hp.hidden_size, hp.embedding_dim, hp.tgt_vocab_size, hp.decoder_layers
        if hp.attention not in ("additive", "general", "dot", "none"):
            raise RnnlabError(f"attention must be additive, general, dot or none, got {hp.attention!r}")
        self.tgt_embedding = nn.Embedding(V, E, padding_idx=hp.pad_id)
        self.bridge = nn.Linear(K, L * H)
        if hp.cell == "lstm":
            self.bridge_c = nn.Linear(K, L * H)
        self.decoder = Recurrent(
            E + (H if hp.input_feeding else 0), H, cell=hp.cell, impl=hp.impl, num_layers=L, dropout=hp.dropout
        )
        self.attention = None if hp.attention == "none" else Attention(hp.attention, H, K)
        self.combine = nn.Linear(H + K, H, bias=False)
        self.dropout = nn.Dropout(hp.dropout)
        if hp.tie_weights:
            self.out_proj = nn.Linear(H, E, bias=False) if H != E else nn.Identity()
            self.out = nn.Linear(E, V)
            self.out.weight = self.tgt_embedding.weight
        else:
            self.out_proj = nn.Identity()
            self.out = nn.Linear(H, V)
        self._outputs: list[tuple[int, str]] = []
        self._loss = [0.0, 0]
        self.translations: dict[str, list[tuple[int, str]]] = {}

    # ------------------------------------------------------------------ model
    def encode(self, src: Tensor, lengths: Tensor) -> tuple[dict, State]:
        """The source (``source(batch)``) -> the memory the decoder attends over (``enc [B, S, K]``, ``mask [B, S]``,
        ``keys`` prepared by the attention, a ``summary [B, K]``, ``lengths [B]``) and the decoder's initial
        state."""
        raise NotImplementedError

    def attend(self, out: Tensor, memory: dict) -> tuple[Tensor, Optional[Tensor]]:
        """Decoder outputs ``[B, T, H]`` -> attentional vectors ``[B, T, H]`` and attention weights ``[B, T, S]``."""
        if self.attention is None:
            context, weights = memory["summary"].unsqueeze(1).expand(-1, out.shape[1], -1), None
        else:
            context, weights = self.attention(out, memory["enc"], memory["mask"], memory["keys"])
        return torch.tanh(self.combine(torch.cat([out, context], -1))), weights

    def logits(self, attn_vec: Tensor) -> Tensor:
        return self.out(self.out_proj(self.dropout(attn_vec)))

    def decode_step(self, y_prev: Tensor, state: State, feed: Tensor, memory: dict):
        """One step: previous tokens ``[B]`` -> logits ``[B, V]``, new state, attentional vector, weights ``[B, S]``."""
        x = self.dropout(self.tgt_embedding(y_prev)).unsqueeze(1)
        if self.hparams.input_feeding:
            x = torch.cat([x, feed.unsqueeze(1).to(x.dtype)], -1)
        out, state = self.decoder(x, torch.ones_like(y_prev), state)
        attn_vec, weights = self.attend(out, memory)
        return (
            self.logits(attn_vec).squeeze(1),
            state,
            attn_vec.squeeze(1),
            (None if weights is None else weights.squeeze(1)),
        )

    def forward(
        self,
        src: Tensor,
        lengths: Tensor,
        tgt_in: Tensor,
        teacher_forcing: float = 1.0,
        encoded: Optional[tuple[dict, State]] = None,
        return_attention: bool = False,
    ):
        """Teacher-forced logits ``[B, T, V]`` for decoder inputs ``tgt_in [B, T]`` (``<bos> y_1 .. y_{T-1}``);
        ``encoded``: the result of :meth:`encode` for this source, when the caller has it already;
        ``return_attention``: also the attention weights ``[B, T, S]`` (None without attention)."""
        memory, state = encoded or self.encode(src, lengths)
        B, T = tgt_in.shape
        if not self.hparams.input_feeding and teacher_forcing >= 1.0:  # every step in one recurrent call
            x = self.dropout(self.tgt_embedding(tgt_in))
            out, _ = self.decoder(x, torch.full((B,), T, device=tgt_in.device), state)
            attn_vec, weights = self.attend(out, memory)
            return (self.logits(attn_vec), weights) if return_attention else self.logits(attn_vec)
        feed = memory["enc"].new_zeros(B, self.hparams.hidden_size)
        steps, maps, y = [], [], tgt_in[:, 0]
        for t in range(T):
            logits, state, feed, weights = self.decode_step(y, state, feed, memory)
            steps.append(logits)
            maps.append(weights)
            if t + 1 < T:
                y = tgt_in[:, t + 1]
                if teacher_forcing < 1.0:
                    own = logits.detach().argmax(-1)
                    gold = torch.rand(B, device=y.device) < teacher_forcing
                    y = torch.where(gold | (y == self.hparams.pad_id), y, own)
        logits = torch.stack(steps, 1)
        if not return_attention:
            return logits
        return logits, (None if maps[0] is None else torch.stack(maps, 1))

    # --------------------------------------------------------------- decoding
    def _limits(self, lengths: Tensor, max_len: Optional[int]) -> Tensor:
        cap = max_len or self.hparams.max_decode_len
        return torch.clamp(2 * lengths + 10, max=cap)

    def _banned(self, logp: Tensor) -> Tensor:
        hp = self.hparams
        return logp.index_fill(-1, torch.tensor([hp.pad_id, hp.bos_id], device=logp.device), float("-inf"))

    @torch.no_grad()
    def greedy(
        self,
        src: Tensor,
        lengths: Tensor,
        max_len: Optional[int] = None,
        return_attention: bool = False,
        encoded: Optional[tuple[dict, State]] = None,
    ):
        """Most likely token at each step -> ids ``[B, T']`` (``<eos>`` included, then padding); with
        ``return_attention`` also the weights ``[B, T', S]`` (None without attention)."""
        hp = self.hparams
        memory, state = encoded or self.encode(src, lengths)
        B = src.shape[0]
        limits = self._limits(memory["lengths"], max_len)
        feed = memory["enc"].new_zeros(B, hp.hidden_size)
        y = torch.full((B,), hp.bos_id, dtype=torch.long, device=src.device)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        out, maps = [], []
        for t in range(int(limits.max())):
            logits, state, feed, weights = self.decode_step(y, state, feed, memory)
            y = self._banned(logits.float()).argmax(-1).masked_fill(done, hp.pad_id)
            out.append(y)
            maps.append(weights)
            done |= (y == hp.eos_id) | (t + 1 >= limits)
            if bool(done.all()):
                break
        ids = torch.stack(out, 1)
        if not return_attention:
            return ids
        return ids, (None if maps[0] is None else torch.stack(maps, 1))

    @torch.no_grad()
    def attention_map(self, src: Tensor, lengths: Tensor, ids: Tensor) -> Optional[Tensor]:
        """Attention weights ``[B, T', S]`` of the decoder reading ``ids [B, T']`` (teacher-forced: e.g. a beam
        search's best hypotheses, which it reproduces step for step); None for a model without attention."""
        if self.attention is None:
            return None
        hp = self.hparams
        memory, state = self.encode(src, lengths)
        feed = memory["enc"].new_zeros(len(src), hp.hidden_size)
        y = torch.full((len(src),), hp.bos_id, dtype=torch.long, device=src.device)
        maps = []
        for t in range(ids.shape[1]):
            _, state, feed, weights = self.decode_step(y, state, feed, memory)
            maps.append(weights)
            y = ids[:, t].long()
        return torch.stack(maps, 1)

    @torch.no_grad()
    def beam_search(
        self,
        src: Tensor,
        lengths: Tensor,
        beam_size: Optional[int] = None,
        length_penalty: Optional[float] = None,
        max_len: Optional[int] = None,
        encoded: Optional[tuple[dict, State]] = None,
    ):
        """Batched beam search. Returns ``(ids [B, K, T'], scores [B, K])``: the ``K`` final hypotheses of each
        sentence sorted by normalised score ``log p / length^alpha`` (best first); ``ids`` end with ``<eos>`` (or at
        the length limit), then padding."""
        hp = self.hparams
        K = beam_size or hp.beam_size
        alpha = hp.length_penalty if length_penalty is None else length_penalty
        memory, state = encoded or self.encode(src, lengths)
        B = src.shape[0]
        device = src.device
        rows = torch.arange(B, device=device).repeat_interleave(K)  # beam row -> sentence
        memory = {k: v.index_select(0, rows) for k, v in memory.items() if v is not None} | (
            {"keys": None} if memory["keys"] is None else {}
        )
        state = reorder_state(state, rows)
        limits = self._limits(memory["lengths"], max_len)
        feed = memory["enc"].new_zeros(B * K, hp.hidden_size)
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # all beams start equal: keep one so the first step does not pick K copies
        y = torch.full((B * K,), hp.bos_id, dtype=torch.long, device=device)
        finished = torch.zeros(B * K, dtype=torch.bool, device=device)
        length = torch.zeros(B * K, device=device)
        history: list[Tensor] = []
        base = (torch.arange(B, device=device) * K).unsqueeze(1)
        for t in range(int(limits.max())):
            logits, state, feed, _ = self.decode_step(y, state, feed, memory)
            logp = self._banned(torch.log_softmax(logits.float(), -1))
            V = logp.shape[-1]
            # a finished hypothesis continues only with padding, at no cost
            logp = torch.where(finished.unsqueeze(1), torch.full_like(logp, float("-inf")), logp)
            logp[:, hp.pad_id] = torch.where(finished, 0.0, float("-inf"))
            top, idx = (scores.view(-1, 1) + logp).view(B, K * V).topk(K, dim=-1)
            sel = (base + idx // V).view(-1)
            y = (idx % V).view(-1)
            was_finished = finished.index_select(0, sel)
            history = [h.index_select(0, sel) for h in history] + [y]
            length = length.index_select(0, sel) + (~was_finished).float()
            finished = was_finished | (y == hp.eos_id) | (t + 1 >= limits)
            state, feed, scores = reorder_state(state, sel), feed.index_select(0, sel), top
            if bool(finished.all()):
                break
        ids = torch.stack(history, 1).view(B, K, -1)
        normed = scores / length_normaliser(length.view(B, K), alpha, hp.get("length_norm", "power"))
        order = normed.argsort(dim=1, descending=True)
        return ids.gather(1, order.unsqueeze(-1).expand_as(ids)), normed.gather(1, order)

    def translate(
        self, src: Tensor, lengths: Tensor, beam_size: int = 1, encoded: Optional[tuple[dict, State]] = None
    ) -> tuple[Tensor, Tensor]:
        """Best output ids ``[B, T']`` and their scores (normalised log-probabilities; greedy: 0)."""
        if beam_size <= 1:
            ids = self.greedy(src, lengths, encoded=encoded)
            return ids, torch.zeros(ids.shape[0], device=ids.device)
        ids, scores = self.beam_search(src, lengths, beam_size, encoded=encoded)
        return ids[:, 0], scores[:, 0]

    # --------------------------------------------------------------- Lightning
    def _split_target(self, target: Tensor) -> tuple[Tensor, Tensor]:
        """``<bos> y <eos>`` padded with -100 -> decoder inputs (padding -> pad id) and labels."""
        tgt_in = target[:, :-1].masked_fill(target[:, :-1] == IGNORE_INDEX, self.hparams.pad_id).long()
        return tgt_in, target[:, 1:].long()

    def source(self, batch: Batch) -> Tensor:
        """What the encoder reads from a batch: the source ids (an image captioner: the images)."""
        return batch.tokens.long()

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        tgt_in, labels = self._split_target(batch.target)
        logits = self(self.source(batch), batch.lengths, tgt_in, self.hparams.teacher_forcing)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1),
            labels.flatten(),
            ignore_index=IGNORE_INDEX,
            label_smoothing=self.hparams.label_smoothing,
        )
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=int((labels != IGNORE_INDEX).sum()),
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._outputs, self._loss = [], [0.0, 0]

    on_test_epoch_start = on_validation_epoch_start

    def evaluate(self, batch: Batch, stage: str) -> None:
        src = self.source(batch)
        tgt_in, labels = self._split_target(batch.target)
        encoded = self.encode(src, batch.lengths)  # once for the loss and the decoding (eval: no dropout)
        logits = self(src, batch.lengths, tgt_in, encoded=encoded)
        self._loss[0] += float(
            F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX, reduction="sum")
        )
        self._loss[1] += int((labels != IGNORE_INDEX).sum())
        beam = self.hparams.val_beam_size if stage == "val" else self.hparams.beam_size
        ids, _ = self.translate(src, batch.lengths, beam, encoded=encoded)
        decode = self.task.decode_target
        self._outputs.extend((int(i), decode(row.tolist())) for i, row in zip(batch.index, ids.cpu()))

    def epoch_end(self, stage: str) -> None:
        outputs, loss = self._outputs, self._loss
        if dist.is_available() and dist.is_initialized() and self.trainer.world_size > 1:
            gathered: list = [None] * self.trainer.world_size
            dist.all_gather_object(gathered, (outputs, loss))
            outputs = [o for part, _ in gathered for o in part]
            loss = [sum(part[1][0] for part in gathered), sum(part[1][1] for part in gathered)]
        refs = self.task.references("val" if stage == "val" else "test")
        outputs = sorted(dict(outputs).items())
        hyps = [h for _, h in outputs]
        chosen = [refs[i] for i, _ in outputs]
        streams = [[r[k] if k < len(r) else None for r in chosen] for k in range(max(map(len, chosen), default=1))]
        scores = translation_scores(hyps, streams, self.task.target_lang) if hyps else {}
        bleu, chrf = scores.get("bleu", 0.0), scores.get("chrf", 0.0)
        self.bleu_signature = {k: scores[k] for k in ("signature", "lc_tok") if k in scores}
        nll = loss[0] / max(loss[1], 1)
        self.translations[stage] = outputs
        sync = False  # every rank already holds the gathered values
        self.log(f"{stage}/loss", nll, sync_dist=sync)
        self.log(f"{stage}/ppl", math.exp(min(nll, 50.0)), sync_dist=sync)
        self.log(f"{stage}/bleu", bleu, prog_bar=True, sync_dist=sync)
        self.log(f"{stage}/chrf", chrf, sync_dist=sync)
        self.log(f"{stage}/bleu_lc_tok", scores.get("bleu_lc_tok", 0.0), sync_dist=sync)

    def predict_step(self, batch: Batch, batch_idx: int) -> dict:
        ids, scores = self.translate(self.source(batch), batch.lengths, self.hparams.beam_size)
        return {"index": batch.index, "generated": ids, "score": scores}


class Seq2Seq(EncoderDecoder):
    """See the module docstring.

    Args:
        vocab_size, tgt_vocab_size: source and target vocabularies (linked from the DataModule).
        pad_id, bos_id, eos_id: special ids of the target vocabulary.
        embedding_dim: size of the embeddings.
        rnn: the encoder (:class:`~rnnlab.nn.recurrent.RecurrentSpec`: ``num_layers`` its layers, ``bidirectional``);
            the decoder has the same ``cell``, ``impl`` and ``hidden_size`` (per direction of the encoder).
        decoder_layers: the decoder's stacked layers.
        attention: ``additive``, ``general``, ``dot`` or ``none``.
        input_feeding: feed the previous attentional vector into the decoder.
        dropout: on embeddings' outputs, encoder outputs, between layers and before the output layer.
        teacher_forcing: probability of feeding the gold previous token in training (1: always).
        tie_weights: the output layer shares the target embedding matrix.
        label_smoothing: of the training loss (validation loss and perplexity are without it).
        beam_size: beam for test and predict (1: greedy).
        val_beam_size: beam for the BLEU of each validation epoch (1: greedy, fast).
        length_penalty: alpha of the length normalisation ``log p / lp(length)`` (0: none).
        length_norm: ``lp``: ``power`` (``length^alpha``) or ``gnmt`` (``((5 + length) / 6)^alpha``, Wu et al. 2016).
        max_decode_len: longest output; each sentence also stops at ``2 * source length + 10``.
        lr, weight_decay, optimizer, scheduler, warmup: see :class:`~rnnlab.models.base.RnnlabModule`.
    """

    def __init__(
        self,
        vocab_size: int,
        tgt_vocab_size: int,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
        embedding_dim: int = 256,
        rnn: RecurrentSpec = RecurrentSpec("gru", "torch", 256, 1, True, packed=False),
        decoder_layers: int = 1,
        attention: Literal["additive", "general", "dot", "none"] = "additive",
        input_feeding: bool = True,
        dropout: float = 0.3,
        teacher_forcing: float = 1.0,
        tie_weights: bool = False,
        label_smoothing: float = 0.1,
        beam_size: int = 5,
        val_beam_size: int = 1,
        length_penalty: float = 1.0,
        length_norm: Literal["power", "gnmt"] = "power",
        max_decode_len: int = 100,
        optimizer: OptimizerCallable = adamw(2e-3),
        scheduler: Schedule = lazy_instance(OneCycle, warmup=0.05),
    ) -> None:
        super().__init__()
        rnn = self.init_parts(rnn, optimizer, scheduler)
        self.hparams["encoder_layers"] = rnn.num_layers
        hidden_size, encoder_layers, cell, impl, bidirectional = (
            rnn.hidden_size,
            rnn.num_layers,
            rnn.cell,
            rnn.impl,
            rnn.bidirectional,
        )
        if not 0.0 <= teacher_forcing <= 1.0:
            raise RnnlabError(f"teacher_forcing is a probability in [0, 1], got {teacher_forcing}")
        if beam_size < 1 or val_beam_size < 1:
            raise RnnlabError(f"beam sizes must be >= 1, got beam_size={beam_size}, val_beam_size={val_beam_size}")
        H, E = hidden_size, embedding_dim
        dirs = 2 if bidirectional else 1
        self.src_embedding = nn.Embedding(vocab_size, E, padding_idx=pad_id)
        self.encoder = Recurrent(
            E,
            H,
            cell=cell,
            impl=impl,
            num_layers=encoder_layers,
            bidirectional=bidirectional,
            dropout=dropout,
            packed=rnn.packed,
        )
        self.build_decoder(H * dirs)

    def encode(self, src: Tensor, lengths: Tensor) -> tuple[dict, State]:
        """Source ``[B, S]`` -> memory (encoder outputs, mask, prepared keys, summary) and the decoder's state."""
        hp = self.hparams
        B, S = src.shape
        lengths = lengths.to(src.device)
        enc, final = self.encoder(self.dropout(self.src_embedding(src)), lengths)
        dirs = self.encoder.num_directions
        summary_of = lambda h: h[-dirs:].transpose(0, 1).reshape(B, -1)  # noqa: E731  top layer, both directions
        h_final = final[0] if isinstance(final, tuple) else final
        summary = summary_of(h_final)
        h0 = torch.tanh(self.bridge(summary)).view(B, hp.decoder_layers, -1).transpose(0, 1).contiguous()
        state: State = h0
        if isinstance(final, tuple):
            c0 = self.bridge_c(summary_of(final[1])).view(B, hp.decoder_layers, -1).transpose(0, 1).contiguous()
            state = (h0, c0)
        enc = self.dropout(enc)
        mask = torch.arange(S, device=src.device).unsqueeze(0) < lengths.unsqueeze(1)
        memory = {
            "enc": enc,
            "mask": mask,
            "summary": summary,
            "lengths": lengths,
            "keys": self.attention.prepare(enc) if self.attention is not None else None,
        }
        return memory, state
