"""ONNX export of an RGB backbone: snippets -> features, for ONNX Runtime.

**Backbone graph** (``OUT.backbone.onnx``, with ``rgbtad export --with-backbone``). Input
``snippets`` (float32 ``B x 3 x N x H x W``, normalized with the backbone's mean and std),
output ``features`` (``B x D``); batch, height and width are dynamic, ``N`` (frames per
snippet) is fixed. The detector graph's metadata names this file, and `rgbtad detect --onnx`
then runs both graphs; decoding, resizing and snippet sampling are the same code as `rgbtad
extract`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from rgbtad.export.graph_file import (
    BACKBONE_FORMAT,
    OPSET,
    check_tolerance,
    max_abs_diff,
    open_session,
    write_metadata,
)


def export_backbone(net: nn.Module, out_path: str | Path, *, snippet_frames: int, height: int, width: int,
                    extra_meta: dict | None = None, check: bool = True) -> float:
    """Write the backbone graph (snippets -> features) to `out_path`; return the largest
    difference to PyTorch on an example batch (0.0 without `check`)."""
    from rgbtad.core.atomic import atomic_path

    out_path = Path(out_path)
    net = net.eval().cpu()
    channels = len(tuple(net.input_mean))
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, channels, int(snippet_frames), int(height), int(width), generator=generator)
    axes = {"snippets": {0: "batch", 3: "height", 4: "width"}, "features": {0: "batch"}}
    with atomic_path(out_path, suffix=".tmp.onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            torch.onnx.export(net, (example,), str(tmp), dynamo=False, input_names=["snippets"],
                              output_names=["features"], dynamic_axes=axes, opset_version=OPSET)
        meta = {"backbone": getattr(net, "name", type(net).__name__), "modality": getattr(net, "modality", "rgb"),
                "feature_dim": int(net.feature_dim), "input_mean": [float(v) for v in net.input_mean],
                "input_std": [float(v) for v in net.input_std], "snippet_frames": int(snippet_frames),
                **(extra_meta or {})}
        write_metadata(tmp, BACKBONE_FORMAT, meta)
        worst = 0.0
        if check:
            session = open_session(tmp)
            batch = torch.randn(3, channels, int(snippet_frames), int(height), int(width), generator=generator)
            with torch.no_grad():
                expected = net(batch)
            (got,) = session.run(None, {"snippets": batch.numpy()})
            worst = max_abs_diff([got], [expected])
            check_tolerance(worst, out_path)
    return worst
