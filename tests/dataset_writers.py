"""Write sequences to disk in GOT-10k and OTB layouts (test fixtures; only the tests write datasets).

The GOT-10k writer produces everything the ``got10k`` toolkit (0.1.3) reads for a ``train``/``val``
subset: ``list.txt``, 8-digit JPEG frames, ``groundtruth.txt``, ``absence.label``, ``cover.label``,
``cut_by_image.label`` and a ``meta_info.ini`` whose first lines follow GOT-10k's order (its
``resolution`` is what ``ExperimentGOT10k`` uses to bound boxes). NaN boxes mark absent targets.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from siamtrack.data.synthetic import SyntheticSequence


def _write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> None:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                       [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
        raise OSError(f"cannot write {path}")


def _box_line(box: np.ndarray, sep: str = ",") -> str:
    return sep.join("NaN" if not np.isfinite(v) else f"{v:.2f}" for v in box)


def write_got10k_folder(root: str | Path, sequences: Sequence[SyntheticSequence],
                        subset: str = "val", jpeg_quality: int = 95) -> Path:
    """Write ``sequences`` as ``root/<subset>/<name>/...``; returns the subset folder.

    ``got10k.datasets.GOT10k(root, subset=subset, return_meta=True)`` reads the result, and so does
    :class:`siamtrack.data.GOT10kSource` (with ``root`` or the returned folder). Existing
    sequences of the same names are overwritten; ``list.txt`` lists exactly ``sequences``.
    """
    folder = Path(root) / subset
    folder.mkdir(parents=True, exist_ok=True)
    for seq in sequences:
        d = folder / seq.name
        d.mkdir(parents=True, exist_ok=True)
        boxes = np.asarray(seq.boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(seq.frames):
            raise ValueError(f"{seq.name}: {len(boxes)} boxes for {len(seq.frames)} frames")
        for k, frame in enumerate(seq.frames):
            _write_jpeg(d / f"{k + 1:08d}.jpg", frame, jpeg_quality)
        absent = ~np.isfinite(boxes).all(axis=1)
        (d / "groundtruth.txt").write_text("".join(_box_line(b) + "\n" for b in boxes))
        (d / "absence.label").write_text("".join(f"{int(a)}\n" for a in absent))
        (d / "cover.label").write_text("".join(f"{0 if a else 8}\n" for a in absent))
        (d / "cut_by_image.label").write_text("0\n" * len(boxes))
        h, w = seq.frames[0].shape[:2]
        meta = [
            "[METAINFO]",
            "url: synthetic",
            "begin: 00:00:00",
            f"end: 00:00:{len(boxes) // 10:02d}",
            "anno_fps: 10Hz",
            "object_class: patch",
            "motion_class: moving",
            "major_class: synthetic",
            "root_class: object",
            "motion_adverb: smoothly",
            f"resolution: ({w}, {h})",
        ]
        (d / "meta_info.ini").write_text("\n".join(meta) + "\n")
    (folder / "list.txt").write_text("\n".join(s.name for s in sequences) + "\n")
    return folder


def write_otb_folder(root: str | Path, sequences: Sequence[SyntheticSequence],
                     jpeg_quality: int = 95) -> Path:
    """Write ``sequences`` as ``root/<name>/img/0001.jpg ...`` plus ``groundtruth_rect.txt``.

    OTB ground truth is 1-based, so 1 is added to ``x`` and ``y``; rows are comma-separated.
    Returns ``root``.
    """
    root = Path(root)
    for seq in sequences:
        img = root / seq.name / "img"
        img.mkdir(parents=True, exist_ok=True)
        boxes = np.asarray(seq.boxes, dtype=np.float64).reshape(-1, 4).copy()
        boxes[:, :2] += 1.0
        for k, frame in enumerate(seq.frames):
            _write_jpeg(img / f"{k + 1:04d}.jpg", frame, jpeg_quality)
        (root / seq.name / "groundtruth_rect.txt").write_text(
            "".join(_box_line(b) + "\n" for b in boxes))
    return root
