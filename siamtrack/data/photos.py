"""Still photos with boxes as a training source (DaSiamRPN-style static pairs).

Detection photos add object and background variety that a few videos lack. A photo has no second
frame, so both crops come from the same image and are made different by independent random shift,
scale, stretch, small rotation, blur and colour jitter (:func:`photo_pair`); the network then has to
match the object under the appearance changes tracking brings.

``boxes.json`` format: ``{"images": [{"file", "width", "height", "boxes": [[x, y, w, h, label],
...]}, ...]}``, ``file`` relative to the json's folder, boxes in 0-based pixels.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from .sources import BoxFilter, SequenceRecord, SequenceSource, warn_data
from .transforms import blur, color_jitter, target_crop, to_gray
from ..config import CONTEXT, EXEMPLAR_SZ, INSTANCE_SZ

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PhotoAugment:
    """How much the two crops of a still photo differ (DaSiamRPN uses similar magnitudes).

    The search crop changes more than the exemplar: its scale jitter stands in for the target's
    scale change between frames, its rotation for a turning object.
    """

    exemplar_scale: float = 0.05     # log-scale jitter of the exemplar crop
    search_scale: float = 0.18       # log-scale jitter of the search crop
    stretch: float = 0.1             # per-side stretch of each crop (on top of the config's)
    exemplar_rotation: float = 5.0   # degrees
    search_rotation: float = 10.0    # degrees
    blur_prob: float = 0.2           # chance per crop of a Gaussian blur
    max_blur: float = 1.5            # its largest sigma, pixels
    color: float = 0.1               # per-crop colour jitter strength
    gray_prob: float = 0.05          # chance that both crops become grey


def photo_pair(image: np.ndarray, box: Sequence[float], rng: np.random.Generator, *,
               exemplar_sz: int = EXEMPLAR_SZ, instance_sz: int = INSTANCE_SZ, context: float = CONTEXT,
               stretch: float = 0.05, shift: float = 8.0,
               aug: PhotoAugment | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Exemplar and search crops (RGB ``uint8``) of one photo's ``box``, augmented independently.

    Returns ``(z, x, z_box, x_box)``; the boxes are the target in crop pixels. The search target
    stays within ``shift`` pixels of the crop centre, where the training label puts the positive.
    """
    aug = aug or PhotoAugment()
    border = None  # mean colour of the photo, computed by crop_affine
    z, z_box = target_crop(image, box, exemplar_sz, rng, context=context, exemplar_sz=exemplar_sz,
                           stretch=stretch + aug.stretch, shift=0.0, scale=aug.exemplar_scale,
                           rotation=aug.exemplar_rotation, border_value=border)
    x, x_box = target_crop(image, box, instance_sz, rng, context=context, exemplar_sz=exemplar_sz,
                           stretch=stretch + aug.stretch, shift=shift, scale=aug.search_scale,
                           rotation=aug.search_rotation, border_value=border)
    out = []
    for crop in (z, x):
        u = rng.uniform(size=2)
        if u[0] < aug.blur_prob:
            crop = blur(crop, 0.3 + (aug.max_blur - 0.3) * u[1])
        out.append(color_jitter(crop, rng, aug.color))
    z, x = out
    if rng.uniform() < aug.gray_prob:
        z, x = to_gray(z), to_gray(x)
    return z, x, z_box, x_box


class PhotoSource(SequenceSource):
    """Every box of a ``boxes.json`` that passes ``box_filter``, each as a one-frame "sequence".

    ``static = True`` tells the pair sampler to build pairs with :func:`photo_pair`. Sampling is
    uniform over boxes. Missing image files and malformed entries are reported and skipped.
    """

    kind = "photos"
    static = True
    cache_size = 0  # records are built from ``items`` in microseconds; no need to keep them

    def __init__(self, boxes_json: str | Path, box_filter: BoxFilter | None = None) -> None:
        super().__init__()
        self.path = Path(boxes_json)
        self.box_filter = box_filter or BoxFilter()
        self.items: list[tuple[str, np.ndarray, str]] = []  # (file, box, label)
        self.num_boxes = 0
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            images = data["images"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            warn_data(f"photos {self.path}: cannot read ({exc}); no photos used")
            return
        root = self.path.parent
        missing, malformed = [], 0
        for entry in images:
            try:
                file = root / entry["file"]
                size = (float(entry["width"]), float(entry["height"]))
                rows = entry.get("boxes") or []
                boxes = np.array([[float(v) for v in r[:4]] for r in rows],
                                 dtype=np.float64).reshape(-1, 4)
                labels = [str(r[4]) if len(r) > 4 else "" for r in rows]
            except (KeyError, TypeError, ValueError, IndexError):
                malformed += 1
                continue
            self.num_boxes += len(boxes)
            if not len(boxes):
                continue
            if not file.is_file():
                missing.append(entry["file"])
                continue
            keep = self.box_filter(boxes, size)
            self.items.extend((str(file), boxes[k], labels[k]) for k in np.flatnonzero(keep))
        if malformed:
            warn_data(f"photos {self.path}: {malformed} malformed image entries skipped")
        if missing:
            warn_data(f"photos {self.path}: {len(missing)} image file(s) missing, e.g. "
                      f"{', '.join(missing[:3])}; skipped")
        log.info("photos %s: %d of %d boxes pass the size filter", self.path, len(self.items),
                 self.num_boxes)

    def __len__(self) -> int:
        return len(self.items)

    def name(self, i: int) -> str:
        file, box, label = self.items[i]
        return f"{Path(file).name}[{label or 'box'} {', '.join(f'{v:.0f}' for v in box)}]"

    def _load(self, i: int) -> SequenceRecord:
        file, box, _ = self.items[i]
        return SequenceRecord([file], box[None].copy(), np.ones(1, dtype=bool))

