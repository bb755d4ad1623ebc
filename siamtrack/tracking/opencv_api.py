"""An OpenCV-shaped tracker, so an app swaps ``cv2.TrackerNano_create(params)`` for
``TrackerSiamFC.create("student")`` in one line.

OpenCV's trackers take the frames ``cv2.VideoCapture`` gives (BGR ``uint8``), ``init(frame, rect)``
with ``rect = (x, y, w, h)`` and answer ``update(frame) -> (ok, rect)`` with integer pixels. This is
the project's only BGR boundary besides the CLI's video I/O: frames are converted to RGB here and
everything behind it (:class:`~.tracker.SiamFCTracker`) stays RGB. ``ok`` is ``not tracker.lost``,
so an app that stops drawing when ``ok`` is False does the right thing when the target is gone.
"""
from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np

from .tracker import SiamFCTracker


class TrackerSiamFC:
    """``cv2.Tracker``-style wrapper around a :class:`SiamFCTracker` (BGR in, integer rect out).

    ``score`` (the calibrated confidence), ``lost`` and ``box`` (float ``[x, y, w, h]``) of the last
    update are exposed for apps that want more than ``ok``.
    """

    def __init__(self, tracker: SiamFCTracker) -> None:
        self.tracker = tracker

    @classmethod
    def create(cls, weights: str = "student", **kwargs: Any) -> "TrackerSiamFC":
        """Like ``cv2.TrackerNano_create``: ``weights`` is what ``SiamFCTracker.from_pretrained``
        takes (``"student"``, ``"teacher"``, a checkpoint, an export folder, ``"student@int8"``), as
        are ``kwargs`` (``device``, ``threads``: 1 by default, the command line's policy)."""
        return cls(SiamFCTracker.from_pretrained(weights, **kwargs))

    @staticmethod
    def _rgb(frame_bgr: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame_bgr)
        if frame.ndim == 3 and frame.shape[2] == 3 and frame.dtype == np.uint8:
            return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        if frame.ndim == 3 and frame.shape[2] == 4 and frame.dtype == np.uint8:  # BGRA (screen grabs)
            return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
        return frame  # grayscale: the same in both orders; anything else gets the tracker's error

    def init(self, frame_bgr: np.ndarray, rect: Sequence[float]) -> None:
        """Start tracking ``rect = (x, y, w, h)`` in a BGR ``uint8`` frame."""
        self.tracker.init(self._rgb(frame_bgr), rect)

    def update(self, frame_bgr: np.ndarray) -> tuple[bool, tuple[int, int, int, int]]:
        """``(ok, (x, y, w, h))`` in integer pixels, as OpenCV's trackers answer; ``ok`` is False
        while the target is lost. The rect is the tracker's current box either way: it keeps
        following the best local match, and with re-detection on (``tracker.cfg.redetect``) jumps to
        a confidently re-detected target (an app that wants a frozen box keeps its last ok one)."""
        box = self.tracker.update(self._rgb(frame_bgr))
        x, y, w, h = (int(round(v)) for v in box)
        return (not self.tracker.lost), (x, y, max(1, w), max(1, h))

    @property
    def score(self) -> float:
        return float(self.tracker.score)

    @property
    def lost(self) -> bool:
        return bool(self.tracker.lost)

    @property
    def box(self) -> np.ndarray:
        return self.tracker.box
