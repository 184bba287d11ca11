"""Video decoding with PyAV: streaming RGB frame chunks, fps resampling, resizing, probing.

Conventions (every stage downstream relies on them):

- **Frames are RGB uint8**, shape ``H x W x 3``, delivered in chunks ``n x H x W x 3`` of at most
  ``chunk_frames`` frames, so a long video never sits in memory whole.
- **Time is the frame index.** A video is treated as constant frame rate: source frame ``j`` is
  at time ``j / source_fps``, where ``source_fps`` is the stream's average rate. Container
  timestamps are not used, because some containers carry unusable ones (an AVI with B-frames
  reports its pts out of order). ``source_fps`` is FFmpeg's guessed rate (``av_guess_frame_rate``:
  the stream's real base rate unless the average rate is a better fit), falling back to the
  average rate; an MP4 whose header gives an average of 30.04 fps for 30 fps timestamps is read
  as 30 fps.
- **Resampling rule** (``fps`` given): output frame ``k`` is at time ``k / fps`` and shows the
  source frame *at or before* that time, i.e. source index ``floor(k * source_fps / fps)``.
  The output has ``ceil(num_source_frames * fps / source_fps)`` frames (every output time that
  falls inside the video). Down-sampling drops frames, up-sampling repeats them. The rule is
  causal, so it is applied while streaming. Rates are handled as exact fractions.
- **Resizing** uses OpenCV: ``size=P`` (int) scales the *short side* to ``P`` and keeps the
  aspect ratio (long side rounded to the nearest pixel); ``size=(W, H)`` forces that size.
  INTER_AREA when shrinking, INTER_LINEAR when enlarging.
- **Frame count.** ``probe`` counts frames by decoding the stream (about 4000 frames/s for
  320x180 H.264 here): container headers are not reliable (an MP4 edit list makes the header
  say 727 frames for a clip that decodes to 726; MKV/WebM often carry none).
  ``probe(path, exact=False)`` returns the header count instead, or an estimate from the
  duration when the header has none.
- **Damaged files.** A missing, empty, non-video or unreadable file raises `RgbtadError`
  naming the file. A *truncated* file is an error too, by default: an MP4 whose index (moov)
  sits at the end cannot be opened at all; one whose index sits at the front opens and decodes
  the frames that are present, and stops early. When the container declares a frame count and
  decoding ends more than ``max(3, 2 %)`` frames short of it, the reader raises
  ``"<path>: truncated video (decoded n of N frames the container declares)"`` at the end of
  the stream (before a consumer that writes atomically has written anything).
  ``strict=False`` accepts what could be decoded and logs a warning instead.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from rgbtad.core.errors import RgbtadError

log = logging.getLogger(__name__)

DEFAULT_CHUNK_FRAMES = 256
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")

Size = int | tuple[int, int] | None


@dataclass(frozen=True)
class VideoInfo:
    """What `probe` learns about a video. `duration` is ``num_frames / fps`` (seconds)."""

    path: Path
    fps: float
    num_frames: int
    duration: float
    width: int
    height: int


# --------------------------------------------------------------------------- helpers


def _ffmpeg_message(err: Exception) -> str:
    msg = getattr(err, "strerror", None) or str(err)
    return str(msg).strip().rstrip(".")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise RgbtadError(f"{path}: file not found")
    if path.is_dir():
        raise RgbtadError(f"{path}: is a directory, not a video file")
    if path.stat().st_size == 0:
        raise RgbtadError(f"{path}: not a readable video (empty file, 0 bytes)")


def _open(path: Path):
    """Open `path` and return (container, video stream); errors name the file."""
    import av

    _check_file(path)
    try:
        container = av.open(str(path), mode="r")
    except av.FFmpegError as err:
        raise RgbtadError(f"{path}: not a readable video ({_ffmpeg_message(err)})") from None
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise RgbtadError(f"{path}: not a readable video ({err})") from None
    if not container.streams.video:
        container.close()
        raise RgbtadError(f"{path}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def _stream_rate(path: Path, stream) -> Fraction:
    for rate in (stream.guessed_rate, stream.average_rate, stream.base_rate):
        if rate is not None and rate > 0:
            return Fraction(rate.numerator, rate.denominator)
    raise RgbtadError(f"{path}: video stream has no frame rate")


def as_fraction(fps: float | Fraction | None) -> Fraction | None:
    if fps is None:
        return None
    if isinstance(fps, Fraction):
        value = fps
    else:
        if not math.isfinite(float(fps)):
            raise RgbtadError(f"invalid fps {fps!r}: must be a positive number")
        value = Fraction(float(fps)).limit_denominator(1001000)
    if value <= 0:
        raise RgbtadError(f"invalid fps {fps!r}: must be a positive number")
    return value


def output_size(width: int, height: int, size: Size) -> tuple[int, int]:
    """The (width, height) frames of a `width x height` video get under `size` (see module doc)."""
    if size is None:
        return width, height
    if isinstance(size, (tuple, list)):
        w, h = (int(v) for v in size)
        if w <= 0 or h <= 0:
            raise RgbtadError(f"invalid size {size!r}: width and height must be positive")
        return w, h
    short = int(size)
    if short <= 0:
        raise RgbtadError(f"invalid size {size!r}: must be a positive short side in pixels")
    if width <= height:
        return short, max(1, int(round(height * short / width)))
    return max(1, int(round(width * short / height))), short


def parse_size(text: str | None) -> Size:
    """'224' -> 224 (short side), '224x168' -> (224, 168) (width x height), None -> None."""
    if text is None or text == "":
        return None
    try:
        if "x" in text.lower():
            w, h = text.lower().split("x")
            return int(w), int(h)
        return int(text)
    except ValueError:
        raise RgbtadError(f"invalid size {text!r}: expected P (short side) or WxH") from None


def resampled_count(num_source_frames: int, source_fps: Fraction, fps: Fraction | None) -> int:
    """Number of output frames for `num_source_frames` at `source_fps` resampled to `fps`."""
    if fps is None or fps == source_fps:
        return num_source_frames
    return math.ceil(num_source_frames * fps / source_fps)


def resample_indices(num_source_frames: int, source_fps: float | Fraction, fps: float | Fraction | None) -> np.ndarray:
    """Source frame index of every output frame under the at-or-before rule (module doc)."""
    src = as_fraction(source_fps)
    dst = as_fraction(fps)
    count = resampled_count(num_source_frames, src, dst)
    if dst is None:
        return np.arange(count, dtype=np.int64)
    return np.array([(k * src) // dst for k in range(count)], dtype=np.int64)


def resize_frame(frame: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = frame.shape[:2]
    if (w, h) == tuple(size_wh):
        return frame
    shrink = size_wh[0] * size_wh[1] < w * h
    return cv2.resize(frame, tuple(size_wh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


# --------------------------------------------------------------------------- reader


class VideoReader:
    """Stream a video as RGB uint8 chunks, optionally resampled and resized.

    >>> with VideoReader("clip.mp4", fps=10, size=224) as reader:
    ...     for chunk in reader:          # chunk: n x H x W x 3 uint8, n <= chunk_frames
    ...         ...
    ...     reader.frames_read            # output frames delivered (after resampling)

    Opening happens in the constructor, so a bad file fails at once with `RgbtadError`.
    Iterate once. Attributes: `source_fps` (Fraction), `fps` (output rate, Fraction),
    `width`/`height` (output frame size), `declared_frames` (header count, 0 if unknown),
    `source_frames_read` and `frames_read` (counts so far).
    """

    def __init__(self, path: str | Path, fps: float | Fraction | None = None, size: Size = None,
                 chunk_frames: int = DEFAULT_CHUNK_FRAMES, strict: bool = True):
        if chunk_frames < 1:
            raise ValueError("chunk_frames must be >= 1")
        self.path = Path(path)
        self.chunk_frames = int(chunk_frames)
        self.strict = strict
        self._container, self._stream = _open(self.path)
        self.source_fps = _stream_rate(self.path, self._stream)
        target = as_fraction(fps)
        self.fps = target if target is not None else self.source_fps
        self._resample = target is not None and target != self.source_fps
        cc = self._stream.codec_context
        self.source_width, self.source_height = int(cc.width), int(cc.height)
        if self.source_width <= 0 or self.source_height <= 0:
            self.close()
            raise RgbtadError(f"{self.path}: video stream has no frame size")
        self.width, self.height = output_size(self.source_width, self.source_height, size)
        self.declared_frames = int(self._stream.frames or 0)
        self.source_frames_read = 0
        self.frames_read = 0
        self._used = False

    # context manager / cleanup
    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def _decoded(self) -> Iterator[np.ndarray]:
        import av
        from av.video.reformatter import VideoReformatter

        # one converter for the whole stream: `frame.to_ndarray(format=...)` sets up a new
        # swscale context for every frame, which took 90 % of decoding (2-5 ms of 2.5-5 per frame)
        reformatter = VideoReformatter()
        try:
            for frame in self._container.decode(self._stream):
                image = reformatter.reformat(frame, format="rgb24").to_ndarray()
                self.source_frames_read += 1
                yield image
        except av.FFmpegError as err:
            raise RgbtadError(
                f"{self.path}: decoding failed after {self.source_frames_read} frames "
                f"({_ffmpeg_message(err)})"
            ) from None

    def _check_end(self) -> None:
        n, declared = self.source_frames_read, self.declared_frames
        if n == 0:
            raise RgbtadError(f"{self.path}: video has no frames")
        if declared and declared - n > max(3, 0.02 * declared):
            message = f"{self.path}: truncated video (decoded {n} of {declared} frames the container declares)"
            if self.strict:
                raise RgbtadError(message)
            log.warning("%s; keeping the decoded frames", message)

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._used:
            raise RuntimeError("a VideoReader can be iterated only once")
        self._used = True
        if self._container is None:
            raise RuntimeError("VideoReader is closed")
        size = (self.width, self.height)
        buffer = np.empty((self.chunk_frames, self.height, self.width, 3), dtype=np.uint8)
        fill = 0
        # ratio = fps / source_fps: source frame j is shown by output frames
        # k in [ceil(j * ratio), ceil((j + 1) * ratio)).
        ratio = self.fps / self.source_fps
        try:
            for j, image in enumerate(self._decoded()):
                if self._resample:
                    repeats = math.ceil((j + 1) * ratio) - math.ceil(j * ratio)
                    if repeats == 0:
                        continue
                else:
                    repeats = 1
                image = resize_frame(image, size)
                for _ in range(repeats):
                    buffer[fill] = image
                    fill += 1
                    self.frames_read += 1
                    if fill == self.chunk_frames:
                        yield buffer
                        buffer = np.empty_like(buffer)
                        fill = 0
            self._check_end()
            if fill:
                yield buffer[:fill]
        finally:
            self.close()


def iter_frames(path: str | Path, *, fps: float | Fraction | None = None, size: Size = None,
                chunk: int = DEFAULT_CHUNK_FRAMES, strict: bool = True) -> Iterator[np.ndarray]:
    """Yield `n x H x W x 3` uint8 RGB chunks of `path` (see `VideoReader` and the module doc)."""
    reader = VideoReader(path, fps=fps, size=size, chunk_frames=chunk, strict=strict)
    yield from reader


def read_video(path: str | Path, *, fps: float | Fraction | None = None, size: Size = None,
               strict: bool = True) -> np.ndarray:
    """The whole video as one `N x H x W x 3` uint8 array. For short clips only."""
    chunks = list(iter_frames(path, fps=fps, size=size, strict=strict))
    return np.concatenate(chunks, axis=0)


def probe(path: str | Path, exact: bool = True) -> VideoInfo:
    """Frame rate, frame count, duration and frame size of `path`'s first video stream.

    `exact=True` (default) counts frames by decoding them (no colour conversion); `exact=False`
    trusts the container header, or estimates ``round(duration * fps)`` when it has no count.
    Truncation is checked as in `VideoReader` (strict).
    """
    import av

    path = Path(path)
    container, stream = _open(path)
    try:
        rate = _stream_rate(path, stream)
        cc = stream.codec_context
        width, height = int(cc.width), int(cc.height)
        declared = int(stream.frames or 0)
        if exact:
            count = 0
            try:
                for _ in container.decode(stream):
                    count += 1
            except av.FFmpegError as err:
                raise RgbtadError(f"{path}: decoding failed after {count} frames ({_ffmpeg_message(err)})") from None
            if count == 0:
                raise RgbtadError(f"{path}: video has no frames")
            if declared and declared - count > max(3, 0.02 * declared):
                raise RgbtadError(
                    f"{path}: truncated video (decoded {count} of {declared} frames the container declares)"
                )
        else:
            count = declared
            if count <= 0:
                seconds = None
                if stream.duration is not None and stream.time_base is not None:
                    seconds = float(stream.duration * stream.time_base)
                elif container.duration is not None:
                    seconds = container.duration / 1_000_000
                count = int(round(seconds * float(rate))) if seconds else 0
            if count <= 0:
                raise RgbtadError(f"{path}: frame count unknown without decoding (use exact=True)")
    finally:
        container.close()
    return VideoInfo(path=path, fps=float(rate), num_frames=count, duration=count / float(rate),
                     width=width, height=height)


def list_videos(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (non-recursive; files with a known video extension) into a
    list sorted by file name; a missing input or a folder without videos raises `RgbtadError`."""
    found: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            videos = [q for q in p.iterdir() if q.is_file() and q.suffix.lower() in VIDEO_EXTENSIONS]
            if not videos:
                raise RgbtadError(f"{p}: folder holds no video files ({', '.join(VIDEO_EXTENSIONS)})")
            found.extend(videos)
        elif p.exists():
            found.append(p)
        else:
            raise RgbtadError(f"{p}: no such file or folder")
    unique = sorted(set(found), key=lambda q: (q.name, str(q)))
    stems: dict[str, Path] = {}
    for q in unique:
        stem = video_stem(q)
        if stem in stems:
            raise RgbtadError(f"{q}: same name as {stems[stem]} (outputs are named by the file stem)")
        stems[stem] = q
    return unique


def video_stem(path: Path) -> str:
    """The name outputs are keyed by: the file name without its last extension."""
    return Path(path).stem
