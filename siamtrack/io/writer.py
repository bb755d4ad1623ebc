"""Annotated video output: draws the tracked box and its confidence on RGB frames, writes mp4.

Takes RGB frames (siamtrack's convention) and converts to BGR only at ``cv2.VideoWriter``, the
boundary where OpenCV needs it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

GREEN = (0, 255, 0)


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
    """mp4 (``mp4v``) writer for RGB frames, opened lazily at the first frame's size.

    Frames of another size are resized to the first one (a video has a single size). Use as a
    context manager so the file is finalised even when tracking is interrupted.
    """

    def __init__(self, path: str | Path, fps: float | None = 30.0, fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        self.fps = float(fps) if fps and fps > 0 else 30.0
        self.fourcc = fourcc
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames_written = 0

    def _open(self, width: int, height: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps,
                                 (width, height))
        if not writer.isOpened():
            raise OSError(f"cannot open video writer for {self.path} (codec {self.fourcc})")
        self._writer, self._size = writer, (width, height)

    def write(self, frame: np.ndarray, box: Sequence[float] | None = None, score: float | None = None,
              label: str | None = None, extra_boxes: Sequence[tuple[Sequence[float], tuple[int, int, int]]] = ()
              ) -> None:
        """Draw ``box`` (and optional ``extra_boxes`` as ``(box, rgb colour)``) and append the frame."""
        out = frame
        for other, color in extra_boxes:
            out = draw_box(out, other, color=color, thickness=1)
        out = draw_box(out, box, score=score, label=label)
        if self._writer is None:
            self._open(out.shape[1], out.shape[0])
        assert self._writer is not None and self._size is not None
        if (out.shape[1], out.shape[0]) != self._size:
            out = cv2.resize(out, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(cv2.cvtColor(out, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> "AnnotatedVideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
