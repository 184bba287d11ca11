"""The G-TAD detector (Xu et al., CVPR 2020): GCNeXt graph backbone -> start / end heads and
sub-graph alignment -> the 2-D proposal map over (start, duration) anchors.

Release counterpart: ``GTAD`` of ``gtad_lib/models.py`` (frostinassiky/gtad, THUMOS14 branch
``master``), its losses (`rgbtad.detection.gtad_loss`) and post-processing
(`rgbtad.detection.gtad_postprocess`). The network, on windows of ``T`` snippets::

    embed   grouped conv (input_groups) + ReLU          -> hidden_dim_1d
    block1  GCNeXt                                      -> base features
    block2  GCNeXt                                      -> graph features
    start_head / end_head   GCNeXt + 1x1 conv + sigmoid, on the base features
    align_conv   SGAlign of the graph features (resolution points per anchor) and of their
                 semantic context (the mean of each snippet's k nearest neighbours' features,
                 context_resolution points) fused with the map head's first 1x1 conv
    map_layers   ReLU, 1x1 conv, 2 x (map_kernel_size conv), 1x1 conv + sigmoid

The map has ``1 + K`` channels on ``D x T`` (duration index, start): channel 0 the IoU
regression, channels 1.. the classification (``K = 1``, class-agnostic, the release; with
``multiclass`` ``K = num_classes``, one classification channel per class, this head's
multi-class variant: each class's channel is trained on the IoU with that class's ground
truth and proposes that class's segments). ``context`` is the release's ``goi_style``:
"none" (0; the release reshapes that map as if ``D == T``, any ``D`` here), "last" (1, the
default: k-NN of the graph features) or "all" (2: the k-NN indices of block1 and block2
together).

Windows: the release cuts videos into windows of ``T`` snippets (``data.max_seq_len``) and
so does this head. Training inputs are windows already (the trainer's random crops, ``L ==
T``; the release trains on its fixed half-overlapping windows instead, those holding 90 % of
some action); in eval mode ``forward`` cuts each video of the batch (its valid length from
``masks``) into the release's sliding windows, runs them (``eval_chunk`` at a time) and
``postprocess`` merges their proposals before the final soft-NMS. So ``max_div_factor`` is
1: any length works.
There is no loss normaliser (`loss_normalizer` is 1.0) and no EMA of one. ``GTADOutput`` is
this head's own output (not a `DetectorOutput`: there are no pyramid levels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from rgbtad.core.errors import RgbtadError
from rgbtad.core.timebase import SnippetGrid
from rgbtad.data.detections import Detections
from rgbtad.detection.actionformer import model_config_errors
from rgbtad.detection.gtad_align import AlignedMapConv
from rgbtad.detection.gtad_blocks import GCNeXt, gather_neighbours, knn_indices
from rgbtad.detection.gtad_loss import GTADLoss
from rgbtad.detection.gtad_postprocess import ProposalConfig, video_proposals, window_starts
from rgbtad.detection.postprocess import clip_to_video
from rgbtad.detection.registry import register_model

__all__ = ["CONTEXTS", "GTAD", "GTADOutput", "GTADSpec", "build_gtad", "release_key", "spec_from_config"]

CONTEXTS = ("none", "last", "all")


@dataclass
class GTADOutput:
    """Per window (``W`` of them): ``proposal_map`` ``W x (1 + K) x D x T`` probabilities
    (channel 0 regression, 1.. classification), ``start`` / ``end`` ``W x T`` boundary
    probabilities, ``feats`` the graph features ``W x C x T`` (for distillation); which video
    each window is of (``window_video``) and where it starts (``window_start``), and each
    video's valid length (``lengths``)."""

    proposal_map: torch.Tensor
    start: torch.Tensor
    end: torch.Tensor
    feats: torch.Tensor
    window_video: torch.Tensor
    window_start: torch.Tensor
    lengths: torch.Tensor

    @property
    def cls_scores(self) -> torch.Tensor:
        return self.proposal_map[:, 1:]

    @property
    def reg_scores(self) -> torch.Tensor:
        return self.proposal_map[:, 0]


@dataclass(frozen=True)
class GTADSpec:
    """G-TAD's hyper-parameters; invalid combinations raise ``ValueError``."""

    input_dim: int
    num_classes: int
    temporal_scale: int
    max_duration: int = 64
    hidden_dim_1d: int = 256
    hidden_dim_2d: int = 128
    hidden_dim_3d: int = 512
    input_groups: int = 4
    groups: int = 32
    width_group: int = 4
    knn_k: int = 3
    context: str = "last"
    align_resolution: int = 16
    context_resolution: int = 16
    align_sampling: int = 0
    expand_ratio: float = 0.5
    map_kernel_size: int = 3
    multiclass: bool = False
    reg_high_iou: float = 0.7
    reg_low_iou: float = 0.3
    cls_pos_iou: float = 0.9
    boundary_width: float = 3.0
    reg_weight: float = 1.0
    cls_weight: float = 10.0
    boundary_weight: float = 1.0
    eval_chunk: int = 8
    proposals: ProposalConfig = ProposalConfig()

    def __post_init__(self) -> None:
        if self.context not in CONTEXTS:
            raise ValueError(f"unknown G-TAD context {self.context!r} (known: {', '.join(CONTEXTS)})")
        if self.max_duration < 1 or self.max_duration >= self.temporal_scale:
            raise ValueError(f"max_duration {self.max_duration} must be in [1, temporal scale "
                             f"{self.temporal_scale}) (data.max_seq_len, the window length)")
        if self.knn_k > self.temporal_scale:
            raise ValueError(f"knn_k {self.knn_k} exceeds the window of {self.temporal_scale} snippets")
        for name, dim in (("input_dim", self.input_dim), ("hidden_dim_1d", self.hidden_dim_1d)):
            if dim % self.input_groups:
                raise ValueError(f"{name} {dim} is not divisible by input_groups {self.input_groups}")
        if self.map_kernel_size % 2 != 1:
            raise ValueError(f"map_kernel_size must be odd (same padding), got {self.map_kernel_size}")

    @property
    def num_map_classes(self) -> int:
        return self.num_classes if self.multiclass else 1

    @property
    def resolutions(self) -> tuple[int, ...]:
        if self.context == "none":
            return (self.align_resolution,)
        return self.align_resolution, self.context_resolution


class GTAD(nn.Module):
    """The detector (`rgbtad.detection.protocol.Detector`, output `GTADOutput`)."""

    loss_names = ("cls_loss", "reg_loss", "boundary_loss", "final_loss")
    training_inputs: tuple[str, ...] = ()
    strides = [1]
    max_div_factor = 1

    def __init__(self, spec: GTADSpec):
        super().__init__()
        self.spec = spec
        self.num_classes = spec.num_classes
        self.max_seq_len = spec.temporal_scale
        dim, gcn = spec.hidden_dim_1d, dict(k=spec.knn_k, groups=spec.groups, width_group=spec.width_group)
        self.embed = nn.Conv1d(spec.input_dim, dim, kernel_size=3, padding=1, groups=spec.input_groups)
        self.block1 = GCNeXt(dim, **gcn)
        self.start_head = nn.ModuleList((GCNeXt(dim, **gcn), nn.Conv1d(dim, 1, kernel_size=1)))
        self.end_head = nn.ModuleList((GCNeXt(dim, **gcn), nn.Conv1d(dim, 1, kernel_size=1)))
        self.block2 = GCNeXt(dim, **gcn)
        self.align_conv = AlignedMapConv(dim, spec.hidden_dim_3d, spec.temporal_scale, spec.max_duration,
                                         spec.resolutions, spec.align_sampling, spec.expand_ratio)
        h2, kernel = spec.hidden_dim_2d, spec.map_kernel_size
        self.map_layers = nn.Sequential(
            nn.ReLU(True), nn.Conv2d(spec.hidden_dim_3d, h2, kernel_size=1), nn.ReLU(True),
            nn.Conv2d(h2, h2, kernel_size=kernel, padding=kernel // 2), nn.ReLU(True),
            nn.Conv2d(h2, h2, kernel_size=kernel, padding=kernel // 2), nn.ReLU(True),
            nn.Conv2d(h2, 1 + spec.num_map_classes, kernel_size=1),
        )
        self.criterion = GTADLoss(spec.temporal_scale, spec.max_duration, spec.num_map_classes,
                                  spec.reg_high_iou, spec.reg_low_iou, spec.cls_pos_iou, spec.boundary_width,
                                  spec.reg_weight, spec.cls_weight, spec.boundary_weight)

    # ------------------------------------------------------------------ protocol
    @property
    def loss_normalizer(self) -> float:
        """1.0: G-TAD's losses are normalised per batch, there is no running normaliser."""
        return 1.0

    def check_length(self, length: int) -> None:
        if length < 1:
            raise ValueError(f"G-TAD needs at least one snippet, got an input of length {length}")

    def param_groups(self, weight_decay: float) -> list[dict]:
        """One group: the release's Adam decays every parameter."""
        return [{"params": [p for p in self.parameters() if p.requires_grad], "weight_decay": weight_decay}]

    def forward(self, feats: torch.Tensor, masks: torch.Tensor) -> GTADOutput:
        windows, video, starts, lengths = self.windows(feats, masks)
        if self.training:
            proposal_map, start, end, graph = self.network(windows)
        else:
            parts = [self.network(chunk) for chunk in windows.split(self.spec.eval_chunk)]
            proposal_map, start, end, graph = (torch.cat(p) for p in zip(*parts))
        return GTADOutput(proposal_map, start, end, graph, video, starts, lengths)

    def windows(self, feats: torch.Tensor, masks: torch.Tensor):
        """The windows G-TAD runs on, from ``B x C x L`` features: ``W x C x T`` windows (in
        training each video is one window of ``temporal_scale`` snippets; in eval mode the
        release's sliding windows, zero-padded), each window's video and first snippet, and
        each video's valid length. Students cut their windows here too."""
        self._check_inputs(feats, masks)
        lengths = masks.sum(dim=-1)
        feats = feats * masks.unsqueeze(1).to(feats.dtype)  # the release pads windows with zeros
        if not self.training:
            return (*self._sliding_windows(feats, lengths), lengths)
        if feats.shape[-1] != self.spec.temporal_scale:
            raise ValueError(f"G-TAD trains on windows of {self.spec.temporal_scale} snippets "
                             f"(data.max_seq_len), got {feats.shape[-1]}")
        video = torch.arange(feats.shape[0], device=feats.device)
        return feats, video, torch.zeros_like(video), lengths

    def network(self, x: torch.Tensor):
        """The release's forward on windows ``W x C x T``: (map, start, end, graph features)."""
        base, index1 = self.block1(torch.relu(self.embed(x)))
        graph, index2 = self.block2(base)
        start = torch.sigmoid(self.start_head[1](self.start_head[0](base)[0])).squeeze(1)
        end = torch.sigmoid(self.end_head[1](self.end_head[0](base)[0])).squeeze(1)
        sources = [graph]
        if self.spec.context != "none":
            index = knn_indices(graph, self.spec.knn_k) if self.spec.context == "last" \
                else torch.cat((index1, index2), dim=2)
            sources.append(gather_neighbours(graph, index).mean(dim=-1))
        proposal_map = torch.sigmoid(self.map_layers(self.align_conv(sources)))
        return proposal_map, start, end, graph

    def losses(self, out: GTADOutput, gt_segments: list[torch.Tensor], gt_labels: list[torch.Tensor],
               draws: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """The losses of a training-mode output (one window per video); `draws` replays the
        regression loss's random sampling (`rgbtad.detection.gtad_loss`)."""
        if not isinstance(out, GTADOutput) or out.proposal_map.shape[0] != len(gt_segments):
            raise TypeError("G-TAD's losses take the GTADOutput of a training forward, one window per video")
        return self.criterion(out.proposal_map, out.start, out.end, gt_segments, gt_labels, draws)

    @torch.no_grad()
    def postprocess(self, out: GTADOutput, metas: list[dict]) -> list[Detections]:
        """Per video: its windows' proposals merged, soft-NMS, in seconds, best first."""
        if len(metas) != len(out.lengths):
            raise ValueError(f"{len(metas)} metas for a batch of {len(out.lengths)}")
        results = []
        for index, meta in enumerate(metas):
            mine = (out.window_video == index).nonzero().flatten()
            offsets = [int(s) for s in out.window_start[mine]]
            grid = SnippetGrid(_number(meta["feat_stride"]), _number(meta["feat_num_frames"]), _number(meta["fps"]))
            segs, scores, labels = video_proposals(out.proposal_map[mine].cpu(), out.start[mine].cpu(),
                                                   out.end[mine].cpu(), offsets, grid.stride,
                                                   self.spec.proposals)
            segs = clip_to_video(grid.to_seconds(segs), _number(meta["duration"]))
            inside = segs[:, 1] > segs[:, 0]
            results.append(Detections(meta["video_id"], segs[inside].numpy().reshape(-1, 2),
                                      scores[inside].numpy(), labels[inside].numpy()))
        return results

    # ------------------------------------------------------------------ helpers
    def _check_inputs(self, feats: torch.Tensor, masks: torch.Tensor) -> None:
        if feats.dim() != 3 or masks.dim() != 2 or feats.shape[0] != masks.shape[0] \
                or feats.shape[-1] != masks.shape[-1]:
            raise ValueError(f"expected B x C x L features and B x L masks, got "
                             f"{tuple(feats.shape)} and {tuple(masks.shape)}")
        if feats.shape[1] != self.spec.input_dim:
            raise ValueError(f"G-TAD expects {self.spec.input_dim} feature channels (data.input_dim), "
                             f"got {feats.shape[1]}")
        self.check_length(feats.shape[-1])

    def _sliding_windows(self, feats: torch.Tensor, lengths: torch.Tensor):
        """The release's sliding windows of every video (`window_starts`), zero-padded."""
        size = self.spec.temporal_scale
        if feats.shape[-1] < size:
            feats = nn.functional.pad(feats, (0, size - feats.shape[-1]))
        windows, video, starts = [], [], []
        for index, length in enumerate(lengths.tolist()):
            for first in window_starts(int(length), size, self.spec.proposals.tail_min):
                windows.append(feats[index, :, first:first + size])
                video.append(index)
                starts.append(first)
        device = feats.device
        return (torch.stack(windows), torch.tensor(video, device=device),
                torch.tensor(starts, device=device))


#: release state-dict prefixes (``gtad_lib/models.py``, without DataParallel's ``module.``)
_RELEASE_PREFIXES = {"backbone1.0.": "embed.", "backbone1.2.": "block1.", "backbone2.0.": "block2.",
                     "regu_s.": "start_head.", "regu_e.": "end_head.", "localization.0.": "align_conv.conv.",
                     "localization.2.": "map_layers.1.", "localization.4.": "map_layers.3.",
                     "localization.6.": "map_layers.5.", "localization.8.": "map_layers.7."}


def release_key(key: str) -> str:
    """The `GTAD` state-dict key of a release checkpoint's key."""
    key = key.removeprefix("module.")
    for old, new in _RELEASE_PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old):]
    raise KeyError(f"not a G-TAD release state-dict key: {key!r}")


_GTAD_KEYS = ("max_duration", "hidden_dim_1d", "hidden_dim_2d", "hidden_dim_3d", "input_groups", "groups",
              "width_group", "knn_k", "context", "align_resolution", "context_resolution", "align_sampling",
              "expand_ratio", "map_kernel_size", "multiclass", "reg_high_iou", "reg_low_iou", "cls_pos_iou",
              "boundary_width", "reg_weight", "cls_weight", "boundary_weight", "eval_chunk")
_PROPOSAL_KEYS = ("nms_threshold", "num_proposals", "max_proposal_frames", "boundary_filter", "tail_min")


def spec_from_config(cfg, num_classes: int, input_dim: int | None = None) -> GTADSpec:
    """`GTADSpec` from a config: the window is ``data.max_seq_len``, the rest ``gtad``."""
    if num_classes <= 0:
        raise RgbtadError(f"the detector needs at least one class, got {num_classes}")
    own = cfg.gtad
    with model_config_errors():
        return GTADSpec(input_dim=cfg.data.input_dim if input_dim is None else input_dim,
                        num_classes=num_classes, temporal_scale=cfg.data.max_seq_len,
                        proposals=ProposalConfig(**{key: getattr(own, key) for key in _PROPOSAL_KEYS}),
                        **{key: getattr(own, key) for key in _GTAD_KEYS})


@register_model("gtad")
def build_gtad(cfg, num_classes: int, *, input_dim: int | None = None) -> GTAD:
    """`GTAD` from a config (`spec_from_config`); `input_dim` overrides ``data.input_dim``."""
    spec = spec_from_config(cfg, num_classes, input_dim)
    with model_config_errors():
        return GTAD(spec)


def _number(value):
    return value.item() if hasattr(value, "item") else value
