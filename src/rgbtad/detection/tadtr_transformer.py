"""TadTR's deformable transformer: encoder over the snippet sequence, decoder over learned
action queries with iterative segment refinement.

Release counterpart: ``DeformableTransformer`` and its encoder / decoder layers
(``models/transformer.py`` of xlliu7/TadTR), one feature level, post-norm layers:

* encoder layer: deformable self-attention (query = features + position, reference = each
  step's centre ``(t + 0.5) / T``, scaled into the valid part) -> add & LayerNorm -> FFN ->
  add & LayerNorm;
* decoder layer: query self-attention (``nn.MultiheadAttention``; skipped with
  ``query_self_attention`` False, the release's ``disable_query_self_att``) -> add & norm ->
  deformable cross-attention to the encoder memory -> add & norm -> FFN -> add & norm;
* the queries' embedding (``num_queries x 2 D``) splits into a position half and a content
  half; the initial reference point is ``sigmoid(Linear(position))``;
* segment refinement (``with_segment_refine``): after layer ``l`` its segment head's output
  ``delta`` updates the reference, ``sigmoid(delta + inverse_sigmoid(ref))`` (the first
  layer refines the centre of a reference point and predicts the width outright), detached
  before the next layer. The refined segment of layer ``l`` is also its prediction, so the
  head runs once per layer here (the release runs the same module twice, once inside the
  decoder and once outside, with equal results).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from rgbtad.detection.tadtr_attention import DeformableTemporalAttention, inverse_sigmoid

__all__ = ["ACTIVATIONS", "DecoderOutput", "DeformableTransformer", "refine_segments"]

ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "leaky_relu": F.leaky_relu}


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, dropout: float, activation: str, num_heads: int, num_points: int):
        super().__init__()
        self.self_attn = DeformableTemporalAttention(dim, num_heads, num_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.activation = ACTIVATIONS[activation]
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, src, pos, reference, padding):
        query = src if pos is None else src + pos
        src = self.norm1(src + self.dropout1(self.self_attn(query, reference, src, padding)))
        ffn = self.linear2(self.dropout2(self.activation(self.linear1(src))))
        return self.norm2(src + self.dropout3(ffn))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, ffn_dim: int, dropout: float, activation: str, num_heads: int, num_points: int,
                 query_self_attention: bool):
        super().__init__()
        self.cross_attn = DeformableTemporalAttention(dim, num_heads, num_points)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.query_self_attention = query_self_attention
        self.self_attn = nn.MultiheadAttention(dim, num_heads, dropout=dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.activation = ACTIVATIONS[activation]
        self.dropout3 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.dropout4 = nn.Dropout(dropout)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, tgt, query_pos, reference, memory, padding):
        if self.query_self_attention:
            q = (tgt + query_pos).transpose(0, 1)
            attended = self.self_attn(q, q, tgt.transpose(0, 1), need_weights=False)[0].transpose(0, 1)
            tgt = self.norm2(tgt + self.dropout2(attended))
        attended = self.cross_attn(tgt + query_pos, reference, memory, padding)
        tgt = self.norm1(tgt + self.dropout1(attended))
        ffn = self.linear2(self.dropout3(self.activation(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout4(ffn))


class _Stack(nn.Module):
    """A list of layers under the release's key ``layers``."""

    def __init__(self, layers: list[nn.Module]):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class DecoderOutput:
    """Per decoder layer: ``hidden`` query features ``B x Q x D`` and the ``reference``
    each layer was given (``B x Q x 1`` or ``B x Q x 2``), plus ``segments``, the refined
    ``B x Q x 2`` (centre, width) of each layer when segment refinement is on (else None)."""

    def __init__(self, hidden: list[torch.Tensor], references: list[torch.Tensor],
                 segments: list[torch.Tensor] | None):
        self.hidden, self.references, self.segments = hidden, references, segments


class DeformableTransformer(nn.Module):
    """Encoder + decoder (keys as the release's ``transformer``)."""

    def __init__(self, dim: int, num_heads: int, enc_layers: int, dec_layers: int, ffn_dim: int, dropout: float,
                 activation: str, enc_points: int, dec_points: int, query_self_attention: bool,
                 use_pos_embed: bool):
        super().__init__()
        self.dim, self.use_pos_embed = dim, use_pos_embed
        # one layer built, then copied (the release's _get_clones): its biases start equal
        encoder_layer = EncoderLayer(dim, ffn_dim, dropout, activation, num_heads, enc_points)
        self.encoder = _Stack([copy.deepcopy(encoder_layer) for _ in range(enc_layers)])
        decoder_layer = DecoderLayer(dim, ffn_dim, dropout, activation, num_heads, dec_points, query_self_attention)
        self.decoder = _Stack([copy.deepcopy(decoder_layer) for _ in range(dec_layers)])
        self.level_embed = nn.Parameter(torch.empty(1, dim))
        self.reference_points = nn.Linear(dim, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier on every matrix, then the attention modules' own init, Xavier on the
        reference projection with a zero bias, a normal level embedding (release order)."""
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, DeformableTemporalAttention):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight, gain=1.0)
        nn.init.constant_(self.reference_points.bias, 0.0)
        nn.init.normal_(self.level_embed)

    def encode(self, src: torch.Tensor, pos: torch.Tensor, padding: torch.Tensor, valid_ratio: torch.Tensor):
        """`src`, `pos` ``B x T x D``; `padding` ``B x T``; `valid_ratio` ``B``: the memory."""
        length = src.shape[1]
        centres = torch.linspace(0.5, length - 0.5, length, dtype=torch.float32, device=src.device)
        reference = centres[None] / (valid_ratio[:, None] * length) * valid_ratio[:, None]
        reference = reference[..., None]
        pos = pos + self.level_embed.view(1, 1, -1) if self.use_pos_embed else None
        out = src
        for layer in self.encoder.layers:
            out = layer(out, pos, reference, padding)
        return out

    def decode(self, memory: torch.Tensor, padding: torch.Tensor, valid_ratio: torch.Tensor,
               query_embed: torch.Tensor, segment_heads: nn.ModuleList | None) -> DecoderOutput:
        """The decoder over ``Q x 2D`` `query_embed`; `segment_heads` (one per layer)
        refine the references when given."""
        batch = memory.shape[0]
        query_pos, tgt = torch.split(query_embed, self.dim, dim=1)
        query_pos = query_pos.unsqueeze(0).expand(batch, -1, -1)
        tgt = tgt.unsqueeze(0).expand(batch, -1, -1)
        reference = self.reference_points(query_pos).sigmoid()
        hidden, references, segments = [], [], []
        for index, layer in enumerate(self.decoder.layers):
            tgt = layer(tgt, query_pos, reference * valid_ratio[:, None, None], memory, padding)
            hidden.append(tgt)
            references.append(reference)
            if segment_heads is not None:
                refined = refine_segments(segment_heads[index](tgt), reference)
                segments.append(refined)
                reference = refined.detach()
        return DecoderOutput(hidden, references, segments if segment_heads is not None else None)


def refine_segments(delta: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``sigmoid(delta + inverse_sigmoid(reference))`` on the coordinates the reference has
    (a point refines only the centre; the width is ``sigmoid(delta)``)."""
    logit = inverse_sigmoid(reference)
    if reference.shape[-1] == 2:
        return (delta + logit).sigmoid()
    return torch.cat((delta[..., :1] + logit, delta[..., 1:]), dim=-1).sigmoid()
