"""Training data: sequence sources, still photos, synthetic clips and SiamFC pair sampling.
Imports: config, geometry, layouts (never tracking or models)."""
from .pairs import PairDataset, PairInfo
from .photos import PhotoAugment, PhotoSource, photo_pair
from .sources import (BoxFilter, DataWarning, GOT10kSource, OTBSource, SequenceRecord,
                      SequenceSource, SyntheticSource, read_boxes)
from .synthetic import SyntheticClip, SyntheticSequence, make_clip, make_sequence, textured_image
from .transforms import crop_affine, load_image, target_crop

__all__ = [
    "BoxFilter", "DataWarning", "GOT10kSource", "OTBSource", "PairDataset", "PairInfo",
    "PhotoAugment", "PhotoSource", "SequenceRecord", "SequenceSource", "SyntheticClip",
    "SyntheticSequence", "SyntheticSource", "crop_affine", "load_image", "make_clip",
    "make_sequence", "photo_pair", "read_boxes", "target_crop", "textured_image",
]
