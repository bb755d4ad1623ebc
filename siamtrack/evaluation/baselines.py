"""OpenCV trackers as got10k trackers, so baselines run through exactly the same experiments.

One adapter, :class:`OpenCVTracker`, wraps every OpenCV tracker: it converts RGB frames to the BGR
that OpenCV expects, float ``[x, y, w, h]`` boxes to the integer tuples its API takes, and keeps the
last box when OpenCV reports a lost target (``ok == False``), because the benchmarks need a box on
every frame. Which baselines exist depends on the OpenCV build (KCF and CSRT live in
opencv-contrib) and on model files the user passes (NanoTrack, vitTrack); :func:`baseline_status`
says why one is unavailable so the benchmark can report it as skipped instead of crashing.
:func:`with_shared_files` fills in the ONNX files of the shared model folder (``../shared/models``)
for a baseline the user gave no files for (``siamtrack speed`` and ``benchmark`` do).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import cv2
import numpy as np
from ..tracking.base import TrackerBase

#: baseline key -> tracker name used in results, tables and plots
BASELINE_NAMES: dict[str, str] = {"mil": "MIL", "kcf": "KCF", "csrt": "CSRT", "nano": "NanoTrack",
                                  "vit": "vitTrack"}
#: the user-supplied model files each baseline needs (command-line option names, as identifiers)
BASELINE_FILES: dict[str, tuple[str, ...]] = {"nano": ("nano_backbone", "nano_head"), "vit": ("vit_model",)}
#: file names of those models in the shared model folder (opencv_zoo's NanoTrack v2 and vitTrack)
SHARED_MODEL_FILES: dict[str, str] = {"nano_backbone": "nanotrackv2_backbone_sim.onnx",
                                      "nano_head": "nanotrackv2_head_sim.onnx", "vit_model": "vitTracker.onnx"}


class BaselineUnavailable(RuntimeError):
    """This OpenCV build or the given files cannot provide the requested baseline."""


def shared_models_dir() -> Path | None:
    """The shared model folder: ``$SIAMTRACK_MODELS`` when set, else ``../shared/models`` next to the
    repository or the current folder; ``None`` when absent."""
    env = os.environ.get("SIAMTRACK_MODELS")
    if env:  # authoritative when set, so a deployment (or a test) can point elsewhere or opt out
        candidates = [Path(env).expanduser()]
    else:
        candidates = [Path(__file__).resolve().parents[3] / "shared" / "models",
                      Path.cwd().parent / "shared" / "models"]
    return next((c for c in candidates if c.is_dir()), None)


def with_shared_files(files: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    """``files`` with the shared folder's ONNX files filled in for every baseline given none of its
    own: a baseline the user passed any file for keeps exactly what was passed (a user's backbone is
    never paired with the shared head). Files missing from the shared folder stay unset."""
    out = dict(files or {})
    folder = shared_models_dir()
    if folder is None:
        return out
    for options in BASELINE_FILES.values():
        if any(out.get(opt) for opt in options):
            continue
        for opt in options:
            candidate = folder / SHARED_MODEL_FILES[opt]
            if candidate.is_file():
                out[opt] = str(candidate)
    return out


def _contrib_factory(kind: str) -> Callable[[], Any] | None:
    # opencv-contrib puts KCF/CSRT at the top level (4.5.1+) and in cv2.legacy
    for owner in (cv2, getattr(cv2, "legacy", None)):
        fn = getattr(owner, f"Tracker{kind}_create", None) if owner is not None else None
        if fn is not None:
            return fn
    return None


def _check_file(path: str | None, option: str) -> str:
    if not path:
        raise BaselineUnavailable(f"needs its ONNX model: pass --{option.replace('_', '-')} FILE")
    if not Path(path).is_file():
        raise BaselineUnavailable(f"--{option.replace('_', '-')} {path}: file not found")
    return str(Path(path).resolve())


def baseline_factory(key: str, files: Mapping[str, str | None] | None = None) -> Callable[[], Any]:
    """A zero-argument function that creates a fresh OpenCV tracker for baseline ``key``.

    Raises :class:`BaselineUnavailable` with the reason when this OpenCV build or the given files
    cannot provide it, and ``ValueError`` for an unknown key.
    """
    files = dict(files or {})
    key = key.lower()
    if key == "mil":
        if not hasattr(cv2, "TrackerMIL_create"):
            raise BaselineUnavailable(f"cv2.TrackerMIL_create not in OpenCV {cv2.__version__}")
        return cv2.TrackerMIL_create
    if key in ("kcf", "csrt"):
        fn = _contrib_factory(key.upper())
        if fn is None:
            raise BaselineUnavailable(f"needs opencv-contrib-python (no cv2.Tracker{key.upper()}_create "
                                      f"in OpenCV {cv2.__version__})")
        return fn
    if key == "nano":
        if not hasattr(cv2, "TrackerNano_create"):
            raise BaselineUnavailable(f"cv2.TrackerNano_create not in OpenCV {cv2.__version__}")
        backbone = _check_file(files.get("nano_backbone"), "nano_backbone")
        head = _check_file(files.get("nano_head"), "nano_head")
        return _NanoFactory(backbone, head)
    if key == "vit":
        if not hasattr(cv2, "TrackerVit_create"):
            raise BaselineUnavailable(f"cv2.TrackerVit_create not in OpenCV {cv2.__version__}")
        return _VitFactory(_check_file(files.get("vit_model"), "vit_model"))
    raise ValueError(f"unknown baseline {key!r}; choose from {', '.join(BASELINE_NAMES)}")


@dataclass(frozen=True)
class _NanoFactory:
    backbone: str
    head: str

    def __call__(self) -> Any:
        params = cv2.TrackerNano_Params()
        params.backbone = self.backbone
        params.neckhead = self.head
        return cv2.TrackerNano_create(params)


@dataclass(frozen=True)
class _VitFactory:
    model: str

    def __call__(self) -> Any:
        params = cv2.TrackerVit_Params()
        params.net = self.model
        return cv2.TrackerVit_create(params)


@contextlib.contextmanager
def opencv_errors_only() -> Iterator[None]:
    """Silence OpenCV's per-tracker DNN warnings (one per NanoTrack/vitTrack creation) meanwhile."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)
    if log is None or not hasattr(log, "getLogLevel"):
        yield
        return
    previous = log.getLogLevel()
    log.setLogLevel(log.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        log.setLogLevel(previous)


def baseline_status(key: str, files: Mapping[str, str | None] | None = None) -> str | None:
    """``None`` when baseline ``key`` can run, else the reason it cannot (one line).

    Besides the build and file checks this creates the tracker once, so a corrupt ONNX file is
    reported here rather than halfway through a benchmark.
    """
    try:
        factory = baseline_factory(key, files)
        with opencv_errors_only():
            factory()
    except BaselineUnavailable as exc:
        return str(exc)
    except cv2.error as exc:
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        return f"OpenCV could not create it: {lines[-1].strip() if lines else exc}"
    return None


def _to_bgr(image: Any) -> np.ndarray:
    if hasattr(image, "convert") and hasattr(image, "mode"):  # PIL image
        image = np.asarray(image.convert("RGB"))
    image = np.asarray(image)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)


def to_int_rect(box: Sequence[float]) -> tuple[int, int, int, int]:
    """Float ``[x, y, w, h]`` -> the ``(x, y, w, h)`` int tuple OpenCV trackers take (sides >= 1)."""
    x, y, w, h = (float(v) for v in box)
    return (int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h))))


class OpenCVTracker(TrackerBase):
    """got10k tracker around any OpenCV ``cv2.Tracker`` (RGB in, float ``[x, y, w, h]`` out).

    ``factory`` creates a fresh OpenCV tracker for every sequence (OpenCV trackers cannot be
    re-initialised reliably). ``update`` keeps the previous box when OpenCV reports a lost target
    (``ok == False``) or raises, and sets ``self.score`` (OpenCV's tracking score where it has one,
    else 1.0 / 0.0 for found / lost).
    """

    def __init__(self, name: str, factory: Callable[[], Any]) -> None:
        # one repetition: OpenCV's trackers are run once per sequence like the learned ones
        super().__init__(name, is_deterministic=True)
        self.factory = factory
        self._tracker: Any = None
        self._box = np.zeros(4)
        self.score = 1.0
        self.lost_frames = 0

    def init(self, image: Any, box: Sequence[float]) -> None:
        self._tracker = self.factory()
        self._box = np.asarray(box, dtype=np.float64).reshape(4).copy()
        self.lost_frames = 0
        self.score = 1.0
        self._tracker.init(_to_bgr(image), to_int_rect(self._box))

    def update(self, image: Any) -> np.ndarray:
        return self.update_bgr(_to_bgr(image))

    def update_bgr(self, image: np.ndarray) -> np.ndarray:
        """:meth:`update` on a BGR ``uint8`` array, as OpenCV takes it (no colour conversion: what
        ``siamtrack speed`` times, so a baseline is not charged for our RGB convention)."""
        if self._tracker is None:
            raise ValueError("call init(image, box) before update(image)")
        try:
            ok, rect = self._tracker.update(image)
        except cv2.error:
            ok, rect = False, None
        if ok:
            self._box = np.asarray(rect, dtype=np.float64).reshape(4)
            get_score = getattr(self._tracker, "getTrackingScore", None)
            score = float(get_score()) if get_score is not None else -1.0
            self.score = score if score >= 0 else 1.0  # MIL reports -1: no score of its own
        else:
            self.lost_frames += 1
            self.score = 0.0
        return self._box.copy()


def make_baseline(key: str, files: Mapping[str, str | None] | None = None,
                  name: str | None = None) -> OpenCVTracker:
    """The ready-to-run adapter for baseline ``key`` (raises :class:`BaselineUnavailable`)."""
    return OpenCVTracker(name or BASELINE_NAMES[key.lower()], baseline_factory(key, files))

