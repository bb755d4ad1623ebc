"""Per-frame tracking: crop geometry and the got10k-compatible SiamFC tracker."""
from .geometry import box_to_center, center_to_box, context_size, crop_square, hann_window, iou
from .tracker import PRETRAINED, SiamFCTracker, as_rgb_uint8, resolve_weights, validate_box

__all__ = ["PRETRAINED", "SiamFCTracker", "as_rgb_uint8", "box_to_center", "center_to_box",
           "context_size", "crop_square", "hann_window", "iou", "resolve_weights", "validate_box"]
