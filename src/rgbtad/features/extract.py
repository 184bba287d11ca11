"""Snippet feature extraction: videos -> one ``T x C`` float32 ``.npy`` per video.

Pipeline per video: decode (PyAV, streamed in chunks; optional fps resampling and resizing,
see `rgbtad.video.decode`) -> per-frame input stream -> snippets (`rgbtad.video.sampling`:
snippet ``i`` = frames ``[i*stride, i*stride + snippet_frames)``, a short video gives one
padded snippet) -> batches ``B x C x snippet_frames x H x W`` -> backbone -> ``B x C``.

Modalities (what the backbone sees): ``rgb`` frames, optical ``flow`` between consecutive
frames of the resampled video (computed once per frame pair, not once per snippet, so
overlapping snippets share it; or read from a folder written by `rgbtad motion` with
``flow_dir``), or the temporal gradient ``tg``; a snippet of N frames has N-1 motion items and
the last one is repeated to keep N time steps. The snippet settings and the pixel
normalisation per modality are `rgbtad.video.snippets` (`SnippetSpec`, `normalize`).

Outputs in ``out_dir``:

- ``<stem>.npy``: float32 ``T x feature_dim``; snippet ``i`` is centred at
  ``(i * stride + 0.5 * snippet_frames) / fps`` seconds.
- an index JSON: ``{"format", "settings": {backbone, weights, modality, flow_method,
  flow_bound, dis_preset, snippet_frames, stride, fps, size, precision, feature_dim,
  input_mean, input_std}, "videos": {stem: {file, video, num_frames, num_snippets, fps,
  source_fps, duration, width, height}}}`` (``num_frames`` counts frames after resampling;
  ``fps`` is the rate they are at).

**Index files and sharding**: `rgbtad.features.index` (each shard writes its own index
file; readers merge them; all must agree on the settings).

**Resume.** A video is skipped when ``<stem>.npy`` exists and some index file lists it. The
``.npy`` is written atomically before the index entry, so an interrupted run leaves either
nothing, or a finished ``.npy`` not yet listed (recomputed next time); leftover hidden
temporary files (``.<stem>.npy.*.tmp.npy``) are ignored.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np

from rgbtad.core.atomic import write_npy
from rgbtad.core.batch import BatchReport, failure_message, resolve_shard, select_shard
from rgbtad.core.device import resolve_device
from rgbtad.core.errors import RgbtadError
from rgbtad.core.precision import autocast, resolve_precision
from rgbtad.features.index import ExtractionIndex
from rgbtad.motion.flow import motion_chunks
from rgbtad.video.decode import VideoReader, video_stem
from rgbtad.video.sampling import iter_snippets, num_snippets, pad_snippet
from rgbtad.video.snippets import SnippetSpec, normalize

CHUNK_FRAMES = 64

ExtractReport = BatchReport


# --------------------------------------------------------------------------- backbone


def _load_backbone(backbone, modality: str, weights: str | None):
    """A backbone module from a registry name (`rgbtad.backbones.create_backbone`) or as given."""
    import torch

    from rgbtad.backbones import MODALITY_CHANNELS, create_backbone

    if isinstance(backbone, str):
        # Random initialisation (no weights) is seeded, so that extraction is deterministic.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = create_backbone(backbone, modality, weights=weights)
        name = backbone
    else:
        net = backbone
        name = getattr(net, "name", type(net).__name__)
    for attr in ("feature_dim", "input_mean", "input_std"):
        if not hasattr(net, attr):
            raise RgbtadError(f"backbone {name!r} lacks the attribute {attr!r} of the backbone contract")
    channels = MODALITY_CHANNELS[modality]
    if len(tuple(net.input_mean)) != channels or len(tuple(net.input_std)) != channels:
        raise RgbtadError(f"backbone {name!r} is not built for {modality} input ({channels} channels)")
    return net.eval(), name


# --------------------------------------------------------------------------- extraction


def _inference_copy(net):
    """`net` for inference: batch norms folded into the convolutions and, for the families of
    2-D convolutions (TSM), the channels-last layout that oneDNN prefers (TSM-R18 at 224 px:
    1.5x faster in bfloat16 on an AVX512-BF16 CPU). The caller's module is left as it is; one without
    convolutions (an ONNX Runtime backbone, `rgbtad.export.runtime.OrtBackbone`) is used as is."""
    import torch

    from rgbtad.backbones.layers import channels_last_if_2d, fold_batch_norms

    if not any(isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)) for m in net.modules()):
        return net
    return channels_last_if_2d(fold_batch_norms(net))


class _Extractor:
    """Holds the backbone and settings; `run(video)` returns (features, video entry)."""

    def __init__(self, net, snippets: SnippetSpec, *, device, batch_size, precision, flow_dir, progress):
        import torch

        self.torch = torch
        self.net = _inference_copy(net).to(device)
        self.snippets = snippets
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.flow_dir = Path(flow_dir) if flow_dir is not None else None
        self.progress = progress
        self.mean = torch.tensor(tuple(net.input_mean), dtype=torch.float32, device=device)
        self.std = torch.tensor(tuple(net.input_std), dtype=torch.float32, device=device)
        self.feature_dim = int(net.feature_dim)

    # batch of snippets (B x N x H x W x C, compact dtype) -> B x C x N x H x W float32 on device
    def _to_input(self, batch: np.ndarray):
        x = self.torch.from_numpy(batch).to(self.device)
        x = normalize(x, self.snippets.modality, self.mean, self.std)
        return x.permute(0, 4, 1, 2, 3).contiguous()

    def _forward(self, batch: list[np.ndarray]) -> np.ndarray:
        torch = self.torch
        x = self._to_input(np.stack(batch))
        with torch.inference_mode(), autocast(self.precision, self.device):
            y = self.net(x)
        y = y.float().reshape(len(batch), -1)
        if y.shape[1] != self.feature_dim:
            raise RuntimeError(f"backbone returned {y.shape[1]} features, feature_dim says {self.feature_dim}")
        return y.cpu().numpy().astype(np.float32)

    def _stored_flow(self, video: Path, reader: VideoReader) -> tuple[Iterator[np.ndarray], int]:
        from rgbtad.motion.storage import iter_motion_file, stored_motion

        array_path, meta = stored_motion(self.flow_dir, video_stem(video), self.snippets, width=reader.width,
                                         height=reader.height)
        return iter_motion_file(array_path, chunk=CHUNK_FRAMES), int(meta["num_frames"])

    def _snippet_batches(self, items: Iterator[np.ndarray], length: int) -> Iterator[list[np.ndarray]]:
        """Batches of at most `batch_size` snippets of a stream of input chunks along time."""
        n = self.snippets.frames
        batch: list[np.ndarray] = []
        for snippet in iter_snippets(items, length, self.snippets.stride):
            batch.append(pad_snippet(snippet, n) if length < n else snippet.copy())
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    def encode(self, items: Iterator[np.ndarray], length: int, bar=None) -> np.ndarray:
        """Features (``T x feature_dim`` float32) of a stream of input chunks along time:
        RGB frames, or motion items with ``length = snippet_frames - 1`` (padded back to
        ``snippet_frames``). `bar` (tqdm) is advanced by the snippets done."""
        outputs: list[np.ndarray] = []
        for batch in self._snippet_batches(items, length):
            outputs.append(self._forward(batch))
            if bar is not None:
                bar.update(len(batch))
        return np.concatenate(outputs, axis=0) if outputs else np.zeros((0, self.feature_dim), np.float32)

    def input_batches(self, items: Iterator[np.ndarray], length: int) -> Iterator[np.ndarray]:
        """The backbone's input batches (``B x C x N x H x W`` float32, normalised) for a stream
        of input chunks, as `encode` feeds them: e.g. calibration data for an int8 backbone."""
        for batch in self._snippet_batches(items, length):
            yield self._to_input(np.stack(batch)).cpu().numpy()

    def backbone_inputs(self, video: Path) -> Iterator[np.ndarray]:
        """`input_batches` of `video`, decoded as `run` decodes it."""
        reader, items, length, _ = self._open(video)
        try:
            yield from self.input_batches(items, length)
        finally:
            reader.close()

    def _open(self, video: Path):
        """(reader, input chunks, their length per snippet, frames of stored flow or None)."""
        spec = self.snippets
        reader = VideoReader(video, fps=spec.fps, size=spec.size, chunk_frames=CHUNK_FRAMES)
        if spec.modality == "rgb":
            return reader, iter(reader), spec.input_length, None
        if spec.modality == "flow" and self.flow_dir is not None:
            items, stored_frames = self._stored_flow(video, reader)
            reader.close()
            return reader, items, spec.input_length, stored_frames
        chunks = motion_chunks(reader, spec.motion_method, bound=spec.flow_bound, dis_preset=spec.dis_preset)
        return reader, chunks, spec.input_length, None

    def run(self, video: Path, position: int = 1) -> tuple[np.ndarray, dict]:
        n, stride = self.snippets.frames, self.snippets.stride
        reader, items, length, stored_frames = self._open(video)
        estimate = None
        if reader.declared_frames:
            frames = reader.declared_frames
            if reader.fps != reader.source_fps:
                frames = math.ceil(frames * reader.fps / reader.source_fps)
            estimate = num_snippets(stored_frames or frames, n, stride)
        from tqdm import tqdm

        bar = tqdm(total=estimate, desc=video_stem(video), unit="snippet", leave=False, position=position,
                   disable=not self.progress)
        try:
            features = self.encode(items, length, bar)
        finally:
            bar.close()
            reader.close()
        num_frames = stored_frames if stored_frames is not None else reader.frames_read
        expected = num_snippets(num_frames, n, stride)
        if len(features) != expected:  # the sampling rule guarantees this; guard against regressions
            raise RuntimeError(f"{video}: {len(features)} snippets, the formula gives {expected}")
        entry = {
            "file": f"{video_stem(video)}.npy",
            "video": str(video),
            "num_frames": int(num_frames),
            "num_snippets": int(len(features)),
            "fps": float(reader.fps),
            "source_fps": float(reader.source_fps),
            "duration": float(num_frames / reader.fps),
            "width": int(reader.width),
            "height": int(reader.height),
        }
        return features, entry


def extract_features(
    videos: list[str | Path],
    out_dir: str | Path,
    *,
    backbone,
    weights: str | None = None,
    snippets: SnippetSpec = SnippetSpec(),
    shard: tuple[int, int] | str | None = None,
    device: str | None = None,
    batch_size: int = 8,
    precision: str = "auto",
    flow_dir: str | Path | None = None,
    progress: bool = True,
) -> ExtractReport:
    """Extract snippet features of `videos` into `out_dir` (module doc); returns the report.

    `backbone` is a registry name (created with `create_backbone(backbone, snippets.modality,
    weights=weights)`) or a module following the backbone contract; `snippets` says how videos
    become its inputs (`rgbtad.video.snippets.SnippetSpec`). `shard` is (K, N) or "K/N"
    (1-based); when None under torchrun (WORLD_SIZE > 1) the rank picks the shard. `device`
    None means CUDA when available. `precision`: ``auto`` (bfloat16 autocast where the device
    runs it natively, `rgbtad.core.precision`), ``fp32`` or ``bf16``; the one used is recorded in
    the index settings. Per-video failures are collected in the report while the
    other videos complete; bad settings raise `RgbtadError` at once.
    """
    check_extraction_inputs(batch_size=batch_size, flow_dir=flow_dir)
    if flow_dir is not None and snippets.modality != "flow":
        raise RgbtadError("a flow folder is only used with --modality flow")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RgbtadError(f"{out_dir}: exists and is not a folder")
    shard = resolve_shard(shard)
    videos = _videos_of_shard(videos, shard)

    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)
    net, name = _load_backbone(backbone, snippets.modality, weights)
    min_frames = int(getattr(net, "min_frames", 1) or 1)
    if snippets.frames < min_frames:
        raise RgbtadError(f"invalid --snippet-frames {snippets.frames}: backbone {name} needs at least {min_frames}")

    out_dir.mkdir(parents=True, exist_ok=True)
    index = ExtractionIndex(out_dir, _settings(net, name, weights, snippets, precision), shard)
    report = ExtractReport()
    todo = []
    for v in videos:
        stem = video_stem(v)
        if stem in index.listed and (out_dir / f"{stem}.npy").is_file():
            report.skipped.append(v)
        else:
            todo.append(v)
    index.consolidate()

    extractor = _Extractor(net, snippets, device=dev, batch_size=int(batch_size), precision=precision,
                           flow_dir=flow_dir, progress=progress)
    label = f"extract {name}/{snippets.modality}" + (f" shard {shard[0]}/{shard[1]}" if shard else "")
    _extract_each(todo, extractor, index, out_dir, report, label, progress)
    return report


def _videos_of_shard(videos: list[str | Path], shard: tuple[int, int] | None) -> list[Path]:
    """The videos of this shard, refused when two share a file stem (the features' name)."""
    videos = select_shard([Path(v) for v in videos], shard)
    stems: dict[str, Path] = {}
    for v in videos:
        if video_stem(v) in stems:
            raise RgbtadError(f"{v}: same name as {stems[video_stem(v)]} (features are named by the file stem)")
        stems[video_stem(v)] = v
    return videos


def _settings(net, name: str, weights: str | None, snippets: SnippetSpec, precision: str) -> dict:
    """The index settings: everything that makes two extractions' features comparable."""
    motion = snippets.modality != "rgb"
    return {
        "backbone": name,
        "weights": None if weights is None else str(weights),
        **snippets.record(),
        "precision": precision,
        "feature_dim": int(net.feature_dim),
        "input_mean": [float(v) for v in net.input_mean],
        "input_std": [float(v) for v in net.input_std],
        "padding": "short video: one snippet, last frame repeated"
                   + ("; motion: N-1 items per snippet, last repeated" if motion else ""),
    }


def _extract_each(todo: list[Path], extractor: _Extractor, index: ExtractionIndex, out_dir: Path,
                  report: ExtractReport, label: str, progress: bool) -> None:
    """Extract `todo` one video after the other, each ``.npy`` written before its index entry."""
    from tqdm import tqdm

    with tqdm(total=len(todo), desc=label, unit="video", disable=not progress or not todo, position=0) as bar:
        for v in todo:
            try:
                features, entry = extractor.run(v)
                write_npy(out_dir / entry["file"], features)
                index.add(video_stem(v), entry)
                report.done.append(v)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # noqa: BLE001 - one bad video must not stop the batch
                report.failed.append((v, failure_message(v, err)))
            bar.update(1)


def load_backbone(backbone, modality: str = "rgb", weights: str | Path | None = None):
    """``(module in eval mode, name)`` exactly as `extract_features` builds it: a registry
    name is created with `weights` (seeded random initialisation without), a module is
    checked against the backbone contract."""
    return _load_backbone(backbone, modality, None if weights is None else str(weights))


def check_extraction_inputs(*, batch_size: int, flow_dir: str | Path | None) -> None:
    """Raise `RgbtadError` on a bad batch size or flow folder (`SnippetSpec` checks the snippet
    settings itself); shared by feature extraction and backbone training."""
    if int(batch_size) < 1:
        raise RgbtadError(f"invalid --batch-size {batch_size}: must be >= 1")
    if flow_dir is not None and not Path(flow_dir).is_dir():
        raise RgbtadError(f"{flow_dir}: flow folder not found")


def snippet_encoder(net, snippets: SnippetSpec, *, device: str | None = None, batch_size: int = 8,
                    precision: str = "auto", progress: bool = False) -> _Extractor:
    """The per-video engine of `extract_features`, for callers that need one video's features
    without writing files: ``encoder.run(video) -> (features, entry)`` decodes and encodes
    the video streamed in chunks (same decoding, snippet grid and preprocessing, so the
    features equal those `extract_features` writes), and ``encoder.encode(chunks, length)``
    encodes frames (or motion items) already in memory."""
    dev = resolve_device(device)
    return _Extractor(net, snippets, device=dev, batch_size=int(batch_size),
                      precision=resolve_precision(precision, dev), flow_dir=None, progress=progress)
