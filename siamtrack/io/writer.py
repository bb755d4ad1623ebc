"""Annotated video output: draws the tracked box and its confidence on RGB frames, writes mp4 whole.

Takes RGB frames (siamtrack's convention) and converts to BGR only at ``cv2.VideoWriter``, the
boundary where OpenCV needs it.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .frames import _quiet_stderr_fd
from .output import VIDEO_CODECS, disk_full, temp_path, write_error

GREEN = (0, 255, 0)
RED = (255, 0, 0)


def draw_box(frame: np.ndarray, box: Sequence[float] | None, score: float | None = None,
             color: tuple[int, int, int] = GREEN, label: str | None = None,
             thickness: int = 2) -> np.ndarray:
    """Copy of RGB ``frame`` with ``box`` ``[x, y, w, h]`` drawn, captioned with ``label`` and ``score``."""
    out = np.ascontiguousarray(frame).copy()
    if box is None:
        return out
    x, y, w, h = (float(v) for v in box)
    if not all(np.isfinite([x, y, w, h])):
        return out
    p1 = (int(round(x)), int(round(y)))
    p2 = (int(round(x + w)), int(round(y + h)))
    cv2.rectangle(out, p1, p2, color, thickness, cv2.LINE_AA)
    parts = [p for p in (label, f"{score:.2f}" if score is not None else None) if p]
    if parts:
        text = " ".join(parts)
        scale = max(0.4, min(out.shape[:2]) / 800)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        tx = min(max(p1[0], 0), max(out.shape[1] - tw, 0))
        ty = p1[1] - 4 if p1[1] - th - 4 >= 0 else min(p2[1] + th + 4, out.shape[0] - base)
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw, ty + base), color, -1)
        cv2.putText(out, text, (tx, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


class AnnotatedVideoWriter:
    """Video writer for RGB frames, opened at the first frame's size (or by :meth:`open`).

    Frames of another size are resized to the first one (a video has a single size). The codec is
    H.264 (``avc1``) when OpenCV's build can encode it, else ``mp4v`` (``note`` then says so); pass
    ``fourcc`` to force one. With ``atomic`` (the default) frames go to a hidden temporary file next
    to ``path``, and :meth:`close` renames it into place only after the file reopens with every
    frame written; a disk that fills up stops :meth:`write` with an ``OSError`` naming the file
    (OpenCV itself reports no failed writes). Use as a context manager so the file is finalised
    even when tracking is interrupted (Ctrl-C keeps the frames so far; other errors discard it).
    """

    def __init__(self, path: str | Path, fps: float | None = 30.0, fourcc: str | None = None,
                 atomic: bool = True) -> None:
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.fourcc = fourcc
        self.atomic = atomic
        self.tmp = temp_path(self.path) if atomic else self.path
        self.note: str | None = None
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def open(self, width: int, height: int) -> None:
        """Open the file for ``width`` x ``height`` frames, saying why when it cannot be opened."""
        suffix = self.path.suffix.lower()
        if self.path.is_dir():
            raise IsADirectoryError(f"cannot write video {self.path}: it is a folder")
        if self.fourcc is None and suffix not in VIDEO_CODECS:
            raise ValueError(f"cannot write video {self.path}: unknown extension {suffix or '(none)'!r}; "
                             f"use one of {', '.join(VIDEO_CODECS)}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise NotADirectoryError(f"cannot write video {self.path}: {self.path.parent} is a file, "
                                     f"not a folder") from None
        if not os.access(self.path.parent, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write video {self.path}: no permission to write in folder "
                                  f"{self.path.parent}")
        codecs = (self.fourcc,) if self.fourcc else VIDEO_CODECS[suffix]
        for k, code in enumerate(codecs):
            with _quiet_stderr_fd():  # FFmpeg prints its encoder probing to fd 2
                writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*code), self.fps,
                                         (width, height))
            if writer.isOpened():
                if k > 0:
                    self.note = (f"this OpenCV build has no {codecs[0]} encoder; writing {code} "
                                 f"(some players and browsers cannot play it)")
                self.fourcc, self._writer, self._size = code, writer, (width, height)
                return
            writer.release()
        _remove(self.tmp)
        raise OSError(f"cannot write video {self.path}: this OpenCV build has no encoder for "
                      f"{' or '.join(codecs)} in {suffix or 'this container'} files (try --output "
                      f"NAME.avi, or --no-video)")

    def write(self, frame: np.ndarray, box: Sequence[float] | None = None, score: float | None = None,
              label: str | None = None, extra_boxes: Sequence[tuple[Sequence[float], tuple[int, int, int]]] = (),
              lost: bool = False) -> None:
        """Draw ``box`` (and optional ``extra_boxes`` as ``(box, rgb colour)``) and append the frame;
        a ``lost`` box is red and captioned ``LOST``, so the flag is visible in the video."""
        out = frame
        for other, color in extra_boxes:
            out = draw_box(out, other, color=color, thickness=1)
        caption = " ".join(p for p in (label, "LOST" if lost else None) if p) or None
        out = draw_box(out, box, score=score, label=caption, color=RED if lost else GREEN)
        if self._writer is None:
            self.open(out.shape[1], out.shape[0])
        assert self._writer is not None and self._size is not None
        if (out.shape[1], out.shape[0]) != self._size:
            out = cv2.resize(out, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        if disk_full(self.tmp):
            raise write_error(self.path, "video", errno.ENOSPC)
        self.frames_written += 1

    def close(self, keep: bool = True) -> None:
        """Finalise the file; with ``keep``, check it reopens with every frame, then rename it into
        place (raises ``OSError`` and removes it otherwise). ``keep=False`` discards it."""
        if self._writer is None:
            return
        self._writer.release()
        self._writer = None
        if not keep:
            _remove(self.tmp)
            return
        found = video_frame_count(self.tmp)
        if found != self.frames_written:
            _remove(self.tmp)
            what = "cannot be opened" if found is None else f"has {found} of {self.frames_written} frames"
            cause = " (disk full)" if disk_full(self.tmp) else ""
            raise OSError(f"video {self.path} was not written whole: it {what}{cause}; removed it")
        if self.atomic:
            os.replace(self.tmp, self.path)

    def __enter__(self) -> "AnnotatedVideoWriter":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self.close(keep=exc_type is None or issubclass(exc_type, KeyboardInterrupt))


def video_frame_count(path: str | Path) -> int | None:
    """Frames the container of ``path`` says it holds, ``None`` when it cannot be opened."""
    with _quiet_stderr_fd():
        cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        return count if count >= 0 else None
    finally:
        cap.release()


def _remove(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
