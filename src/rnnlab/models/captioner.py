"""Image captioning: a CNN reads the image into a grid of feature vectors, the translation model's decoder writes
the caption while attending over the grid ("Show, Attend and Tell", Xu et al. 2015).

:class:`ImageCaptioner` is an :class:`~rnnlab.models.seq2seq.EncoderDecoder`, as the translation model
:class:`~rnnlab.models.seq2seq.Seq2Seq` is, with a CNN for its encoder: the decoder, the attention, teacher forcing,
greedy and beam decoding, BLEU/chrF per epoch and ``predict`` are the code the translation model runs. Only :meth:`encode` differs: the image -> a grid ``[B, G, K]`` of ``G = h x w`` locations (the
memory attention reads; no location is padding), and a global image vector (a linear map of the whole grid, as in
"Show and Tell") that starts the decoder and, with ``attention="none"``, is its only view of the image.

``doubly_stochastic`` = lambda adds Xu et al.'s regulariser ``lambda * sum_locations (1 - sum_t alpha_t,loc)^2``:
it pushes the decoder to look at every part of the image over the whole caption. ``encoder="resnet18"`` (or
``resnet34``/``resnet50``) takes a torchvision backbone instead of the small CNN, its last convolutional grid as the
memory; ``backbone_weights`` is a local file of its ImageNet weights (nothing is ever downloaded).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F
from jsonargparse import lazy_instance
from torch import Tensor, nn

from rnnlab.contract import IGNORE_INDEX, Batch
from rnnlab.errors import RnnlabError, require
from rnnlab.models.seq2seq import EncoderDecoder
from rnnlab.nn.recurrent import RecurrentSpec, State
from rnnlab.optim import OneCycle, OptimizerCallable, Schedule, adamw


def small_cnn(in_channels: int, channels: tuple[int, ...]) -> nn.Sequential:
    """3x3 convolutions with ReLU and batch norm, each block but the first halving the resolution."""
    layers: list[nn.Module] = []
    previous = in_channels
    for k, width in enumerate(channels):
        layers += [nn.Conv2d(previous, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        if k > 0:
            layers.append(nn.MaxPool2d(2))
        previous = width
    return nn.Sequential(*layers)


def backbone(name: str, weights: Optional[str]) -> tuple[nn.Module, int]:
    """A torchvision ResNet up to its last convolutional block, and its channels (optional; never downloads)."""
    models = require("torchvision.models", "caption", "a torchvision image encoder")
    if name not in ("resnet18", "resnet34", "resnet50"):
        raise RnnlabError(f"encoder must be cnn, resnet18, resnet34 or resnet50, got {name!r}")
    net = getattr(models, name)(weights=None)
    if weights:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return nn.Sequential(*list(net.children())[:-2]), net.fc.in_features


class ImageCaptioner(EncoderDecoder):
    """See the module docstring. ``tgt_vocab_size``, ``in_channels`` and ``image_size`` are linked from the data.

    Args:
        encoder: ``cnn`` (``channels``, from torch.nn layers) or a torchvision ResNet name.
        channels: widths of the small CNN's blocks (each after the first halves the resolution).
        backbone_weights: a local ``.pth`` of the ResNet's weights (ImageNet), or None (trained from scratch).
        doubly_stochastic: weight of the attention regulariser (0: off).
        The rest: as :class:`~rnnlab.models.seq2seq.Seq2Seq`'s.
    """

    def __init__(
        self,
        tgt_vocab_size: int,
        in_channels: int = 3,
        image_size: int = 128,
        pad_id: int = 0,
        bos_id: int = 2,
        eos_id: int = 3,
        encoder: str = "cnn",
        channels: tuple[int, ...] = (32, 64, 128, 128),
        backbone_weights: Optional[str] = None,
        embedding_dim: int = 64,
        rnn: RecurrentSpec = RecurrentSpec("lstm", "torch", 256, 1, False),
        attention: Literal["additive", "general", "dot", "none"] = "additive",
        input_feeding: bool = True,
        dropout: float = 0.3,
        doubly_stochastic: float = 0.0,
        teacher_forcing: float = 1.0,
        tie_weights: bool = False,
        label_smoothing: float = 0.0,
        beam_size: int = 5,
        val_beam_size: int = 1,
        length_penalty: float = 0.0,
        length_norm: Literal["power", "gnmt"] = "power",
        max_decode_len: int = 40,
        optimizer: OptimizerCallable = adamw(2e-3),
        scheduler: Schedule = lazy_instance(OneCycle, warmup=0.05),
    ) -> None:
        super().__init__()
        rnn = self.init_parts(rnn, optimizer, scheduler)
        self.hparams["decoder_layers"] = rnn.num_layers  # the captioner's recurrent layers are its decoder's
        if rnn.bidirectional:
            raise RnnlabError(
                "the captioner's rnn is its decoder, which reads left to right: set rnn.bidirectional false"
            )
        if beam_size < 1 or val_beam_size < 1:
            raise RnnlabError(f"beam sizes must be >= 1, got beam_size={beam_size}, val_beam_size={val_beam_size}")
        if encoder == "cnn":
            self.cnn, K = small_cnn(in_channels, tuple(channels)), channels[-1]
        else:
            self.cnn, K = backbone(encoder, backbone_weights)
        with torch.no_grad():
            grid = self.cnn.eval()(torch.zeros(1, in_channels, image_size, image_size))
        self.cnn.train()
        self.grid_size = grid.shape[-2] * grid.shape[-1]
        self.global_feature = nn.Linear(self.grid_size * K, K)
        self.build_decoder(K)

    def source(self, batch: Batch) -> Tensor:
        if batch.images is None:
            raise RnnlabError("an image captioner reads images: use a captioning DataModule (rnnlab.data.captions)")
        return batch.images

    def encode(self, src: Tensor, lengths: Optional[Tensor] = None) -> tuple[dict, State]:
        """Images ``[B, C, H, W]`` -> memory (the grid ``[B, G, K]``, an all-true mask, the prepared keys, the global
        vector) and the decoder's initial state."""
        hp = self.hparams
        grid = self.cnn(src.float()).flatten(2).transpose(1, 2)  # [B, G, K]
        B, G, _ = grid.shape
        summary = torch.tanh(self.global_feature(grid.flatten(1)))
        h0 = torch.tanh(self.bridge(summary)).view(B, hp.decoder_layers, -1).transpose(0, 1).contiguous()
        state: State = h0
        if hp.cell == "lstm":
            state = (h0, self.bridge_c(summary).view(B, hp.decoder_layers, -1).transpose(0, 1).contiguous())
        enc = self.dropout(grid)
        memory = {
            "enc": enc,
            "mask": torch.ones(B, G, dtype=torch.bool, device=src.device),
            "summary": summary,
            "lengths": torch.full((B,), G, dtype=torch.long, device=src.device),
            "keys": self.attention.prepare(enc) if self.attention is not None else None,
        }
        return memory, state

    def _limits(self, lengths: Tensor, max_len: Optional[int]) -> Tensor:
        """Every caption may run to ``max_decode_len`` (a grid's size says nothing of a caption's length)."""
        return torch.full_like(lengths, max_len or self.hparams.max_decode_len)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        hp = self.hparams
        tgt_in, labels = self._split_target(batch.target)
        logits, weights = self(self.source(batch), batch.lengths, tgt_in, hp.teacher_forcing, return_attention=True)
        loss = F.cross_entropy(
            logits.float().flatten(0, 1),
            labels.flatten(),
            ignore_index=IGNORE_INDEX,
            label_smoothing=hp.label_smoothing,
        )
        if hp.doubly_stochastic > 0 and weights is not None:
            steps = (labels != IGNORE_INDEX).unsqueeze(-1).to(weights.dtype)  # the caption's steps, not its padding
            coverage = (weights * steps).sum(1)  # [B, G]: attention each location received over the caption
            loss = loss + hp.doubly_stochastic * ((1 - coverage) ** 2).sum(1).mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(batch))
        return loss

    def epoch_end(self, stage: str) -> None:
        """BLEU and chrF as the translation model logs them, and the exact-match rate: the share of images whose
        caption equals one of its references word for word."""
        super().epoch_end(stage)
        outputs = self.translations.get(stage, [])
        refs = self.task.references("val" if stage == "val" else "test")
        exact = sum(hyp in refs[i] for i, hyp in outputs) / max(len(outputs), 1)
        self.log(f"{stage}/exact", 100.0 * exact)
