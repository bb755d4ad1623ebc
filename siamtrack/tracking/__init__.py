"""Per-frame tracking: the got10k-compatible SiamFC loop around an engine.

Imports: models, config, geometry and (to resolve weights strings) weights; never training code.
"""
from .tracker import SiamFCTracker, as_rgb_uint8, validate_box

__all__ = ["SiamFCTracker", "as_rgb_uint8", "validate_box"]
