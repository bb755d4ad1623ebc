"""The SiamFC tracker: one exemplar embedding at ``init``, one batched multi-scale search per frame.

Per frame (the hot path, no Python loop over pixels; the only per-scale loop is the crops)::

    frame ─► crop ``scale_num`` search squares (one RGBA region, cv2.warpAffine per scale, planes
          split straight into ONE (S, 3, 255, 255) uint8 batch: see ``geometry.crop_squares``)
          ─► backbone + xcorr with the cached exemplar embedding ─► (S, r, r) maps to the host (r = 17 for AlexNet, 25 for Lite0)
          ─► scale penalty on the peaks, best scale ─► bicubic upsample of that map
             (``geometry.upsample_response``)
          ─► normalise, cosine window ─► peak ─► new centre and size
          ─► confidence: response statistics + the new box's embedding against the exemplar's
             (read from the search features the engine returned with the maps) + motion + the
             box's colours against the first frame's + the box's motion against the background's
             (:mod:`.scene`) + the box's window against this target's surroundings (:mod:`.surround`,
             refitted every 10 found frames), one logistic model (:mod:`.confidence`)

The network runs in an engine (:class:`~siamtrack.models.inference.Engine`): PyTorch eager
(``backend="torch"``) or ONNX Runtime (``backend="onnxruntime"``), the loop around it is the same.
Which engine and which files is :mod:`siamtrack.weights`' business; :meth:`SiamFCTracker.from_pretrained`
only asks it. Stride, response size and offset are read from the network (:func:`siamtrack.models.geometry`).

The class is a :class:`got10k.trackers.Tracker` once got10k is imported (:mod:`.base`: tracking
alone does not import it), so ``tracker.track(img_files, box)`` and the got10k experiments work
unchanged. Boxes are ``[x, y, w, h]`` float pixels (0-based, continuous) and
images are RGB ``uint8`` ``(H, W, 3)`` numpy arrays or PIL images, as everywhere in siamtrack.
"""
from __future__ import annotations

import functools
import math
import os
import threading
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np
import torch

from ..config import TrackerConfig
from ..geometry import (context_size, crop_squares, hann_window, peak_displacement, response_cell,
                        upsample_response)
from ..models import HEAD_TYPES, geometry, head_kind
from ..models.inference import Engine, TorchEngine
from .base import TrackerBase
from .boxhead import damped_size, peak_window, pick_box
from .confidence import (FEATURES, SCENE_COLUMNS, appearance_terms, calibrated_score, classification_maps,
                         colour_histogram, colour_similarity, feature_window, frame_features, map_stats, motion,
                         smooth)
from .redetect import LostSearch
from .scene import SceneProbe
from .surround import SurroundModel
from .threads import DEFAULT_THREADS, apply_threads


def as_rgb_uint8(image: Any) -> np.ndarray:
    """Validate an input frame and return it as a C-contiguous RGB ``uint8`` ``(H, W, 3)`` array.

    PIL images are converted to RGB; grayscale ``(H, W)`` or ``(H, W, 1)`` arrays are promoted to 3
    channels. Anything else (float images, RGBA arrays, empty arrays) is a ``ValueError`` that says
    what is expected, because silently rescaling a float image would track garbage.
    """
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL.Image without importing PIL
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected an RGB uint8 numpy array (H, W, 3) or a PIL image, "
                         f"got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (values 0..255), got dtype {image.dtype}; "
                         f"convert with (img * 255).clip(0, 255).astype(np.uint8) if it is 0..1 float")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image of shape (H, W, 3) (or grayscale (H, W)), "
                         f"got shape {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {image.shape}; expected at least 1x1 pixels")
    return np.ascontiguousarray(image)


def _brief(value: Any, limit: int = 60) -> str:
    """``repr`` cut to ``limit`` characters, so an error message stays one readable line."""
    text = repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate_box(box: Sequence[float], frame_shape: Sequence[int]) -> np.ndarray:
    """``[x, y, w, h]`` as float64 after checking it is finite, positive-sized and overlaps the frame.

    Only a flat 4-vector or a single ``(1, 4)`` row is accepted: a ``(2, 2)`` array is more likely
    corners ``[[x1, y1], [x2, y2]]`` than ``[x, y, w, h]``, and guessing would track the wrong box.
    """
    try:
        arr = np.asarray(box, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"box must be 4 numbers [x, y, w, h], got {_brief(box)}") from exc
    if arr.shape not in ((4,), (1, 4)):
        raise ValueError(f"box must be 4 numbers [x, y, w, h], got {_brief(box)} (shape {arr.shape})")
    arr = arr.reshape(4)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"box must be finite, got {arr.tolist()}")
    x, y, w, h = arr
    if w <= 0 or h <= 0:
        raise ValueError(f"box width and height must be positive, got w={w:g}, h={h:g}")
    height, width = int(frame_shape[0]), int(frame_shape[1])
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise ValueError(f"box [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} frame; "
                         f"it must overlap the frame (0 <= x + w, x < width, likewise for y)")
    return arr


def _host(embedding: Any) -> np.ndarray:
    """An engine's exemplar embedding (a torch tensor on any device, or a numpy array) as numpy."""
    if isinstance(embedding, torch.Tensor):
        return embedding.detach().float().cpu().numpy()
    return np.asarray(embedding, dtype=np.float32)


_CALLER_GUARD = threading.Lock()


def _one_thread_at_a_time(method: Any) -> Any:
    """Raise ``RuntimeError`` when ``init`` / ``update`` of one tracker run in two threads at once.

    Why raise rather than lock: a tracker holds one target's state, so even serialised calls from
    two threads would mix two targets; an error points at the fix (one tracker per thread). The
    owner is a plain thread id (no lock object), so trackers still pickle and deep-copy.
    """
    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kwargs: Any) -> Any:
        me = threading.get_ident()
        with _CALLER_GUARD:
            owner = self.__dict__.get("_caller")
            if owner is not None and owner != me:
                raise RuntimeError(f"{type(self).__name__}.{method.__name__} called while another "
                                   f"thread is inside init/update of the same tracker; a tracker is "
                                   f"not thread-safe: use one tracker per thread")
            self._caller = me
        try:
            return method(self, *args, **kwargs)
        finally:
            if owner is None:
                self._caller = None
    return guarded


def equal_norms(kernels: Any, reference: int) -> Any:
    """``kernels`` (torch or numpy, ``(S, C, h, w)``) scaled to the L2 norm of ``kernels[reference]``.

    A scale pyramid's embeddings come from different crops, so their norms differ and so would the
    heights of their response peaks, which the scale choice compares: without this the tracker
    drifts towards the scale whose kernel happens to be largest (val AO 0.348 against 0.444 for
    the 3-crop search with the shipped teacher, UAV123_wakeboard5 0.135 against 0.390).
    """
    flat = kernels.reshape(len(kernels), -1)
    norms = (flat * flat).sum(1) ** 0.5
    return kernels * (norms[reference] / norms).reshape(-1, 1, 1, 1)


class SiamFCTracker(TrackerBase):
    """SiamFC (Bertinetto et al. 2016) around any net with ``.backbone(x)`` and ``.head(z, x)``.

    ``init(image, box)`` embeds the exemplar once; ``update(image)`` returns the new box and sets
    ``self.score``, a confidence in [0, 1] calibrated per weights to tell on-target from lost frames
    (response statistics, appearance, motion, colour, scene and surround terms in one logistic
    model, :mod:`.confidence`; the same scale for every head), and ``self.lost``, True once the confidence stayed below
    ``cfg.lost_threshold`` for ``cfg.lost_frames`` frames; it clears after ``cfg.found_frames``
    frames at ``cfg.found_threshold`` or more. The box keeps following the best local match either
    way; with ``cfg.redetect`` a widening search also runs while lost (:mod:`.redetect`) and the box
    jumps to a confident re-detection.

    ``backend`` chooses what runs the net: ``"torch"`` (PyTorch eager, on ``device``) or
    ``"onnxruntime"`` (the net is exported to ONNX in memory and run on the CPU; needs the
    ``deploy`` extra). ``net`` may also be a ready :class:`~siamtrack.models.inference.Engine` (e.g. exported graphs
    loaded by :meth:`from_pretrained`); ``self.net`` is then ``None``.

    Invariants, whatever the network outputs or the inputs were: the box is finite, its centre
    stays inside the frame (``0 <= cx <= W``, ``0 <= cy <= H``, so at least half of it overlaps the
    frame) and ``w, h`` stay in ``[1, W]`` / ``[1, H]`` (clamped after every update), so a lost target
    never turns into NaN or a zero-size box. ``score`` is always in ``[0, 1]`` (0 when the network
    gives non-finite logits).

    Inputs that are handled (on purpose, not by accident):

    * frames of another size than at ``init``: the state is in absolute pixels and is clamped into
      each new frame (the search-crop border keeps the first frame's mean colour);
    * grayscale ``(H, W)`` / ``(H, W, 1)`` arrays and PIL images (converted to RGB);
    * a box partly outside the frame, or larger than it: its size is clamped to the frame and its
      centre into the frame at ``init``;
    * a 1-pixel box (sizes never go below 1 pixel) and a whole-frame box;
    * a 1x1 frame.

    Inputs that raise ``ValueError`` saying what was wrong and what is expected: a dtype other than
    ``uint8`` (float, uint16, bool, ...), a channel count other than 1 or 3, an array that is not 2-
    or 3-D, an empty array, something that is not an array or PIL image, a box that is not 4
    numbers, has NaN or infinite values or non-positive ``w`` / ``h``, a box with no overlap with
    the frame, and ``update`` before ``init``.

    Threads: one tracker is for one thread at a time. ``init`` / ``update`` entered while another
    thread is inside either raise ``RuntimeError`` instead of silently mixing two callers' state;
    separate trackers in separate threads are independent.
    """

    def __init__(self, net: torch.nn.Module | Engine, config: TrackerConfig | None = None,
                 device: str | torch.device | None = None, name: str = "SiamFC",
                 meta: dict[str, Any] | None = None, backend: str = "torch",
                 arch: dict[str, Any] | None = None) -> None:
        super().__init__(name, is_deterministic=True)
        self.cfg = config if config is not None else TrackerConfig()
        self.meta: dict[str, Any] = dict(meta or {})
        self.weights_path: Path | None = None
        self.arch: dict[str, Any] | None = arch
        self.net: torch.nn.Module | None = None
        self.export_folder: Path | None = None  # set when the graphs come from an exported folder
        if all(hasattr(net, m) for m in ("embed_exemplar", "respond", "respond_features")):
            self.engine: Engine = net  # type: ignore[assignment]
            self.device = getattr(net, "device", torch.device("cpu"))
            if device is not None and torch.device(device) != self.device:
                raise ValueError(f"this {self.engine.backend} engine runs on {self.device}, not {device}")
        elif hasattr(net, "backbone") and hasattr(net, "head"):
            from ..weights import engine_for

            self.engine = engine_for(net, self.cfg, backend, device)  # type: ignore[arg-type]
            self.device = getattr(self.engine, "device", torch.device("cpu"))
            self.net = net  # type: ignore[assignment]
            try:
                from ..models import model_spec

                self.arch = model_spec(net)  # type: ignore[arg-type]
            except (TypeError, AttributeError):
                pass  # a custom backbone without a spec still tracks
        else:
            raise TypeError("net must have .backbone(x) and .head(z, x) (see siamtrack.models.SiamNet) "
                            "or be an engine with .embed_exemplar / .respond / .respond_features "
                            "(siamtrack.models.inference.Engine)")
        self.backend = self.engine.backend
        self.precision: str = getattr(self.engine, "precision", "fp32")
        # the torch engine's fused (conv+BN), channels_last copy: same outputs, fewer passes
        self.inference_net = self.engine.net if isinstance(self.engine, TorchEngine) else None
        # stride, response side and offset: properties of the network, not settings
        described = self.net if self.net is not None else self.arch or self.inference_net
        if described is None:
            raise ValueError("an engine without its network needs arch= (the spec) for the response geometry")
        self.geometry = geometry(described, self.cfg.exemplar_sz, self.cfg.instance_sz)
        #: ``"xcorr"`` (SiamFC's 3-scale loop) or ``"box"`` (one crop, regressed box: :mod:`.boxhead`)
        self.head_kind: str = head_kind(described)

        self._scales: dict[tuple[int, float, float], tuple[np.ndarray, np.ndarray]] = {}
        self._windows: dict[tuple[int, float], np.ndarray] = {}
        self._kernel: Any = None   # the exemplar embedding (the unit-scale one in exemplar mode)
        self._kernels: Any = None  # scale_mode "exemplar": one embedding per scale factor
        self._pyramid: tuple[np.ndarray, np.ndarray] | None = None  # its (factors, penalties)
        self.center = np.zeros(2)
        self.target_sz = np.ones(2)
        self.avg_color = np.zeros(3)
        self.score = 1.0
        self.reference_peak = -math.inf  # response peak on the first frame (set at init)
        self.stats = np.zeros(3)  # [peak, psr, zscore] of the last response (confidence.STAT_NAMES)
        self.features = np.zeros(len(FEATURES))  # the last frame's confidence inputs
        self._colour_ref: np.ndarray | None = None  # the first frame's box colours (the colour term's reference)
        self._smoothed: np.ndarray | None = None  # their moving average (cfg.conf_smoothing)
        self._kernel_vec = np.zeros((1, 1, 1, 1))  # the exemplar embedding on the host, for the appearance term
        # (search features of the crop the last peak was found in, that crop's centre, its side in
        # frame pixels): where the appearance term reads the chosen box's embedding
        self._view: tuple[np.ndarray, np.ndarray, float] = (np.zeros((1, 1, 1)), np.zeros(2), 1.0)
        self._lost_search = LostSearch()
        self._scene = SceneProbe()  # the previous frame's search region, for the scene terms
        self._surround = SurroundModel()  # this target against its surroundings, for the surround terms

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str] = "student",
                        device: str | torch.device | None = None, name: str | None = None,
                        backend: str | None = None, precision: str | None = None,
                        threads: int | None = DEFAULT_THREADS) -> "SiamFCTracker":
        """Tracker from shipped weights (``"teacher"`` / ``"student"``), a checkpoint path or a folder
        written by ``siamtrack export``, optionally with a variant suffix: ``"student@onnx"``
        (onnxruntime, fp32), ``"student@int8"`` (onnxruntime, int8 search graph).

        ``threads``: torch's and OpenCV's threads, set with :func:`~.threads.apply_threads` (the
        command line's policy: 1, steady beside other work); ``None`` keeps the process's setting.

        A thin wrapper around :func:`siamtrack.weights.load`, which knows the files, the export
        cache and the suffixes; the saved :class:`TrackerConfig` comes with the weights.
        Missing files raise ``CheckpointError`` saying what to do.
        """
        from ..weights import load

        if threads is not None:
            apply_threads(threads)
        loaded = load(name_or_path, device=device, backend=backend, precision=precision, name=name)
        tracker = cls(loaded.engine, loaded.config, device=device, name=loaded.resolved.name,
                      meta=loaded.meta, arch=loaded.arch)
        tracker.net = loaded.net
        tracker.export_folder = loaded.export_folder
        tracker.weights_path = loaded.resolved.path
        return tracker

    # ------------------------------------------------------------------ helpers

    @property
    def scale_factors(self) -> np.ndarray:
        """Search scales relative to the current size (``scale_step`` powers around 1)."""
        return self._scale_table()[0]

    def _scale_table(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scale factors, peak penalties)`` for the *current* ``cfg``, cached per setting, so a
        changed ``tracker.cfg`` (a settings search, an application) takes effect at the next frame."""
        cfg = self.cfg
        key = (cfg.scale_num, cfg.scale_step, cfg.scale_penalty)
        if key not in self._scales:
            n = cfg.scale_num
            penalty = np.full(n, cfg.scale_penalty, dtype=np.float32)
            penalty[n // 2] = 1.0
            self._scales[key] = (cfg.scale_step ** np.linspace(-(n // 2), n // 2, n), penalty)
        return self._scales[key]

    def _weighted_window(self, side: int) -> np.ndarray:
        """``window_influence`` times the cosine window of ``side``, cached per side and influence
        (the side comes from the network output, and the config may be changed between frames)."""
        key = (side, self.cfg.window_influence)
        if key not in self._windows:
            self._windows[key] = (self.cfg.window_influence * hann_window(side)).astype(np.float32)
        return self._windows[key]

    @property
    def lost(self) -> bool:
        """The lost flag (``cfg.lost_*`` / ``found_*`` hysteresis), as :class:`~.redetect.LostSearch` holds it."""
        return self._lost_search.lost

    @property
    def box(self) -> np.ndarray:
        """Current ``[x, y, w, h]`` (float64)."""
        return np.array([self.center[0] - self.target_sz[0] / 2, self.center[1] - self.target_sz[1] / 2,
                         self.target_sz[0], self.target_sz[1]], dtype=np.float64)

    def _clamp(self, height: int, width: int) -> None:
        self.target_sz = np.clip(self.target_sz, 1.0, [float(width), float(height)])
        self.center = np.clip(self.center, 0.0, [float(width), float(height)])

    def _locate(self, maps: np.ndarray, penalties: np.ndarray) -> tuple[int, int, int]:
        """SiamFC's response post-processing on ``(S, r, r)`` logits; ``penalties`` are the per-scale
        peak penalties of :meth:`_scale_table` (looked up once per frame, with the scale factors).

        Scale penalty and best scale by peak, bicubic upsampling by ``response_up``, min-shift and
        normalise, cosine window, peak. Returns ``(best scale, flat peak index, side)`` and sets
        ``self.stats`` from the best scale's raw map.
        The best scale is picked on the raw maps and only its map is upsampled (SiamFC upsamples all
        of them first): bicubic upsampling barely moves a peak's height, and skipping the other
        ``S - 1`` resizes saves ~0.5 ms a frame on 2 CPU cores.
        """
        cfg = self.cfg
        scored = maps.max(axis=(1, 2)) * penalties
        scored[~np.isfinite(scored)] = -np.inf
        best = int(scored.argmax())
        side = maps.shape[-1] * cfg.response_up
        r = upsample_response(maps[best], cfg.response_up)
        # argmax of (1 - wi) * (r - min) / sum(r - min) + wi * window with OpenCV's reductions and
        # one fused multiply-add (a 400x400 map for Lite0: each numpy pass ~40 us on 2 cores); the
        # min is subtracted, not folded into the sum, so a flat map scales to zeros, not to a huge
        # constant that would drown the window in float32 rounding
        r -= cv2.minMaxLoc(r)[0]
        mass = float(cv2.sumElems(r)[0])
        scored_map = cv2.scaleAdd(r, (1.0 - cfg.window_influence) / (mass + 1e-16), self._weighted_window(side))
        col, row = cv2.minMaxLoc(scored_map)[3]
        self.stats = np.array(map_stats(maps[best]))  # the confidence's map statistics
        return best, int(row) * side + int(col), side

    # ------------------------------------------------------------------ got10k API
    @_one_thread_at_a_time
    def init(self, image: Any, box: Sequence[float]) -> None:
        """Validate the inputs, embed the exemplar once and cache it."""
        img = as_rgb_uint8(image)
        x, y, w, h = validate_box(box, img.shape)
        self.center = np.array([x + w / 2.0, y + h / 2.0])
        self.target_sz = np.array([w, h], dtype=np.float64)
        self.avg_color = img.reshape(-1, 3).mean(0)
        self._clamp(img.shape[0], img.shape[1])
        z_sz = context_size(*self.target_sz, self.cfg.context)
        if HEAD_TYPES[self.head_kind].pyramid(self.cfg.scale_mode):
            # kernel i matches a target grown by factors[i]: its crop is factors[i] times tighter
            self._pyramid = self._scale_table()
            factors = self._pyramid[0]
            z = crop_squares(img, self.center, z_sz / factors, self.cfg.exemplar_sz, self.avg_color)
            mid = len(factors) // 2
            self._kernels = equal_norms(self.engine.embed_exemplar(z), mid)
            self._kernel = self._kernels[mid:mid + 1]
        else:
            self._pyramid = self._kernels = None
            z = crop_squares(img, self.center, [z_sz], self.cfg.exemplar_sz, self.avg_color)
            self._kernel = self.engine.embed_exemplar(z)
        self._kernel_vec = _host(self._kernel)  # the appearance term's reference (unit scale)
        self._colour_ref = colour_histogram(img, self.center, self.target_sz)
        self._read_first_crop(img)
        self._weighted_window(self.geometry.response_sz * self.cfg.response_up)  # warm the cache
        self.score = 1.0
        self._smoothed = None
        self._lost_search.reset(self.center, self.target_sz)
        self._scene.remember(img, self.center, self.target_sz, self._search_side(), self.avg_color)

    def _search_side(self, target_sz: np.ndarray | None = None) -> float:
        """Side in frame pixels of the (unit-scale) search crop for ``target_sz`` (default: the current size)."""
        cfg = self.cfg
        size = self.target_sz if target_sz is None else target_sz
        return context_size(*size, cfg.context) * cfg.instance_sz / cfg.exemplar_sz

    def _read_first_crop(self, img: np.ndarray) -> None:
        """One search crop at the first box serves two references: its raw response peak (the box
        head's classification map), which a re-detected tile must come close to, and its features,
        the first frame's target and surroundings that start the surround model."""
        side = self._search_side()
        crop = crop_squares(img, self.center, [side], self.cfg.instance_sz, self.avg_color)
        out, features = self.engine.respond_features(self._kernel, crop)
        self._surround.start(features[0], self._kernel_vec.shape[-1], self.geometry.stride, self.geometry.offset,
                             self.cfg.instance_sz, (self.center, side), (self.center, self.target_sz))
        peak = float(classification_maps(out).max())
        self.reference_peak = peak if math.isfinite(peak) else -math.inf

    def _appearance(self, features: np.ndarray, crop_center: np.ndarray, crop_px: float,
                    center: np.ndarray) -> tuple[tuple[float, float], tuple[float, float]]:
        """The confidence's terms for the looks of a box at ``center``: ``((appearance,
        appearance_core), (surround, lookalike))``, the exemplar embedding and the surround model
        against the window of a search crop's embedding ``features`` ``(C, h, w)`` (the crop: ``crop_px`` frame
        pixels around ``crop_center``) that a response cell at ``center`` correlates, blended
        bilinearly between cells (:func:`~.confidence.feature_window`). The features come with the
        response, so this costs a few slices and dot products, not a backbone pass on one more crop."""
        side = features.shape[-1] - self._kernel_vec.shape[-1] + 1  # the response map's side
        cell = response_cell(center - crop_center, side, self.geometry.stride, self.geometry.offset,
                             crop_px, self.cfg.instance_sz)
        window = feature_window(features, self._kernel_vec.shape[-2:], cell)
        return appearance_terms(window, self._kernel_vec[0]), self._surround.terms(window)

    def _colour(self, img: np.ndarray, center: np.ndarray, size: np.ndarray) -> float:
        """The confidence's colour term for a box: its colours against the first frame's box."""
        return colour_similarity(colour_histogram(img, center, size), self._colour_ref)

    def _update_box(self, img: np.ndarray, x_sz: float) -> tuple[np.ndarray, np.ndarray]:
        """The box head's step: one crop, :func:`~.boxhead.pick_box`, returns ``(centre, size)``."""
        cfg = self.cfg
        crops = crop_squares(img, self.center, [x_sz], cfg.instance_sz, self.avg_color)
        outs, features = self.engine.respond_features(self._kernel, crops)
        out = outs[0]                                              # (6, r, r)
        self._view = (features[0], self.center, x_sz)
        to_frame = x_sz / cfg.instance_sz                          # frame pixels per crop pixel
        pick = pick_box(out, tuple(self.target_sz / to_frame), self.geometry.stride, self.geometry.offset,
                        peak_window(out.shape[-1]), cfg.box_penalty_k, cfg.box_window_influence)
        self.stats = np.array(map_stats(out[0]))
        center = self.center + np.array([pick.dx, pick.dy]) * to_frame
        size = damped_size(self.target_sz, np.array([pick.w, pick.h]) * to_frame, pick, cfg.box_lr)
        return center, size

    @_one_thread_at_a_time
    def update(self, image: Any) -> np.ndarray:
        """Locate the target in ``image``; returns ``[x, y, w, h]`` float64 and sets ``self.score``
        and ``self.lost``. The box always follows the best local match (lost or not); while lost
        with ``cfg.redetect`` tiles around the last confident box are searched too, and the box
        jumps to a tile's match that is confident (``redetect_found``) and more so than the local one."""
        if self._kernel is None:
            raise ValueError("call init(image, box) before update(image)")
        img = as_rgb_uint8(image)
        cfg = self.cfg
        prev = (self.center.copy(), self.target_sz.copy())
        step = getattr(self, self.STEPS[HEAD_TYPES[self.head_kind].step])
        self.center, self.target_sz = step(img, self._search_side())
        box = self._finish(img, prev)
        if self.lost and cfg.redetect:
            box = self._redetect(img)
        return box

    def _redetect(self, img: np.ndarray) -> np.ndarray:
        """One lost frame's tile search (:class:`~.redetect.LostSearch`) at the last confident box's
        size; a candidate replaces the local match only when it scores ``redetect_found`` or more and
        above the local match, so a false alarm costs time, not the target (a frozen box, the first
        design, lost targets the flag had wrongly given up: val AO 0.562 against 0.581 off)."""
        cfg = self.cfg
        anchor_size = self._lost_search.anchor[1]
        x_sz = self._search_side(anchor_size)
        score, found = self._lost_search.search(
            img, self.engine, self._kernel, x_sz, cfg, self.avg_color, self.geometry.stride,
            self.geometry.offset, self.reference_peak,
            lambda features, tile, c: self._appearance(features, tile, x_sz, c),
            lambda c: self._colour(img, c, anchor_size))
        if found is not None and score > self.score:
            self.center, self.target_sz, self.score = found, anchor_size.copy(), score
            self._smoothed = None
            self._lost_search.recover()
            self._clamp(img.shape[0], img.shape[1])
            self._scene.remember(img, self.center, self.target_sz, self._search_side(), self.avg_color)
        return self.box

    #: ``HeadType.step`` (``models.heads.HEAD_TYPES``) -> the method that moves the box one frame,
    #: ``(image, search side) -> (centre, size)`` (the score comes from :meth:`_finish`, one scale for all)
    STEPS = {"scales": "_update_scales", "box": "_update_box"}

    def _update_scales(self, img: np.ndarray, x_sz: float) -> tuple[np.ndarray, np.ndarray]:
        """SiamFC's step: ``scale_num`` crops (or one crop against the exemplar's scale pyramid), one
        response map per scale, :meth:`_locate`."""
        cfg = self.cfg
        if self._pyramid is not None:  # one crop against the exemplar's scale pyramid (set at init)
            factors, penalties = self._pyramid
            crops = crop_squares(img, self.center, [x_sz], cfg.instance_sz, self.avg_color)
            maps, features = self.engine.respond_features(self._kernels, crops)
        else:
            factors, penalties = self._scale_table()
            crops = crop_squares(img, self.center, x_sz * factors, cfg.instance_sz, self.avg_color)
            # (S, 17, 17) logits on the host: the post-processing is a few small arrays, faster
            # with OpenCV than as torch ops
            maps, features = self.engine.respond_features(self._kernel, crops)
        best, loc, side = self._locate(maps, penalties)
        row, col = divmod(loc, side)
        factor = float(factors[best])
        # the crop the peak was found in, and its side in frame pixels
        crop, crop_px = (0, x_sz) if self._pyramid is not None else (best, x_sz * factor)
        self._view = (features[crop], self.center, crop_px)
        disp = peak_displacement(row, col, side, self.geometry.stride, cfg.response_up, self.geometry.offset,
                                 crop_px, cfg.instance_sz)
        return self.center + disp, self.target_sz * ((1.0 - cfg.scale_lr) + cfg.scale_lr * factor)

    def _finish(self, img: np.ndarray, prev: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
        """Clamp the new state into the frame, score it (``prev``: the centre and size before this
        frame, for the motion terms) and set the lost flag; the box to return."""
        cfg = self.cfg
        self._clamp(img.shape[0], img.shape[1])
        if not np.isfinite(self.center).all() or not np.isfinite(self.target_sz).all():  # a broken net
            self.center, self.target_sz = prev
        jump, resize = motion(prev[0], prev[1], self.center, self.target_sz)
        scene = self._scene.step(img, self.center, self.target_sz, self._search_side(), self.avg_color)
        appearance, surround = self._appearance(*self._view, self.center)
        self.features = frame_features(self.stats, self.reference_peak, appearance, jump, resize,
                                       self._colour(img, self.center, self.target_sz), scene, surround)[0]
        self._smoothed = smooth(self._smoothed, self.features, cfg.conf_smoothing)
        score = float(calibrated_score(self._smoothed, cfg.conf_weights)[0])
        finite = math.isfinite(float(self.stats[0])) and math.isfinite(score) and self.stats[0] > -50.0
        self.score = score if finite else 0.0  # non-finite logits: no confidence
        self._lost_search.observe(self.score, self.center, self.target_sz, cfg, self._smoothed[SCENE_COLUMNS])
        features, crop_center, crop_px = self._view
        self._surround.observe(self.score >= cfg.found_threshold, features, (crop_center, crop_px),
                               (self.center, self.target_sz))
        return self.box

