"""Motion files written by `rgbtad motion`: storage format, reader, and the batch runner.

Storage format (one pair of files per video, in the output folder):

- ``<stem>.flow.npz`` (methods tvl1 / dis / farneback): a zip (deflate) holding one array
  ``flow``, uint8, ``(N-1) x H x W x 2`` for the video's N frames after resampling/resizing.
  Channel 0 is horizontal motion (+right), channel 1 vertical (+down), quantized the
  two-stream way: ``q = round((clip(f, -bound, bound) + bound) * 255 / (2 bound))``
  (`rgbtad.motion.flow.quantize_flow`; default bound 20 px). ``np.load(path)["flow"]``
  reads it whole; `iter_motion_file` streams it in chunks with bounded memory.
- ``<stem>.tg.npz`` (method tg): array ``tg``, uint8, ``(N-1) x H x W x 3``: the temporal
  gradient in grey levels, ``I_{t+1} - I_t`` in [-255, 255], quantized with the same formula
  (default bound 255, i.e. steps of 2 grey levels; a smaller bound trades range for precision).
  Feature extraction does not need it (TG is computed on the fly there); it is meant for
  inspection and for use outside rgbtad.
- ``<stem>.flow.json`` / ``<stem>.tg.json``: sidecar with the settings (method, bound, DIS
  preset, requested fps and size, actual fps, frame size, frame and item counts, source
  video). It is written after the array, so its presence marks a finished video: a rerun skips
  videos whose sidecar exists with the same settings and fails (without overwriting) those
  whose sidecar records different ones.

A one-frame video stores one all-zero motion item. Both files are written atomically; the
array is streamed into the zip, so a long video never sits in memory whole (its frame count is
measured first by `probe`, which decodes without colour conversion, to write the array header).
"""

from __future__ import annotations

import logging
import zipfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Iterator

import numpy as np

from rgbtad.core.atomic import atomic_path, write_json
from rgbtad.core.batch import BatchReport, failure_message, select_shard
from rgbtad.core.errors import RgbtadError
from rgbtad.core.jsonio import read_json_file
from rgbtad.motion.flow import MOTION_METHODS, motion_chunks, quantize_flow
from rgbtad.video.decode import Size, VideoReader, probe, resampled_count, video_stem
from rgbtad.video.snippets import DEFAULT_FLOW_BOUND, DIS_PRESETS, SnippetSpec

log = logging.getLogger(__name__)

FORMAT = "rgbtad-motion-1"
DEFAULT_TG_BOUND = 255.0


def motion_kind(method: str) -> str:
    return "tg" if method == "tg" else "flow"


def motion_paths(out_dir: str | Path, stem: str, method: str) -> tuple[Path, Path]:
    """(array file, sidecar) of `stem` for `method` in `out_dir`."""
    kind = motion_kind(method)
    out_dir = Path(out_dir)
    return out_dir / f"{stem}.{kind}.npz", out_dir / f"{stem}.{kind}.json"


def _settings(method: str, bound: float, dis_preset: str, fps, size) -> dict:
    return {
        "format": FORMAT,
        "method": method,
        "bound": float(bound),
        "dis_preset": dis_preset if method == "dis" else None,
        "fps": None if fps is None else float(fps),
        "size": list(size) if isinstance(size, (tuple, list)) else size,
    }


def _same_settings(meta: dict, settings: dict) -> bool:
    return all(meta.get(key) == value for key, value in settings.items())


def read_motion_meta(path: str | Path) -> dict:
    """The sidecar of a motion file (give either the .npz or the .json)."""
    path = Path(path)
    sidecar = path.with_suffix(".json") if path.suffix == ".npz" else path
    if not sidecar.is_file():
        raise RgbtadError(f"{sidecar}: motion sidecar not found (was `rgbtad motion` finished?)")
    meta = read_json_file(sidecar, "motion sidecar")
    if not isinstance(meta, dict):
        raise RgbtadError(f"{sidecar}: not a motion sidecar written by rgbtad motion")
    return meta


def stored_motion(flow_dir: str | Path, stem: str, snippets: SnippetSpec, *, width: int,
                  height: int) -> tuple[Path, dict]:
    """(array file, sidecar) of the motion `rgbtad motion` stored for `stem`, checked against
    the caller's snippet settings (method, bound, DIS preset, fps, size) and frame size;
    `RgbtadError` names the first mismatch."""
    method, bound, dis_preset = snippets.motion_method, snippets.flow_bound, snippets.dis_preset
    fps, size = snippets.fps, snippets.size
    array_path, sidecar = motion_paths(flow_dir, stem, method)
    if not array_path.is_file():
        raise RgbtadError(f"{array_path}: stored flow not found (run `rgbtad motion` with --method {method})")
    meta = read_motion_meta(sidecar)
    diff = {k: (meta.get(k), v) for k, v in _settings(method, bound, dis_preset, fps, size).items()
            if meta.get(k) != v}
    if diff:
        detail = ", ".join(f"{k} {a!r} (need {b!r})" for k, (a, b) in diff.items())
        raise RgbtadError(f"{sidecar}: stored flow has other settings: {detail}")
    if (meta.get("width"), meta.get("height")) != (width, height):
        raise RgbtadError(f"{sidecar}: stored flow is {meta.get('width')}x{meta.get('height')}, "
                          f"frames are {width}x{height}")
    return array_path, meta


def iter_motion_file(path: str | Path, chunk: int = 256) -> Iterator[np.ndarray]:
    """Stream the uint8 array of a motion .npz in chunks of `chunk` items (bounded memory)."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith(".npy")]
            if len(names) != 1:
                raise RgbtadError(f"{path}: expected one array in the motion file, found {len(names)}")
            with zf.open(names[0]) as fp:
                version = np.lib.format.read_magic(fp)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(fp)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(fp)
                if fortran or dtype != np.uint8 or len(shape) != 4:
                    raise RgbtadError(f"{path}: unexpected motion array ({dtype}, shape {shape})")
                item = int(np.prod(shape[1:]))
                remaining = shape[0]
                while remaining:
                    n = min(chunk, remaining)
                    data = fp.read(n * item)
                    if len(data) != n * item:
                        raise RgbtadError(f"{path}: motion file is truncated")
                    yield np.frombuffer(data, dtype=np.uint8).reshape((n,) + tuple(shape[1:]))
                    remaining -= n
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise RgbtadError(f"{path}: not a readable motion file ({err})") from None


def write_motion_file(video: str | Path, out_dir: str | Path, method: str = "tvl1", *,
                      fps: float | None = None, size: Size = None, bound: float | None = None,
                      dis_preset: str = "fast", progress: bool = False) -> Path:
    """Compute motion of one video and store it (module doc). Returns the .npz path."""
    if method not in MOTION_METHODS:
        raise RgbtadError(f"unknown motion method {method!r}; choose from {', '.join(MOTION_METHODS)}")
    if dis_preset not in DIS_PRESETS:
        raise RgbtadError(f"unknown DIS preset {dis_preset!r}; choose from {', '.join(DIS_PRESETS)}")
    video = Path(video)
    if bound is None:
        bound = DEFAULT_TG_BOUND if method == "tg" else DEFAULT_FLOW_BOUND
    if bound <= 0:
        raise RgbtadError(f"invalid bound {bound}: must be positive")
    stem = video_stem(video)
    array_path, sidecar = motion_paths(out_dir, stem, method)
    info = probe(video)
    reader = VideoReader(video, fps=fps, size=size, chunk_frames=64)
    num_frames = resampled_count(info.num_frames, reader.source_fps, None if fps is None else reader.fps)
    num_items = max(num_frames - 1, 1)
    channels = 3 if method == "tg" else 2
    shape = (num_items, reader.height, reader.width, channels)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=num_items, desc=stem, unit="pair", leave=False)
    written = 0
    try:
        with atomic_path(array_path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
                with zf.open(f"{motion_kind(method)}.npy", "w", force_zip64=True) as fp:
                    np.lib.format.write_array_header_1_0(
                        fp, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
                             "fortran_order": False, "shape": shape})
                    for chunk in motion_chunks(reader, method, bound=bound, dis_preset=dis_preset,
                                               on_item=bar.update if bar is not None and method != "tg" else None):
                        if method == "tg":
                            chunk = quantize_flow(chunk, bound)
                            if bar is not None:
                                bar.update(len(chunk))
                        written += len(chunk)
                        if written > num_items:
                            break
                        fp.write(np.ascontiguousarray(chunk).tobytes())
            if written != num_items:
                raise RgbtadError(f"{video}: decoded {written + 1} frames, {num_frames} expected from probing")
    finally:
        if bar is not None:
            bar.close()
    meta = _settings(method, bound, dis_preset, fps, size)
    meta.update({
        "video": str(video),
        "array": array_path.name,
        "key": motion_kind(method),
        "actual_fps": float(reader.fps),
        "source_fps": float(reader.source_fps),
        "width": reader.width,
        "height": reader.height,
        "num_frames": num_frames,
        "num_items": num_items,
        "layout": ("(N-1) x H x W x 2 uint8, channel 0 = dx (+right), 1 = dy (+down)" if method != "tg"
                   else "(N-1) x H x W x 3 uint8, RGB grey-level difference I[t+1] - I[t]"),
        "quantization": "q = round((clip(v, -bound, bound) + bound) * 255 / (2 * bound))",
    })
    write_json(sidecar, meta)
    return array_path


def _init_worker() -> None:
    import cv2

    cv2.setNumThreads(1)


def _motion_job(video: str, out_dir: str, method: str, fps, size, bound, dis_preset, progress: bool):
    """Worker body: never raises; returns (video, "done" | "failed", message)."""
    try:
        write_motion_file(video, out_dir, method, fps=fps, size=size, bound=bound, dis_preset=dis_preset,
                          progress=progress)
        return video, "done", ""
    except Exception as err:  # noqa: BLE001 - one bad video must not stop the batch
        return video, "failed", failure_message(Path(video), err)


def compute_motion(videos: list[Path], out_dir: str | Path, *, method: str = "tvl1", fps: float | None = None,
                   size: Size = None, bound: float | None = None, dis_preset: str = "fast", workers: int = 1,
                   shard: tuple[int, int] | None = None, progress: bool = True) -> BatchReport:
    """Compute and store motion for many videos (module doc), `workers` processes over videos.

    Finished videos (sidecar present with the same settings) are skipped; failures are
    collected in the report while the other videos complete.
    """
    if method not in MOTION_METHODS:
        raise RgbtadError(f"unknown motion method {method!r}; choose from {', '.join(MOTION_METHODS)}")
    if workers < 1:
        raise RgbtadError(f"invalid --workers {workers}: must be >= 1")
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RgbtadError(f"{out_dir}: exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    if bound is None:
        bound = DEFAULT_TG_BOUND if method == "tg" else DEFAULT_FLOW_BOUND
    settings = _settings(method, bound, dis_preset, fps, size)

    report = BatchReport()
    todo: list[Path] = []
    for video in select_shard(list(videos), shard):
        array_path, sidecar = motion_paths(out_dir, video_stem(video), method)
        if sidecar.is_file() and array_path.is_file():
            try:
                meta = read_motion_meta(sidecar)
            except RgbtadError:  # unreadable: computed again
                meta = None
            if meta is not None and _same_settings(meta, settings):
                report.skipped.append(video)
                continue
            if meta is not None:
                report.failed.append((video, f"{sidecar}: exists with other settings "
                                             f"(method {meta.get('method')}, bound {meta.get('bound')}, "
                                             f"fps {meta.get('fps')}, size {meta.get('size')}); "
                                             "delete it or choose another --out"))
                continue
        todo.append(video)

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=f"motion {method}", unit="video", disable=not progress or not todo)
    args = (str(out_dir), method, fps, size, bound, dis_preset)
    if workers == 1 or len(todo) <= 1:
        for video in todo:
            result = _motion_job(str(video), *args, progress)
            _record(report, result)
            bar.update(1)
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx,
                                 initializer=_init_worker) as pool:
            futures = [pool.submit(_motion_job, str(video), *args, False) for video in todo]
            for future in as_completed(futures):
                _record(report, future.result())
                bar.update(1)
    bar.close()
    order = {str(v): i for i, v in enumerate(videos)}
    report.done.sort(key=lambda p: order.get(str(p), 0))
    report.failed.sort(key=lambda item: order.get(str(item[0]), 0))
    return report


def _record(report: BatchReport, result) -> None:
    video, status, message = result
    if status == "done":
        report.done.append(Path(video))
    else:
        report.failed.append((Path(video), message))
