"""siamtrack: a lightweight SiamFC single-object tracker with distillation and pruning built in.

The root imports nothing eagerly (PEP 562 ``__getattr__``): ``import siamtrack.config`` must not
load torch, OpenCV or got10k, so tools that only read settings stay fast. It may import any layer.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

#: public name -> the module that defines it (imported on first access)
_LAZY = {"CheckpointError": "siamtrack.checkpoint", "load_model": "siamtrack.checkpoint",
         "TrackerConfig": "siamtrack.config", "SiamFCTracker": "siamtrack.tracking.tracker",
         "WEIGHTS": "siamtrack.weights", "apply_threads": "siamtrack.tracking.threads"}
__all__ = sorted([*_LAZY, "__version__"])

if TYPE_CHECKING:
    from .checkpoint import CheckpointError, load_model
    from .config import TrackerConfig
    from .tracking.tracker import SiamFCTracker
    from .tracking.threads import apply_threads
    from .weights import WEIGHTS


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'siamtrack' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
