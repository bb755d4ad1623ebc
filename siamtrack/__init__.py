"""siamtrack: a lightweight SiamFC single-object tracker with distillation and pruning built in."""
from .config import TrackerConfig

__version__ = "0.1.0"
__all__ = ["TrackerConfig", "__version__"]
