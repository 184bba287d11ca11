"""The frozen teacher of snippet-backbone distillation: a finished backbone run (its backbone
and classifier), with its own decoded input of the student's videos.

Every training snippet also goes, un-augmented, through the teacher: the teacher decodes the
training subset in the student's order, so a snippet ``(video, start)`` of the student's
store is the same snippet of the teacher's (of the teacher's modality: flow or temporal
gradient for a motion teacher of an RGB student).
"""

from __future__ import annotations

from pathlib import Path

import torch

from rgbtad.core.errors import RgbtadError
from rgbtad.core.torchio import load_torch_file
from rgbtad.training.backbone_run import BackboneRun, open_backbone_run
from rgbtad.training.snippet_data import Item, SnippetStore, load_subset
from rgbtad.video.snippets import SnippetSpec

#: the snippet settings a teacher must share with its student (its modality and flow differ)
SHARED_SNIPPET_KEYS = ("snippet_frames", "fps", "size")


class SnippetTeacher:
    """A frozen backbone + classifier trained by `rgbtad train-backbone`, with its own snippets."""

    def __init__(self, run: BackboneRun, net, head, store: SnippetStore):
        self.run, self.net, self.head, self.store = run, net, head, store

    @property
    def feature_dim(self) -> int:
        return int(self.net.feature_dim)

    @classmethod
    def load(cls, run_dir: str | Path, snippets: SnippetSpec, *, class_names: list[str], device) -> "SnippetTeacher":
        """The teacher in `run_dir`, checked against the student's snippets and classes."""
        from rgbtad.backbones import create_backbone
        from rgbtad.backbones.layers import channels_last_if_2d

        run = open_backbone_run(run_dir, "teacher")
        theirs, mine = run.config.snippets.record(), snippets.record()
        diff = [f"{k} {theirs[k]!r} (student {mine[k]!r})" for k in SHARED_SNIPPET_KEYS if theirs[k] != mine[k]]
        if diff:
            raise RgbtadError(f"{run.path}: teacher trained on other snippets: {', '.join(diff)}")
        if run.class_names != class_names:
            raise RgbtadError(f"{run.path}: teacher trained on other classes than the student's annotations")
        cfg = run.config
        try:
            net = create_backbone(cfg.backbone, cfg.modality, weights=str(run.weights), **cfg.backbone_kwargs)
        except (OSError, RuntimeError) as err:
            raise RgbtadError(f"{run.weights}: cannot load the teacher's backbone ({err})") from None
        head = torch.nn.Linear(int(net.feature_dim), len(class_names))
        try:
            head.load_state_dict(load_torch_file(run.head, "teacher classifier"))
        except (OSError, RuntimeError) as err:
            raise RgbtadError(f"{run.head}: cannot load the teacher's classifier ({err})") from None
        for module in (net, head):
            module.to(device).eval().requires_grad_(False)
        channels_last_if_2d(net)
        return cls(run, net, head, SnippetStore(cfg.snippets, net.input_mean, net.input_std))

    def load_videos(self, ann, subset: str, videos_dir: Path, *, progress: bool) -> None:
        """Decode the teacher's input for the videos of `subset`, in the student's order."""
        flow_dir = self.run.summary.get("settings", {}).get("flow_dir")  # resolved when it was trained
        load_subset(ann, subset, videos_dir, self.store, flow_dir=flow_dir,
                    desc=f"load {subset} (teacher, {self.run.config.modality})", progress=progress)

    def __call__(self, items: list[Item]) -> tuple[torch.Tensor, torch.Tensor]:
        """(features, logits) of the teacher for the snippets `items`."""
        with torch.no_grad():
            x = self.store.batch(items).to(next(self.head.parameters()).device)
            features = self.net(x)
            return features, self.head(features)
