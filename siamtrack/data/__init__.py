"""Training data: sequence sources, still photos, synthetic clips and SiamFC pair sampling."""
from .synthetic import SyntheticSequence, make_sequence, textured_image

__all__ = ["SyntheticSequence", "make_sequence", "textured_image"]
