"""siamtrack: a lightweight SiamFC single-object tracker with distillation and pruning built in."""
from .checkpoint import CheckpointError, load_model
from .config import TrackerConfig
from .tracking import SiamFCTracker

__version__ = "0.1.0"
__all__ = ["CheckpointError", "SiamFCTracker", "TrackerConfig", "load_model", "__version__"]
