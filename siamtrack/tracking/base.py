"""The got10k tracker interface without importing got10k when tracking alone.

Why: ``got10k.trackers`` imports ``got10k.utils.viz`` and with it matplotlib (~0.85 s of every
tracker's start), although a tracker needs none of it. :class:`TrackerBase` is got10k's
``Tracker`` interface (``name``, ``is_deterministic``, ``init``, ``update``, ``track``) written out,
and it becomes a subclass of ``got10k.trackers.Tracker`` the moment that module is imported, in
any order: already loaded when this module is, or later through a one-name import hook
(:class:`_AdoptOnImport`). So ``isinstance(tracker, got10k.trackers.Tracker)`` holds wherever
got10k is in use, and got10k's experiments accept siamtrack's trackers as before.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import time
from typing import Any, Sequence

import numpy as np

_GOT10K_TRACKERS = "got10k.trackers"


class _Root:
    """A base that can be swapped: CPython refuses ``__bases__`` assignment on a class whose only
    base is ``object``, so :class:`TrackerBase` derives from this until got10k is loaded."""


class TrackerBase(_Root):
    """got10k's ``Tracker``: ``init(image, box)``, ``update(image) -> box`` and ``track(files, box)``."""

    def __init__(self, name: str, is_deterministic: bool = False) -> None:
        self.name = name
        self.is_deterministic = is_deterministic

    def init(self, image: Any, box: Sequence[float]) -> None:
        raise NotImplementedError

    def update(self, image: Any) -> np.ndarray:
        raise NotImplementedError

    def track(self, img_files: Sequence[str], box: Sequence[float],
              visualize: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """got10k's loop: ``(boxes (N, 4), seconds per frame (N,))`` over image files opened with PIL."""
        boxes, times, _ = track_files(self, img_files, box, visualize)
        return boxes, times


def track_files(tracker: Any, img_files: Sequence[str], box: Sequence[float], visualize: bool = False
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """got10k's ``Tracker.track`` for any tracker with ``init`` / ``update`` (the same image loading
    and timing, so boxes and fps are the toolkit's), also keeping each frame's ``tracker.score``
    (NaN where a tracker has none): ``(boxes (N, 4), seconds (N,), scores (N,))``."""
    from PIL import Image

    n = len(img_files)
    boxes, times, scores = np.zeros((n, 4)), np.zeros(n), np.full(n, np.nan)
    boxes[0] = box
    for f, img_file in enumerate(img_files):
        image = Image.open(img_file)
        if image.mode != "RGB":
            image = image.convert("RGB")
        start = time.time()
        if f == 0:
            tracker.init(image, box)
        else:
            boxes[f, :] = tracker.update(image)
        times[f] = time.time() - start
        scores[f] = float(getattr(tracker, "score", np.nan))
        if visualize:
            from got10k.utils.viz import show_frame

            show_frame(image, boxes[f, :])
    return boxes, times, scores


def adopt_got10k() -> bool:
    """Make :class:`TrackerBase` a subclass of ``got10k.trackers.Tracker`` if that module is loaded;
    returns whether it is one now."""
    got10k_base = getattr(sys.modules.get(_GOT10K_TRACKERS), "Tracker", None)
    if not isinstance(got10k_base, type):
        return False
    if not issubclass(TrackerBase, got10k_base):
        TrackerBase.__bases__ = (got10k_base,)
    return True


class _AdoptOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for ``got10k.trackers`` it wraps the path finder's loader so that
    :func:`adopt_got10k` runs right after the module is executed."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _GOT10K_TRACKERS:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run = loader.exec_module

        def exec_then_adopt(module: Any) -> None:
            run(module)
            if adopt_got10k() and self in sys.meta_path:
                sys.meta_path.remove(self)  # its work is done

        loader.exec_module = exec_then_adopt  # this spec's own loader instance
        return spec


if not adopt_got10k() and not any(isinstance(f, _AdoptOnImport) for f in sys.meta_path):
    sys.meta_path.insert(0, _AdoptOnImport())
