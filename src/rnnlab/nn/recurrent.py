"""``Recurrent``: one driver for every recurrent layer in rnnlab.

``Recurrent(cell, impl, input_size, hidden_size, num_layers, bidirectional, dropout)`` takes a right-padded batch
``x [B, T, D]`` with ``lengths [B]`` and returns ``(outputs [B, T, H * dirs], final_state)``, where ``final_state``
is ``h_n [L * dirs, B, H]`` (``(h_n, c_n)`` for LSTM) in torch's layout, taken at each sequence's *true* last step.
The result is exactly what ``nn.LSTM`` on a ``PackedSequence`` gives, but runs on padded tensors, which on a CPU is
~4x faster than packing (packing stays available with ``packed=True``: it is the right choice on cuDNN).

How padding is kept out, without packing (``impl="torch"``):

* forward direction: outputs are causal, so steps ``t < len`` never see padding; the final ``h`` is gathered at
  ``len - 1``. For LSTM the final ``c`` is not an output, so the input gets one extra indicator column (1 on
  padding) whose weights drive the input gate to exactly 0 and the forget gate to exactly 1 (pre-activations of
  -/+ 1e4 saturate the sigmoid in fp32/bf16/fp16): ``c`` then passes through padding unchanged.
* backward direction: it must start at each sequence's true end, so it runs the same way on each sequence
  reversed *within its length* (:func:`reverse_padded`), and its outputs are reversed back.

Parameters carry torch's names and layouts (``weight_ih_l0``, ``weight_hh_l0_reverse``, ...; gates LSTM i,f,g,o,
GRU r,z,n), so a ``state_dict`` loads into ``nn.LSTM`` and back, and into the handwritten implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Literal, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.errors import RnnlabError
from rnnlab.nn.cells import run_layer
from rnnlab.nn.functional import last_step, reverse_padded

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
_SATURATE = 1.0e4  # sigmoid(+-1e4) is exactly 1 / 0 in fp32, bf16 and fp16

State = Union[Tensor, tuple[Tensor, Tensor]]


@dataclass
class RecurrentSpec:
    """A model's recurrent layers, as a config writes them (``rnn:`` in a model's ``init_args``)::

        rnn: {cell: gru, hidden_size: 256, num_layers: 2, bidirectional: true, impl: handwritten}

    or ``--model.init_args.rnn.hidden_size=256``. A field left None takes the model's own default (the ``rnn``
    default of its signature), so ``RecurrentSpec(hidden_size=8)`` changes the size alone. ``packed``: None runs
    torch's packed-sequence kernels on CUDA and the padded driver on the CPU; True or False forces one."""

    cell: Optional[Literal["lstm", "gru", "rnn"]] = None
    impl: Optional[Literal["torch", "handwritten"]] = None
    hidden_size: Optional[int] = None
    num_layers: Optional[int] = None
    bidirectional: Optional[bool] = None
    packed: Optional[bool] = None

    def over(self, default: "RecurrentSpec") -> "RecurrentSpec":
        """This spec with its None fields taken from ``default``."""
        return RecurrentSpec(
            **{
                f.name: getattr(default, f.name) if getattr(self, f.name) is None else getattr(self, f.name)
                for f in fields(self)
            }
        )

    def settings(self) -> dict:
        """The fields as plain values (what a checkpoint's hyperparameters keep)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Recurrent(nn.Module):
    """Stacked, optionally bidirectional RNN/LSTM/GRU over padded batches with lengths (see module docstring).

    Args:
        input_size: features per step of ``x``.
        hidden_size: units per direction.
        cell: ``"lstm"``, ``"gru"`` or ``"rnn"``.
        impl: ``"torch"`` (torch's fused kernels) or ``"handwritten"`` (``rnnlab.nn.cells``, the equations in Python).
        num_layers, bidirectional, dropout: as in ``nn.LSTM`` (dropout between layers, training only).
        nonlinearity: ``"tanh"``, ``"relu"`` or ``"identity"`` (a linear RNN; torch has no kernel for it, so it
            always runs the handwritten cell) for ``cell="rnn"``.
        packed: run torch's kernels on a ``PackedSequence`` instead of padded tensors (same result); None: packed
            when the input is on a CUDA device (cuDNN's packed kernels) and ``impl="torch"``, padded otherwise.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        cell: Literal["lstm", "gru", "rnn"] = "lstm",
        impl: Literal["torch", "handwritten"] = "torch",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: Literal["tanh", "relu", "identity"] = "tanh",
        packed: Optional[bool] = False,
    ) -> None:
        super().__init__()
        if cell not in GATES:
            raise RnnlabError(f"cell must be one of {sorted(GATES)}, got {cell!r}")
        if impl not in ("torch", "handwritten"):
            raise RnnlabError(f"impl must be 'torch' or 'handwritten', got {impl!r}")
        if nonlinearity not in ("tanh", "relu", "identity"):
            raise RnnlabError(f"nonlinearity must be 'tanh', 'relu' or 'identity', got {nonlinearity!r}")
        if nonlinearity == "identity":
            if cell != "rnn" or packed:
                raise RnnlabError("nonlinearity='identity' is for cell='rnn' without packing")
            impl, packed = "handwritten", False
        if packed and impl != "torch":
            raise RnnlabError("packed=True runs torch's kernels: use it with impl='torch'")
        if not 0.0 <= dropout < 1.0:
            raise RnnlabError(f"dropout must be in [0, 1), got {dropout}")
        self.input_size, self.hidden_size = input_size, hidden_size
        self.cell, self.impl, self.nonlinearity, self.packed = cell, impl, nonlinearity, packed
        self.num_layers, self.bidirectional, self.dropout = num_layers, bidirectional, dropout
        self.num_directions = 2 if bidirectional else 1
        G = GATES[cell] * hidden_size
        for layer in range(num_layers):
            in_size = input_size if layer == 0 else hidden_size * self.num_directions
            for sfx in self._suffixes(layer):
                self.register_parameter(f"weight_ih{sfx}", nn.Parameter(torch.empty(G, in_size)))
                self.register_parameter(f"weight_hh{sfx}", nn.Parameter(torch.empty(G, hidden_size)))
                self.register_parameter(f"bias_ih{sfx}", nn.Parameter(torch.empty(G)))
                self.register_parameter(f"bias_hh{sfx}", nn.Parameter(torch.empty(G)))
        self.reset_parameters()

    def _suffixes(self, layer: int) -> list[str]:
        return [f"_l{layer}", f"_l{layer}_reverse"][: self.num_directions]

    def reset_parameters(self) -> None:
        """torch's initialisation: U(-1/sqrt(H), 1/sqrt(H)) for every weight and bias."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    @property
    def output_size(self) -> int:
        return self.hidden_size * self.num_directions

    def layer_weights(self, layer: int, sfx: str) -> list[Tensor]:
        s = f"_l{layer}{sfx}"
        return [getattr(self, f"{n}{s}") for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]

    def extra_repr(self) -> str:
        s = f"{self.cell}, impl={self.impl}, {self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.packed is not False:
            s += f", packed={'auto' if self.packed is None else True}"
        return s

    # ------------------------------------------------------------------ forward
    def forward(self, x: Tensor, lengths: Tensor, state: Optional[State] = None) -> tuple[Tensor, State]:
        """``x [B, T, D]``, ``lengths [B]`` (1 <= len <= T), ``state`` as torch's (``[L*dirs, B, H]``) or None."""
        B, T, _ = x.shape
        if lengths.dim() != 1 or lengths.shape[0] != B:
            raise ValueError(f"lengths must be [B]={B}, got {tuple(lengths.shape)}")
        lengths = lengths.to(device=x.device, dtype=torch.long)
        h0, c0 = self._initial_state(state, B, x)
        if self.packed or (self.packed is None and x.is_cuda and self.impl == "torch"):
            return self._forward_packed(x, lengths, h0, c0)
        hs, cs = [], []
        out = x
        for layer in range(self.num_layers):
            if layer > 0 and self.dropout and self.training:
                out = F.dropout(out, self.dropout, training=True)
            sl = slice(layer * self.num_directions, (layer + 1) * self.num_directions)
            run = self._layer_torch if self.impl == "torch" else self._layer_handwritten
            out, h, c = run(layer, out, lengths, h0[sl], None if c0 is None else c0[sl])
            hs.append(h)
            cs.append(c)
        mask = (torch.arange(T, device=x.device).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
        out = out * mask.to(out.dtype)
        h_n = torch.cat(hs, 0)
        return out, ((h_n, torch.cat(cs, 0)) if self.cell == "lstm" else h_n)

    def _initial_state(self, state: Optional[State], B: int, x: Tensor) -> tuple[Tensor, Optional[Tensor]]:
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        if state is None:
            h0 = x.new_zeros(shape)
            return h0, (x.new_zeros(shape) if self.cell == "lstm" else None)
        if self.cell == "lstm":
            if not (isinstance(state, (tuple, list)) and len(state) == 2):
                raise ValueError("an LSTM state is a tuple (h0, c0)")
            h0, c0 = state
        else:
            h0, c0 = state, None
        for t in (h0,) if c0 is None else (h0, c0):
            if tuple(t.shape) != shape:
                raise ValueError(f"initial state must be {shape}, got {tuple(t.shape)}")
        return h0.to(x.dtype), (None if c0 is None else c0.to(x.dtype))

    def _kernel(
        self,
        inp: Tensor,
        h0: Tensor,
        c0: Optional[Tensor],
        weights: list[Tensor],
        bidirectional: bool,
        num_layers: int = 1,
        batch_sizes: Optional[Tensor] = None,
    ):
        """Call torch's fused kernel; returns (output, h_n, c_n or None).

        On a CPU whose oneDNN has no bfloat16/float16 LSTM primitive (no AVX512-BF16/AMX, e.g. many AMD EPYCs) the
        kernel raises under autocast; that layer then runs in float32 (autocast off) and the rest stays mixed."""
        try:
            return self._kernel_call(inp, h0, c0, weights, bidirectional, num_layers, batch_sizes)
        except RuntimeError as err:
            if inp.device.type != "cpu" or "primitive descriptor" not in str(err):
                raise
        with torch.autocast("cpu", enabled=False):
            return self._kernel_call(
                inp.float(),
                h0.float(),
                None if c0 is None else c0.float(),
                [w.float() for w in weights],
                bidirectional,
                num_layers,
                batch_sizes,
            )

    def _kernel_call(
        self,
        inp: Tensor,
        h0: Tensor,
        c0: Optional[Tensor],
        weights: list[Tensor],
        bidirectional: bool,
        num_layers: int,
        batch_sizes: Optional[Tensor],
    ):
        dropout = self.dropout if num_layers > 1 else 0.0
        if batch_sizes is None:
            args = (weights, True, num_layers, dropout, self.training, bidirectional, True)
            if self.cell == "lstm":
                return torch.lstm(inp, (h0, c0), *args)
            fn = (
                torch.gru if self.cell == "gru" else (torch.rnn_tanh if self.nonlinearity == "tanh" else torch.rnn_relu)
            )
            out, h = fn(inp, h0, *args)
            return out, h, None
        args = (weights, True, num_layers, dropout, self.training, bidirectional)
        if self.cell == "lstm":
            return torch.lstm(inp, batch_sizes, (h0, c0), *args)
        fn = torch.gru if self.cell == "gru" else (torch.rnn_tanh if self.nonlinearity == "tanh" else torch.rnn_relu)
        out, h = fn(inp, batch_sizes, h0, *args)
        return out, h, None

    def _layer_torch(self, layer: int, x: Tensor, lengths: Tensor, h0: Tensor, c0: Optional[Tensor]):
        """One layer, each direction one call of torch's fused unidirectional kernel (two calls beat one fused
        bidirectional call on a doubled input on CPU). Returns (outputs [B,T,H*dirs], h_n [dirs,B,H], c_n)."""
        T = x.shape[1]
        H = self.hidden_size
        lstm = self.cell == "lstm"
        if lstm:  # 1 on padding steps: drives the input gate to 0 and the forget gate to 1, so c passes unchanged
            on_pad = (torch.arange(T, device=x.device).unsqueeze(0) >= lengths.unsqueeze(1)).unsqueeze(-1)
            on_pad = on_pad.to(x.dtype)
        outs, hs, cs = [], [], []
        for d, sfx in enumerate(["", "_reverse"][: self.num_directions]):
            w_ih, w_hh, b_ih, b_hh = self.layer_weights(layer, sfx)
            inp = x if d == 0 else reverse_padded(x, lengths)
            if lstm:
                carry = w_ih.new_zeros(4 * H, 1)
                carry[:H] = -_SATURATE
                carry[H : 2 * H] = _SATURATE
                inp = torch.cat([inp, on_pad], -1)
                w_ih = torch.cat([w_ih, carry], 1)
            c_in = None if c0 is None else c0[d : d + 1]
            out, _, c_n = self._kernel(inp, h0[d : d + 1], c_in, [w_ih, w_hh, b_ih, b_hh], bidirectional=False)
            hs.append(last_step(out, lengths))
            cs.append(c_n)
            outs.append(out if d == 0 else reverse_padded(out, lengths))
        h_n = torch.stack(hs, 0)
        out = outs[0] if len(outs) == 1 else torch.cat(outs, -1)
        return out, h_n, (torch.cat(cs, 0) if lstm else None)

    def _layer_handwritten(self, layer: int, x: Tensor, lengths: Tensor, h0: Tensor, c0: Optional[Tensor]):

        weights = [self.layer_weights(layer, sfx) for sfx in ["", "_reverse"][: self.num_directions]]
        return run_layer(self.cell, x, lengths, h0, c0, weights, self.nonlinearity)

    def _forward_packed(self, x: Tensor, lengths: Tensor, h0: Tensor, c0: Optional[Tensor]):
        T = x.shape[1]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        order = packed.sorted_indices
        weights = [
            w
            for layer in range(self.num_layers)
            for sfx in ["", "_reverse"][: self.num_directions]
            for w in self.layer_weights(layer, sfx)
        ]
        data, h_n, c_n = self._kernel(
            packed.data,
            h0.index_select(1, order),
            None if c0 is None else c0.index_select(1, order),
            weights,
            self.bidirectional,
            self.num_layers,
            packed.batch_sizes,
        )
        out, _ = nn.utils.rnn.pad_packed_sequence(
            nn.utils.rnn.PackedSequence(data, packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices),
            batch_first=True,
            total_length=T,
        )
        unsort = packed.unsorted_indices
        h_n = h_n.index_select(1, unsort)
        return out, ((h_n, c_n.index_select(1, unsort)) if self.cell == "lstm" else h_n)
