"""Frame sources: a video file, a folder of images or a camera, all yielding RGB ``uint8`` frames.

Boundary: OpenCV decodes to BGR; this module converts to RGB (``cv2.cvtColor``) before a frame leaves
it, and it is the only reader in siamtrack that does so. Every source reports ``fps`` (``None`` when
unknown) and ``frame_count`` (``None`` for cameras; a container's own count for videos, which can be
approximate) so callers can size progress bars without decoding twice.

Errors are meant to be read by a person: a missing path is ``FileNotFoundError``, a video OpenCV
cannot decode, an empty folder or an unreadable first image is ``ValueError``, each naming the path.
Frames that cannot be decoded later on (a damaged video, a broken image in a folder) are skipped
and counted (:meth:`FrameSource.damage_report`), so a long run is not lost to one bad frame.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from ..layouts import IMAGE_EXTENSIONS, natural_key

#: Failed reads in a row after which a damaged video is taken to have ended.
MAX_FAILED_READS = 250


_QUIET = False


def quiet_opencv_logs() -> None:
    """Silence OpenCV's and FFmpeg's own stderr chatter (e.g. "moov atom not found").

    The command line reports unreadable inputs itself, in one line; library users keep OpenCV's
    default logging unless they call this. FFmpeg reads its log level only once per process, so
    opening a capture afterwards also briefly points file descriptor 2 at /dev/null.
    """
    global _QUIET
    _QUIET = True
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when FFmpeg is first used
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # builds without the logging utilities
        pass


@contextlib.contextmanager
def _quiet_stderr_fd() -> Iterator[None]:
    """Point fd 2 at /dev/null while OpenCV/FFmpeg probe a file (their C code bypasses sys.stderr)."""
    if not _QUIET:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _open_capture(target: str | int) -> cv2.VideoCapture:
    with _quiet_stderr_fd():
        return cv2.VideoCapture(target)


class FrameSource:
    """Iterable of RGB ``uint8`` frames with ``name``, ``fps`` and ``frame_count`` (``None`` if unknown).

    Use as a context manager (or call :meth:`close`) to release a capture device early.
    """

    name: str = "frames"
    fps: float | None = None
    frame_count: int | None = None

    #: Frames decoded / that could not be decoded (set while iterating; see :meth:`damage_report`).
    decoded: int = 0
    unreadable: int = 0
    first_unreadable: int | None = None
    #: Whether ``frame_count`` is exact (a folder's files): then frames lost at the end are frames
    #: too, and get rows; a container's count can be approximate, so a video's missing tail gets none.
    exact_count: bool = False

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def indexed(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(frame number, frame)`` pairs; numbers skip the frames that could not be decoded."""
        for index, frame in enumerate(self):
            self.decoded = index + 1
            yield index, frame

    def damage_report(self) -> str | None:
        """``"250 of 289 frames decoded, 39 unreadable, from frame 140"`` after a damaged or
        truncated video was read to its end, ``None`` when nothing was missing."""
        if not self.unreadable:
            return None
        total = self.decoded + self.unreadable
        return (f"{self.decoded} of {total} frames decoded, {self.unreadable} unreadable, "
                f"from frame {self.first_unreadable}")

    def _lost(self, start: int, count: int) -> None:
        if self.first_unreadable is None:
            self.first_unreadable = start
        self.unreadable += count

    def close(self) -> None:
        """Release OS resources (no-op for folders)."""

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _CaptureSource(FrameSource):
    """Shared reading loop of videos and cameras (both are ``cv2.VideoCapture``)."""

    def __init__(self, capture: cv2.VideoCapture, description: str) -> None:
        self._cap = capture
        self._description = description
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if fps > 0 and np.isfinite(fps) else None

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.indexed():
            yield frame

    def indexed(self) -> Iterator[tuple[int, np.ndarray]]:
        """Decode to the end, reading past damaged parts of a video.

        When a read fails before the container's claimed ``frame_count``, reading goes on (at most
        :data:`MAX_FAILED_READS` failures in a row, and never more than the frames still claimed):
        FFmpeg resumes at the next decodable frame. From the first failure on, each frame's
        timestamp gives its true number (FFmpeg also drops frames it cannot decode without a
        failed read), so the numbers skip the lost frames; ``unreadable`` counts every claimed frame not decoded (also
        those of a video that just ends early) and ``first_unreadable`` is the first lost number.
        """
        claimed = getattr(self, "frame_count", None)
        self.decoded, self.unreadable, self.first_unreadable = 0, 0, None
        index, failed, damaged = 0, 0, False  # index: number of the next frame
        while True:
            ok, bgr = self._cap.read()
            if not ok or bgr is None:
                failed += 1
                if claimed is None or index >= claimed or failed > min(MAX_FAILED_READS, claimed - index):
                    break
                damaged = True
                continue
            if damaged and self.fps:  # after damage the decoder may drop frames: place by timestamp
                stamp = int(round(self._cap.get(cv2.CAP_PROP_POS_MSEC) * self.fps / 1000.0))
                if claimed is not None:
                    stamp = min(stamp, claimed - 1)
                if stamp > index:
                    self._lost(index, stamp - index)
                    index = stamp
            elif failed:
                self._lost(index, 0)
            failed = 0
            self.decoded += 1
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
        if not self.decoded:
            raise ValueError(f"could not read any frame from {self._description}")
        if claimed is not None and index < claimed:
            self._lost(index, claimed - index)

    def close(self) -> None:
        self._cap.release()


class VideoFileSource(_CaptureSource):
    """A video file that OpenCV can decode (mp4, avi, ...)."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"video not found: {path}")
        if not path.is_file():
            raise ValueError(f"not a video file: {path}")
        cap = _open_capture(str(path))
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"cannot open video {path} (not a format OpenCV can decode?)")
        super().__init__(cap, f"video {path}")
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count = count if count > 0 else None
        self.name = path.stem
        self.path = path


class CameraSource(_CaptureSource):
    """A live camera by index (``0`` is the default camera); endless, so ``frame_count`` is ``None``."""

    def __init__(self, index: int) -> None:
        cap = _open_capture(int(index))
        if not cap.isOpened():
            cap.release()
            raise ValueError(f"cannot open camera {index} (no such device, or it is busy)")
        super().__init__(cap, f"camera {index}")
        self.name = f"camera{index}"


class ImageFolderSource(FrameSource):
    """Images in a folder (jpg/jpeg/png/bmp, case-insensitive), in natural sort order."""

    exact_count = True

    def __init__(self, folder: str | Path, fps: float | None = None) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"image folder not found: {folder}")
        self.files = sorted((p for p in folder.iterdir()
                             if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
        if not self.files:
            raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {folder}")
        self.frame_count = len(self.files)
        self.fps = fps
        self.name = folder.resolve().name or "frames"
        self.folder = folder

    def __iter__(self) -> Iterator[np.ndarray]:
        for _, frame in self.indexed():
            yield frame

    def indexed(self) -> Iterator[tuple[int, np.ndarray]]:
        """Read every image; one that cannot be decoded (truncated, not an image) is skipped like a
        damaged video's frame: its number is left out, counted in ``unreadable`` and named by
        :meth:`damage_report`, so a tracker run gives it a NaN row instead of stopping. The first
        image is where the box is given, so an unreadable first image is a ``ValueError``."""
        self.decoded, self.unreadable, self.first_unreadable = 0, 0, None
        for index, path in enumerate(self.files):
            with _quiet_stderr_fd():
                bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                if index == 0:
                    raise ValueError(f"cannot read image {path}, the first frame (where the box is given)")
                self._lost(index, 1)
                continue
            self.decoded += 1
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_source(source: str | int | Path) -> FrameSource:
    """A frame source for a camera index (``0`` or ``"0"``), an image folder or a video file."""
    if isinstance(source, int) or (isinstance(source, str) and source.strip().isdigit()
                                   and not Path(source).exists()):
        return CameraSource(int(source))
    path = Path(source).expanduser()
    if path.is_dir():
        return ImageFolderSource(path)
    if not path.exists():
        raise FileNotFoundError(f"no such video, image folder or camera: {source}")
    return VideoFileSource(path)
