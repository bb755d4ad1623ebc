"""Deterministic synthetic tracking sequences: a textured patch moving and growing over a textured
background. Used by ``siamtrack demo`` (no data set needed), by the tests, and as a training source.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class SyntheticSequence:
    """Frames are RGB ``uint8`` ``(H, W, 3)``; ``boxes`` is ``(N, 4)`` ``[x, y, w, h]`` ground truth."""

    name: str
    frames: list[np.ndarray]
    boxes: np.ndarray


def textured_image(rng: np.random.Generator, height: int, width: int,
                   cells: int = 12, detail: float = 0.35) -> np.ndarray:
    """Smooth colour noise plus fine grain: enough texture for correlation, no repeating pattern."""
    coarse = rng.uniform(0, 255, size=(max(2, height // cells), max(2, width // cells), 3))
    img = cv2.resize(coarse.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 255 * detail / 3, size=(height, width, 3)).astype(np.float32)
    return np.clip(img * (1 - detail) + fine + 255 * detail / 2, 0, 255).astype(np.uint8)


@dataclass
class SyntheticClip:
    """A synthetic clip whose frames are rendered on demand.

    Training samples two frames per clip, so rendering all of them (as :func:`make_sequence` does)
    wastes ~100 ms per draw; a clip holds only the background, the patch and the boxes.
    """

    name: str
    background: np.ndarray
    patch: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.boxes)

    def frame(self, k: int) -> np.ndarray:
        """Render frame ``k`` (RGB ``uint8``), bit-identical to ``make_sequence(...).frames[k]``."""
        fh, fw = self.background.shape[:2]
        x, y, bw, bh = self.boxes[k]
        patch = self.patch
        # render the patch at sub-pixel position and size with one affine warp
        sx, sy = patch.shape[1] / bw, patch.shape[0] / bh
        inv = np.array([[sx, 0, -x * sx - 0.5 + 0.5 * sx], [0, sy, -y * sy - 0.5 + 0.5 * sy]])
        warped = cv2.warpAffine(patch, inv, (fw, fh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        mask = cv2.warpAffine(np.ones(patch.shape[:2], np.float32), inv, (fw, fh),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0)[..., None]
        return (self.background * (1 - mask) + warped * mask).astype(np.uint8)


STYLES = ("texture", "object")


def _object_scene(rng: np.random.Generator, fh: int, fw: int) -> tuple[np.ndarray, np.ndarray]:
    """A framed disc in a complementary colour on a muted, smooth background: shaped like the
    objects that learned trackers were trained on (used by ``siamtrack demo``)."""
    background = textured_image(rng, fh, fw, cells=40, detail=0.15).astype(np.float32)
    gray = background.mean(2, keepdims=True)
    background = gray + 0.4 * (background - gray)
    colour = rng.uniform(0, 255, size=3)
    patch = 0.5 * textured_image(rng, 64, 64, cells=16, detail=0.2).astype(np.float32) + 0.5 * colour
    cv2.circle(patch, (32, 32), 18, tuple(float(255 - c) for c in colour), -1)
    cv2.rectangle(patch, (4, 4), (59, 59), (20.0, 20.0, 20.0), 3)
    return (np.clip(background, 0, 255).astype(np.uint8), np.clip(patch, 0, 255).astype(np.uint8))


def make_clip(num_frames: int = 60, frame_size: tuple[int, int] = (320, 240),
              target_size: tuple[int, int] = (40, 30), growth: float = 1.5,
              seed: int = 0, name: str | None = None, style: str = "texture") -> SyntheticClip:
    """The lazily rendered form of :func:`make_sequence` (same arguments, same clip)."""
    if style not in STYLES:
        raise ValueError(f"unknown clip style {style!r}; choose from {STYLES}")
    rng = np.random.default_rng(seed)
    fw, fh = frame_size
    background = textured_image(rng, fh, fw, cells=16, detail=0.25)
    patch = textured_image(rng, 64, 64, cells=6, detail=0.5)
    # give the target its own colour cast so it is distinguishable from the background
    patch = np.clip(patch.astype(np.int16) + rng.integers(-60, 60, size=3), 0, 255).astype(np.uint8)
    if style == "object":
        # drawn from a second stream, so both styles share the same motion for a given seed
        background, patch = _object_scene(np.random.default_rng([seed, 1]), fh, fw)

    t = np.linspace(0.0, 1.0, num_frames)
    scales = 1.0 + (growth - 1.0) * t
    w = target_size[0] * scales
    h = target_size[1] * scales
    phase = rng.uniform(0, 2 * np.pi, size=2)
    amp_x = (fw - w.max()) / 2 * 0.8
    amp_y = (fh - h.max()) / 2 * 0.8
    cx = fw / 2 + amp_x * np.sin(2 * np.pi * 0.8 * t + phase[0])
    cy = fh / 2 + amp_y * np.sin(2 * np.pi * 0.6 * t + phase[1])
    boxes = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    return SyntheticClip(name or f"synthetic_{seed:04d}", background, patch, boxes.astype(np.float64))


def make_sequence(num_frames: int = 60, frame_size: tuple[int, int] = (320, 240),
                  target_size: tuple[int, int] = (40, 30), growth: float = 1.5,
                  seed: int = 0, name: str | None = None, style: str = "texture") -> SyntheticSequence:
    """A patch that follows a smooth random path and grows linearly by ``growth`` over the clip.

    ``frame_size`` and ``target_size`` are ``(width, height)``. The same ``seed`` gives the same clip.
    ``style="texture"``: a colour-cast random texture on busy colour noise (no semantics at all: it
    tests the loop's geometry with fixed embeddings and adds a hard case to training);
    ``style="object"``: a framed disc on a muted background.
    """
    clip = make_clip(num_frames, frame_size, target_size, growth, seed, name, style)
    return SyntheticSequence(clip.name, [clip.frame(k) for k in range(len(clip))], clip.boxes)
