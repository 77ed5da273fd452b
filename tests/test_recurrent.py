"""The recurrent driver: padded == packed == torch's nn.RNN/LSTM/GRU, padding never leaks, gradients agree."""

import pytest
import torch
from torch import nn

from rnnlab.nn.recurrent import Recurrent, reverse_padded

CELLS = ["lstm", "gru", "rnn"]


def flat_state(state):
    return torch.cat(state) if isinstance(state, tuple) else state


def make_batch(B=5, T=11, D=6, seed=0, dtype=torch.double):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, T, D, generator=g, dtype=dtype)
    lengths = torch.tensor([T, 3, 1, 7, T - 1][:B])
    return x, lengths


def torch_reference(cell, layers, bi, state_dict, x, lengths, h0=None):
    ref = getattr(nn, cell.upper())(x.shape[-1], 8, num_layers=layers, bidirectional=bi, batch_first=True)
    ref = ref.to(x.dtype)
    ref.load_state_dict(state_dict)
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    out, state = ref(packed, h0)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
    return out, state


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
def test_padded_equals_packed_equals_torch_outputs_states_and_gradients(cell, bi, layers):
    torch.manual_seed(0)
    x, lengths = make_batch()
    padded = Recurrent(6, 8, cell=cell, num_layers=layers, bidirectional=bi).double()
    packed = Recurrent(6, 8, cell=cell, num_layers=layers, bidirectional=bi, packed=True).double()
    packed.load_state_dict(padded.state_dict())
    results = []
    for module in (padded, packed):
        xi = x.clone().requires_grad_(True)
        out, state = module(xi, lengths)
        (out.pow(2).sum() + flat_state(state).sum()).backward()
        results.append((out, flat_state(state), xi.grad, [p.grad for p in module.parameters()]))
    (o1, s1, gx1, gp1), (o2, s2, gx2, gp2) = results
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=0)
    torch.testing.assert_close(s1, s2, atol=1e-5, rtol=0)
    torch.testing.assert_close(gx1, gx2, atol=1e-5, rtol=0)
    for a, b in zip(gp1, gp2):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    ref_out, ref_state = torch_reference(cell, layers, bi, padded.state_dict(), x, lengths)
    torch.testing.assert_close(o1, ref_out, atol=1e-5, rtol=0)
    torch.testing.assert_close(s1, flat_state(ref_state), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
def test_initial_state_is_used_like_torch(cell):
    torch.manual_seed(1)
    x, lengths = make_batch()
    r = Recurrent(6, 8, cell=cell, num_layers=2, bidirectional=True).double()
    h0 = torch.randn(4, 5, 8, dtype=torch.double)
    state = (h0, torch.randn_like(h0)) if cell == "lstm" else h0
    out, final = r(x, lengths, state)
    ref_out, ref_final = torch_reference(cell, 2, True, r.state_dict(), x, lengths, state)
    torch.testing.assert_close(out, ref_out, atol=1e-6, rtol=0)
    torch.testing.assert_close(flat_state(final), flat_state(ref_final), atol=1e-6, rtol=0)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("packed", [False, True])
def test_padding_never_leaks(cell, packed):
    torch.manual_seed(2)
    x, lengths = make_batch()
    r = Recurrent(6, 8, cell=cell, bidirectional=True, num_layers=2, packed=packed).double()
    garbage = x.clone()
    pad = torch.arange(x.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
    garbage[pad] = 1e3 * torch.randn_like(garbage[pad])
    o1, s1 = r(x, lengths)
    o2, s2 = r(garbage, lengths)
    torch.testing.assert_close(o1, o2, atol=1e-9, rtol=0)
    torch.testing.assert_close(flat_state(s1), flat_state(s2), atol=1e-9, rtol=0)
    assert o1[pad].abs().max() == 0, "outputs on padding are zero"


@pytest.mark.parametrize("impl", ["torch", "handwritten"])
def test_padding_never_leaks_under_bf16_autocast(impl):
    """The padded driver's LSTM trick (pre-activations of -/+1e4 on padding: input gate exactly 0, forget gate
    exactly 1) stays exact in bf16: garbage on padding changes no output and no final state, bit for bit."""
    torch.manual_seed(4)
    x, lengths = make_batch(dtype=torch.float32)
    r = Recurrent(6, 8, cell="lstm", bidirectional=True, num_layers=2, impl=impl)
    garbage = x.clone()
    pad = torch.arange(x.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
    garbage[pad] = 1e3 * torch.randn_like(garbage[pad])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        o1, s1 = r(x, lengths)
        o2, s2 = r(garbage, lengths)
    assert torch.equal(o1, o2) and torch.equal(flat_state(s1), flat_state(s2))


def test_float32_padded_matches_packed():
    torch.manual_seed(3)
    x, lengths = make_batch(dtype=torch.float32, T=60)
    a = Recurrent(6, 8, cell="lstm", bidirectional=True)
    b = Recurrent(6, 8, cell="lstm", bidirectional=True, packed=True)
    b.load_state_dict(a.state_dict())
    (o1, (h1, c1)), (o2, (h2, c2)) = a(x, lengths), b(x, lengths)
    torch.testing.assert_close(o1, o2, atol=1e-5, rtol=0)
    torch.testing.assert_close(h1, h2, atol=1e-5, rtol=0)
    torch.testing.assert_close(c1, c2, atol=1e-5, rtol=0)


def test_state_dict_names_are_torchs():
    r = Recurrent(6, 8, cell="gru", num_layers=2, bidirectional=True)
    assert set(r.state_dict()) == set(nn.GRU(6, 8, num_layers=2, bidirectional=True).state_dict())


def test_reverse_padded_reverses_within_length_and_is_its_own_inverse():
    x = torch.arange(8.0).view(2, 4, 1)
    lengths = torch.tensor([4, 2])
    assert reverse_padded(x, lengths).squeeze(-1).tolist() == [[3, 2, 1, 0], [5, 4, 6, 7]]
    assert torch.equal(reverse_padded(reverse_padded(x, lengths), lengths), x)
