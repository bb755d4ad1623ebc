"""Image operations for training pairs: decoding, one-warp crops and photometric augmentation.

Everything works on RGB ``uint8`` ``(H, W, 3)`` arrays with OpenCV/numpy whole-array calls (no
per-pixel Python), because the pair sampler runs in DataLoader workers on few CPU cores.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence, Union

import cv2
import numpy as np
import torch

from ..geometry import box_to_center, context_size
from ..config import CONTEXT, EXEMPLAR_SZ

#: A frame reference as the sources hand it out: a file path, an in-memory RGB image, or a
#: zero-argument callable that renders one (lazy synthetic frames).
Frame = Union[str, Path, np.ndarray, Callable[[], np.ndarray]]


def load_image(frame: Frame) -> np.ndarray | None:
    """Decode ``frame`` to RGB ``uint8``; ``None`` if it cannot be read (callers report and resample).

    BGR exists only here, at the ``cv2.imread`` boundary, and is converted at once. EXIF
    orientation is ignored so pixels match the stored width/height that boxes refer to.
    """
    if isinstance(frame, np.ndarray):
        img = frame
    elif callable(frame):
        img = frame()
    else:
        try:
            bgr = cv2.imread(str(frame), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        except cv2.error:  # pragma: no cover - cv2 returns None for most failures
            bgr = None
        if bgr is None or bgr.size == 0:
            return None
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if img is None or img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        return None
    return img


def mean_color(image: np.ndarray) -> tuple[float, float, float]:
    """Per-channel mean (SiamFC's padding colour); ``cv2.mean`` is ~10x faster than numpy here."""
    m = cv2.mean(image)
    return (m[0], m[1], m[2])


def crop_affine(image: np.ndarray, center: Sequence[float], size: float | Sequence[float],
                out_size: int, angle: float = 0.0, border_value: Sequence[float] | None = None,
                interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Cut a (possibly stretched and rotated) square around ``center`` into ``out_size`` pixels.

    The generalisation of :func:`siamtrack.geometry.crop_square` (same pixel convention,
    identical result when ``size`` is a scalar and ``angle`` is 0) that training augmentation needs:
    ``size = (sx, sy)`` is the source extent of the crop along its own x and y axes, and ``angle``
    (degrees) rotates the crop window about ``center`` (the sign is irrelevant to augmentation). One
    ``cv2.warpAffine``; pixels outside the image take ``border_value`` (default: the mean colour).
    """
    sx, sy = (float(size), float(size)) if np.isscalar(size) else (float(size[0]), float(size[1]))
    if not (sx > 0 and sy > 0 and math.isfinite(sx) and math.isfinite(sy)):
        raise ValueError(f"crop size must be positive and finite, got {size}")
    kx, ky = sx / out_size, sy / out_size
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    # destination pixel u (centre u + 0.5) maps to source centre + R @ diag(kx, ky) @ (u + 0.5 - out/2);
    # warpAffine puts pixel centres at integers, hence the -0.5 on both sides.
    lin = np.array([[c * kx, s * ky], [-s * kx, c * ky]], dtype=np.float64)
    off = (0.5 - out_size / 2.0)
    t = np.array([center[0] - 0.5, center[1] - 0.5]) + lin @ np.array([off, off])
    matrix = np.concatenate([lin, t[:, None]], axis=1)
    if border_value is None:
        border_value = mean_color(image)
    border = tuple(float(v) for v in np.atleast_1d(border_value))
    return cv2.warpAffine(image, matrix, (out_size, out_size),
                          flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    """Random per-channel gain and global brightness offset of relative size ``strength``."""
    if strength <= 0:
        return image
    gain = 1.0 + rng.uniform(-strength, strength, size=3)
    offset = rng.uniform(-strength, strength) * 255.0
    out = image.astype(np.float32) * gain.astype(np.float32) + np.float32(offset)
    return np.clip(out, 0, 255).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grey image replicated on 3 channels (keeps the network's input shape)."""
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur (motion/defocus stand-in for still-photo pairs)."""
    if sigma <= 0:
        return image
    return cv2.GaussianBlur(image, (0, 0), sigmaX=float(sigma))


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """RGB ``uint8`` HWC -> float32 CHW with raw 0..255 values (SiamFC uses no normalisation)."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()


def target_crop(image: np.ndarray, box: Sequence[float], out_size: int, rng: np.random.Generator, *,
                context: float = CONTEXT, exemplar_sz: int = EXEMPLAR_SZ, stretch: float = 0.0,
                shift: float = 0.0, scale: float = 0.0, rotation: float = 0.0,
                border_value: Sequence[float] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """SiamFC training crop around ``box``, with random stretch/shift/scale/rotation.

    The crop side is ``context_size(w, h) * out_size / exemplar_sz`` so the target has the size it
    has at tracking time (the exemplar region resized to ``exemplar_sz``; the search region is the
    same scale, ``out_size / exemplar_sz`` times larger). Then each side is scaled by
    ``1 + U(-stretch, stretch)`` and both by ``exp(U(-scale, scale))``, the window is rotated by
    ``U(-rotation, rotation)`` degrees and its centre moved by ``U(-shift, shift)`` *output* pixels
    per axis, so the target centre lands within ``shift`` pixels (per axis) of the crop centre.
    Always draws 6 numbers from ``rng`` (stable streams whatever the settings).

    Returns ``(crop, target_box)`` with ``target_box`` the target's ``[x, y, w, h]`` in crop pixels
    (axis-aligned approximation when rotated).
    """
    cx, cy, w, h = box_to_center(box)
    u = rng.uniform(-1.0, 1.0, size=6)
    side = context_size(w, h, context) * out_size / exemplar_sz * math.exp(scale * u[0])
    sx, sy = side * (1.0 + stretch * u[1]), side * (1.0 + stretch * u[2])
    angle = rotation * u[3]
    dx, dy = shift * u[4], shift * u[5]
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    # (dx, dy) output pixels along the crop axes, in source pixels (same rotation as crop_affine)
    ox, oy = dx * sx / out_size, dy * sy / out_size
    center = (cx + c * ox + s * oy, cy - s * ox + c * oy)
    crop = crop_affine(image, center, (sx, sy), out_size, angle, border_value)
    tw, th = w * out_size / sx, h * out_size / sy
    tcx, tcy = out_size / 2.0 - dx, out_size / 2.0 - dy
    return crop, np.array([tcx - tw / 2.0, tcy - th / 2.0, tw, th])
