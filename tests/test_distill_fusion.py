"""Branch fusions of the decomposed student: shapes, masking, and LAF's locality in time."""

import pytest
import torch

from rgbtad.distill.fusion import FUSIONS, BranchFusion, LocalAttentiveGate, masked_mean

DIM, HEADS, LENGTH, VALID = 16, 2, 24, 17


def _inputs(seed=0, batch=2):
    generator = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, DIM, LENGTH, generator=generator)
    m = torch.randn(batch, DIM, LENGTH, generator=generator)
    mask = torch.zeros(batch, 1, LENGTH, dtype=torch.bool)
    mask[0, :, :VALID] = True
    mask[1:, :, :] = True
    return a, m, mask


@pytest.mark.parametrize("kind", FUSIONS)
def test_shapes_and_padding_never_changes_valid_outputs(kind):
    torch.manual_seed(0)
    fusion = BranchFusion(kind, DIM, HEADS).eval()
    a, m, mask = _inputs()
    out = fusion(a, m, mask)
    assert out.shape == (2, DIM, LENGTH)
    assert torch.all(out[0, :, VALID:] == 0)  # zero on padding
    # other values on the padded steps: the real steps do not move
    noisy_a, noisy_m = a.clone(), m.clone()
    noisy_a[0, :, VALID:] = 100 * torch.randn(DIM, LENGTH - VALID)
    noisy_m[0, :, VALID:] = -50.0
    torch.testing.assert_close(fusion(noisy_a, noisy_m, mask), out)
    # and the same video without any padding gives the same outputs
    alone = fusion(a[:1, :, :VALID], m[:1, :, :VALID], mask[:1, :, :VALID])
    torch.testing.assert_close(alone, out[:1, :, :VALID], rtol=1e-5, atol=1e-5)


def test_laf_gate_has_no_mixing_across_time():
    torch.manual_seed(0)
    gate = LocalAttentiveGate(DIM).eval()
    x, y, mask = _inputs()
    base = gate(x, y, mask)
    t = 5
    # the reference y enters only at its own step
    y2 = y.clone()
    y2[:, :, t] += torch.randn(2, DIM)
    changed = (gate(x, y2, mask) - base).abs().amax(1) > 1e-6  # B x T
    assert changed[:, t].all() and changed.sum() == 2
    # the target x enters at its own step and through its masked mean only: a change that
    # keeps the mean (+d at t, -d at s) moves steps t and s and nothing else
    s, d = 11, torch.randn(2, DIM)
    x2 = x.clone()
    x2[:, :, t] += d
    x2[:, :, s] -= d
    changed = (gate(x2, y, mask) - base).abs().amax(1) > 1e-6
    assert changed[:, [t, s]].all() and changed.sum() == 4


def test_laf_fusion_is_local_but_attention_fusions_mix_time():
    a, m, mask = _inputs()
    t, s = 4, 9
    d_a, d_m = torch.randn(2, DIM), torch.randn(2, DIM)
    a2, m2 = a.clone(), m.clone()
    a2[:, :, t] += d_a
    a2[:, :, s] -= d_a  # both branches' means unchanged: only the pooled queries could carry
    m2[:, :, t] += d_m  # a change elsewhere, and they do not change
    m2[:, :, s] -= d_m
    for kind in FUSIONS:
        torch.manual_seed(0)
        fusion = BranchFusion(kind, DIM, HEADS).eval()
        changed = (fusion(a2, m2, mask) - fusion(a, m, mask)).abs().amax(1) > 1e-6
        others = changed.clone()
        others[:, [t, s]] = False
        if kind in ("self_attn", "cross_attn", "diff_attn"):
            assert others.any(), kind
        else:  # concat, sum and LAF see one time step at a time
            assert changed[:, [t, s]].all() and not others.any(), kind


def test_local_pooling_window():
    x, _, mask = _inputs()
    pooled = masked_mean(x, mask, window=5)
    for b, valid in ((0, VALID), (1, LENGTH)):
        for t in range(LENGTH):
            lo, hi = max(t - 2, 0), min(t + 3, valid)
            if lo < hi:
                torch.testing.assert_close(pooled[b, :, t], x[b, :, lo:hi].mean(-1))
    torch.testing.assert_close(masked_mean(x, mask)[0, :, 0], x[0, :, :VALID].mean(-1))
    # with local pooling a change of x at t reaches only the window around t
    torch.manual_seed(0)
    gate = LocalAttentiveGate(DIM, window=5).eval()
    x2 = x.clone()
    x2[:, :, 10] += 1.0
    changed = (gate(x2, x, mask) - gate(x, x, mask)).abs().amax(1) > 1e-6
    assert changed[:, 8:13].all() and changed.sum() == 2 * 5


def test_unknown_fusion_is_rejected():
    with pytest.raises(ValueError, match="unknown fusion"):
        BranchFusion("max", DIM)
