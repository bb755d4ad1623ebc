"""Per-frame tracking: crop geometry and the got10k-compatible SiamFC tracker."""
from .geometry import box_to_center, center_to_box, context_size, crop_square, hann_window, iou

__all__ = ["box_to_center", "center_to_box", "context_size", "crop_square", "hann_window", "iou"]
