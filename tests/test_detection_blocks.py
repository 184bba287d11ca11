"""Masked 1-D blocks: masking, channel LayerNorm, local/global conv attention vs oracles."""

import math

import pytest
import torch
import torch.nn.functional as F

from rgbtad.detection.attention import ConvAttention, TransformerBlock, banded_context, banded_scores
from rgbtad.detection.blocks import ChannelLayerNorm, MaskedConv1d, drop_path, sinusoid_table


def _mask(lengths, total):
    return (torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]).unsqueeze(1)


def _padded(x_valid, total):
    b, c, t = x_valid.shape
    out = torch.zeros(b, c, total)
    out[:, :, :t] = x_valid
    return out


def test_masked_conv_output_is_masked_and_padding_invariant():
    torch.manual_seed(0)
    conv = MaskedConv1d(5, 7, 3)
    with torch.no_grad():
        conv.bias.normal_()
    x = torch.randn(1, 5, 20)
    out32, m32 = conv(_padded(x, 32), _mask([20], 32))
    out48, m48 = conv(_padded(x, 48), _mask([20], 48))
    assert torch.equal(out32[..., :20], out48[..., :20])
    assert torch.all(out32[..., 20:] == 0) and torch.all(out48[..., 20:] == 0)
    assert m32.dtype == torch.bool and int(m32.sum()) == 20


def test_strided_masked_conv_downsamples_mask_by_nearest():
    conv = MaskedConv1d(3, 3, 3, stride=2)
    mask = _mask([7, 10], 16)
    _, out_mask = conv(torch.randn(2, 3, 16), mask)
    assert out_mask.shape == (2, 1, 8)
    assert torch.equal(out_mask, mask[:, :, ::2])  # step 2i of the input
    assert out_mask[0, 0].tolist() == [True] * 4 + [False] * 4
    assert int(out_mask[1].sum()) == 5


def test_channel_layernorm_matches_reference_formula_and_is_per_step():
    torch.manual_seed(1)
    norm = ChannelLayerNorm(6)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 6, 9)
    expected = F.layer_norm(x.transpose(1, 2), (6,), norm.weight, norm.bias, 1e-5).transpose(1, 2)
    torch.testing.assert_close(norm(x), expected, atol=1e-5, rtol=1e-5)
    # each time step is normalised on its own: changing step 8 leaves steps 0..7 unchanged
    y = x.clone()
    y[:, :, 8] = 100.0
    assert torch.equal(norm(x)[..., :8], norm(y)[..., :8])


def test_banded_scores_equal_dot_products_in_window():
    torch.manual_seed(2)
    w, length = 3, 24
    q, k = torch.randn(4, length, 5), torch.randn(4, length, 5)
    band = banded_scores(q, k, w)
    assert band.shape == (4, length, 2 * w + 1)
    for t in range(length):
        for j in range(2 * w + 1):
            key = t + j - w
            if 0 <= key < length:
                torch.testing.assert_close(band[:, t, j], (q[:, t] * k[:, key]).sum(-1), atol=1e-5, rtol=1e-5)
            else:
                assert torch.all(band[:, t, j] == float("-inf"))


def test_banded_context_is_windowed_weighted_sum():
    torch.manual_seed(3)
    w, length = 2, 12
    probs = torch.rand(3, length, 2 * w + 1)
    for t in range(length):  # slots outside the sequence hold 0
        for j in range(2 * w + 1):
            if not 0 <= t + j - w < length:
                probs[:, t, j] = 0
    v = torch.randn(3, length, 4)
    out = banded_context(probs, v, w)
    for t in range(length):
        expected = sum(probs[:, t, j, None] * v[:, t + j - w] for j in range(2 * w + 1)
                       if 0 <= t + j - w < length)
        torch.testing.assert_close(out[:, t], expected, atol=1e-5, rtol=1e-5)


def _oracle_attention(attn: ConvAttention, x, mask):
    """Brute force: dense scores, band restricted; padded keys -1e4, outside the band -inf,
    padded queries attend to nothing (the release's semantics)."""
    q, q_mask = attn.q_conv(x, mask)
    k, kv_mask = attn.k_conv(x, mask)
    v, _ = attn.v_conv(x, mask)
    q, k, v = attn.q_proj(attn.q_norm(q)), attn.k_proj(attn.k_norm(k)), attn.v_proj(attn.v_norm(v))
    b, c, length = q.shape
    h, d = attn.num_heads, attn.head_dim
    q = q.view(b, h, d, length).transpose(2, 3) / math.sqrt(d)
    k = k.view(b, h, d, length).transpose(2, 3)
    v = v.view(b, h, d, length).transpose(2, 3)
    scores = q @ k.transpose(-1, -2)  # b h T T
    valid_key = kv_mask[:, :, None, :]  # b 1 1 T
    if attn.window > 1:
        w = attn.window // 2
        offset = torch.arange(length)[None, :] - torch.arange(length)[:, None]  # key - query
        in_band = offset.abs() <= w
        if attn.rel_pos is not None:
            rel = attn.rel_pos[:, (offset + w).clamp(0, 2 * w)]  # h T T
            scores = scores + rel[None]
        scores = torch.where(valid_key, scores, scores - 1e4)
        scores = scores.masked_fill(~in_band, float("-inf"))
    else:
        scores = scores.masked_fill(~valid_key, float("-inf"))
    probs = scores.softmax(-1)
    probs = probs.masked_fill(~kv_mask[:, :, :, None], 0.0)
    out = (probs @ (v * kv_mask[:, :, :, None])).transpose(2, 3).reshape(b, c, length)
    return attn.out_proj(out) * q_mask, q_mask


@pytest.mark.parametrize("window,stride,rel_pos", [(5, 1, False), (7, 2, True), (-1, 1, False), (-1, 2, False)])
def test_conv_attention_matches_brute_force_oracle(window, stride, rel_pos):
    torch.manual_seed(4)
    attn = ConvAttention(16, 2, window=window, stride=stride, rel_pos=rel_pos).eval()
    with torch.no_grad():
        for p in attn.parameters():
            p.add_(0.1 * torch.randn_like(p))
    length = 48
    x = torch.randn(2, 16, length)
    mask = _mask([48, 29], length)
    with torch.no_grad():
        out, out_mask = attn(x, mask)
        expected, expected_mask = _oracle_attention(attn, x, mask)
    assert torch.equal(out_mask, expected_mask)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


def test_local_attention_ignores_padding_length():
    torch.manual_seed(5)
    block = TransformerBlock(16, 2, stride=2, window=5, droppath=0.1).eval()
    x = torch.randn(1, 16, 30)
    with torch.no_grad():
        a, ma = block(_padded(x, 40), _mask([30], 40))
        b, mb = block(_padded(x, 80), _mask([30], 80))
    assert torch.equal(ma[..., :20], mb[..., :20])
    torch.testing.assert_close(a[..., :15], b[..., :15], atol=1e-6, rtol=1e-6)
    assert torch.all(a[..., 15:] == 0)


def test_drop_path_keeps_or_drops_whole_samples():
    torch.manual_seed(6)
    x = torch.ones(64, 3, 5)
    out = drop_path(x, 0.5, training=True)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) <= {0.0, 2.0}
    assert torch.all(per_sample.min(1)[0] == per_sample.max(1)[0])
    assert torch.equal(drop_path(x, 0.5, training=False), x)


def test_sinusoid_table_values():
    table = sinusoid_table(10, 6)
    assert table.shape == (1, 6, 10)
    assert table[0, 0, 3] == pytest.approx(math.sin(3.0), abs=1e-6)
    assert table[0, 1, 3] == pytest.approx(math.cos(3.0), abs=1e-6)
    assert table[0, 2, 3] == pytest.approx(math.sin(3.0 / 10000 ** (2 / 6)), abs=1e-6)
    assert table[0, 5, 4] == pytest.approx(math.cos(4.0 / 10000 ** (4 / 6)), abs=1e-6)
