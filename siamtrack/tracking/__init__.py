"""Per-frame tracking: the got10k-compatible SiamFC loop around an engine.

Imports: models, config, geometry and (to resolve weights strings) weights; never training code.
Names load on first use (PEP 562), so ``siamtrack.tracking.threads`` (the command line's
``--threads`` option) imports neither torch nor OpenCV.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {"SiamFCTracker": ".tracker", "as_rgb_uint8": ".tracker", "validate_box": ".tracker",
         "apply_threads": ".threads"}
__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from .threads import apply_threads
    from .tracker import SiamFCTracker, as_rgb_uint8, validate_box


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
