#!/usr/bin/env python
"""Pack training roots into a small folder of target-centred crops, for a remote (GPU) machine.

    python experiments/data/pack_crops.py --got10k ../shared/data/got10k ../shared/data/got10k-extra \
        ../data/sources-v3 --photos ../shared/data/photos/boxes.json --out pack/data --step 4

Every ``step``-th usable frame of every sequence (usable as the training sources define it: target
present, box through SiamFC's size filter) is cut into a square around its target, ``margin`` times
the search region (``context_size * instance_sz / exemplar_sz``), so the pair sampler's shift, scale
and stretch jitter still find real pixels; the square is stored at ``min(its side, size)`` pixels.
The boxes are rewritten in crop pixels, so the packed root is an ordinary GOT-10k-layout root
(``list.txt``, frames, ``groundtruth.txt``) and the photos an ordinary ``boxes.json``: training on it
needs no code of its own, only ``data.max_frame_gap`` divided by ``step`` (frames are ``step``
source frames apart). It prints the size; the device tool carries 64 MiB in all.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from siamtrack.config import CONTEXT, EXEMPLAR_SZ, INSTANCE_SZ
from siamtrack.data.photos import PhotoSource
from siamtrack.data.sources import BoxFilter, GOT10kSource
from siamtrack.data.transforms import crop_affine, load_image, mean_color
from siamtrack.geometry import context_size


def crop_around(img: np.ndarray, box: np.ndarray, margin: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """The square ``margin`` search regions wide around ``box`` (RGB) and the box in its pixels."""
    x, y, w, h = box
    side = margin * context_size(w, h, CONTEXT) * INSTANCE_SZ / EXEMPLAR_SZ
    out = int(min(size, round(side)))
    crop = crop_affine(img, (x + w / 2, y + h / 2), side, out, border_value=mean_color(img))
    k = out / side
    return crop, np.array([out / 2 - w * k / 2, out / 2 - h * k / 2, w * k, h * k])


def write_jpeg(path: Path, rgb: np.ndarray, quality: int) -> int:
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]):
        raise OSError(f"could not write {path}")
    return path.stat().st_size


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--got10k", nargs="*", default=[], help="GOT-10k-layout roots (train subset)")
    p.add_argument("--photos", nargs="*", default=[], help="boxes.json files")
    p.add_argument("--out", required=True)
    p.add_argument("--step", type=int, default=4, help="keep every step-th usable frame (default 4)")
    p.add_argument("--margin", type=float, default=1.6, help="crop side in search regions (default 1.6)")
    p.add_argument("--photo-margin", type=float, default=2.0, help="the same for photos (default 2.0)")
    p.add_argument("--size", type=int, default=360, help="largest stored side in pixels (default 360)")
    p.add_argument("--quality", type=int, default=80, help="JPEG quality (default 80)")
    args = p.parse_args(argv)
    out = Path(args.out)
    total, frames, names = 0, 0, []
    box_filter = BoxFilter()
    for root in args.got10k:
        src = GOT10kSource(root, "train", box_filter)
        for i in tqdm(range(len(src)), desc=Path(root).name, unit="seq"):
            rec = src.sequence(i)
            keep = np.flatnonzero(rec.valid)[::args.step]
            if len(keep) < 2:
                continue
            name = src.name(i)
            if name in names:
                raise SystemExit(f"pack_crops: two sequences named {name}")
            folder = out / "seqs" / name
            folder.mkdir(parents=True, exist_ok=True)
            rows = []
            for k, f in enumerate(keep, start=1):
                crop, box = crop_around(load_image(rec.frames[f]), rec.boxes[f], args.margin, args.size)
                total += write_jpeg(folder / f"{k:08d}.jpg", crop, args.quality)
                rows.append(",".join(f"{v:.2f}" for v in box))
            (folder / "groundtruth.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")
            names.append(name)
            frames += len(keep)
    if names:
        (out / "seqs" / "list.txt").write_text("\n".join(names) + "\n", encoding="utf-8")
    images = []
    for path in args.photos:
        src = PhotoSource(path, box_filter)
        folder = out / "photos"
        folder.mkdir(parents=True, exist_ok=True)
        for i in tqdm(range(len(src)), desc="photos", unit="box"):
            rec = src.sequence(i)
            crop, box = crop_around(load_image(rec.frames[0]), rec.boxes[0], args.photo_margin, args.size)
            file = f"{len(images):06d}.jpg"
            total += write_jpeg(folder / file, crop, args.quality)
            images.append({"file": file, "width": crop.shape[1], "height": crop.shape[0],
                           "boxes": [[round(float(v), 2) for v in box]], "source": src.name(i)})
    if images:
        (out / "photos" / "boxes.json").write_text(json.dumps({"info": {"packed_from": args.photos},
                                                               "images": images}), encoding="utf-8")
    print(f"{len(names)} sequences, {frames} frames, {len(images)} photo boxes: {total / 2**20:.1f} MiB in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
