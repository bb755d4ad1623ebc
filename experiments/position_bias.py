"""Does a network's response map favour some positions whatever the image holds? A padding bias
(SiamDW, Zhang and Peng 2019: zero padding makes border cells differ) would pull a tracker towards
the crop's border. Per network: exemplars of random training frames against search crops cut at
random places of other random frames (no target in them), each map standardised; prints the mean
of each ring of cells from the border inwards, and how often the argmax lands in each ring (a ring
of radius ``r`` has ``8 r`` cells, so with no bias the counts grow with ``r``)::

    PYTHONPATH=. python experiments/position_bias.py --weights teacher,student

Written for the teacher's loss of val's ``OTB_Human3`` walker at frame 10, whose raw peak sits 3
cells from the map's corner at frames 6-9 (weights/MODEL_CARD.md has the result: no border bias).
``--trace SEQUENCE`` prints that: per frame of a val sequence, the chosen scale's raw peak cell and
value, the value at the map's centre, the box's move and the score::

    PYTHONPATH=. python experiments/position_bias.py --weights teacher --trace OTB_Human3_first199 --frames 14
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import numpy as np

from siamtrack.data.transforms import load_image
from siamtrack.evaluation.experiments import FolderDataset
from siamtrack.geometry import crop_squares
from siamtrack.tracking.tracker import SiamFCTracker

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def background_maps(tracker: SiamFCTracker, sequences: list[tuple[list[str], np.ndarray]], count: int,
                    seed: int) -> np.ndarray:
    """``(count, r, r)`` standardised response maps of random exemplars on target-free search crops."""
    rng = random.Random(seed)
    maps: list[np.ndarray] = []
    while len(maps) < count:
        files, anno = rng.choice(sequences)
        i, j = rng.randrange(len(files)), rng.randrange(len(files))
        if not np.isfinite(anno[i]).all() or min(anno[i][2:]) < 4:
            continue
        tracker.init(load_image(files[i]), anno[i])
        search = load_image(files[j])
        side = tracker._search_side()
        height, width = search.shape[:2]
        centre = np.array([rng.uniform(side / 2, max(side / 2 + 1, width - side / 2)),
                           rng.uniform(side / 2, max(side / 2 + 1, height - side / 2))])
        crop = crop_squares(search, centre, [side], tracker.cfg.instance_sz, tracker.avg_color)
        response = tracker.engine.respond_features(tracker._kernel, crop)[0][0]
        maps.append((response - response.mean()) / (response.std() + 1e-6))
    return np.array(maps)


class TracedTracker(SiamFCTracker):
    """The tracker, keeping the chosen scale's raw map of the last frame (``last_map``)."""

    last_map: np.ndarray | None = None

    def _locate(self, maps: np.ndarray, penalties: np.ndarray) -> tuple[int, int, int]:
        best, loc, side = super()._locate(maps, penalties)
        self.last_map = maps[best]
        return best, loc, side


def trace(name: str, sequence: str, frames: int) -> None:
    """Print, per frame of val's ``sequence``, where the raw map peaks and how the box moves."""
    data = FolderDataset(DATA / "got10k" / "val")
    files, anno = data[data.seq_names.index(sequence)]
    tracker = TracedTracker.from_pretrained(name, threads=2)
    tracker.init(load_image(files[0]), anno[0])
    for k, path in enumerate(files[1:frames], start=1):
        before = tracker.center.copy()
        tracker.update(load_image(path))
        m = tracker.last_map
        row, col = np.unravel_index(m.argmax(), m.shape)
        move = tracker.center - before
        print(f"frame {k}: raw peak cell ({row}, {col}) of {m.shape[0]} x {m.shape[1]}, {m.max():.2f}; "
              f"centre {m[m.shape[0] // 2, m.shape[1] // 2]:.2f}; box moved ({move[0]:+.1f}, {move[1]:+.1f}) px; "
              f"score {tracker.score:.2f}")


def rings(maps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean standardised response per ring (0 = the border) and argmax counts per ring (0 = centre)."""
    mean, n = maps.mean(0), maps.shape[-1]
    by_ring = [np.concatenate([mean[r, r:n - r], mean[n - 1 - r, r:n - r],
                               mean[r:n - r, r], mean[r:n - r, n - 1 - r]]).mean() for r in range(n // 2 + 1)]
    centre = (n - 1) / 2
    peaks = [int(max(abs(np.array(np.unravel_index(m.argmax(), m.shape)) - centre))) for m in maps]
    return np.array(by_ring), np.bincount(peaks, minlength=n // 2 + 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", default="teacher,student")
    ap.add_argument("--roots", default="got10k/train,got10k-extra/train", help="under ../shared/data")
    ap.add_argument("--maps", type=int, default=150)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--trace", metavar="SEQUENCE", help="instead: trace the peak on a val sequence")
    ap.add_argument("--frames", type=int, default=14, help="frames to trace")
    args = ap.parse_args(argv)
    if args.trace:
        for name in args.weights.split(","):
            trace(name, args.trace, args.frames)
        return 0
    sequences = []
    for root in args.roots.split(","):
        data = FolderDataset(DATA / root)
        sequences += [data[k] for k in range(len(data.seq_names))]
    for name in args.weights.split(","):
        by_ring, peaks = rings(background_maps(SiamFCTracker.from_pretrained(name, threads=2), sequences,
                                               args.maps, args.seed))
        print(f"{name} ({len(by_ring) * 2 - 1} x {len(by_ring) * 2 - 1} map)")
        print("  mean standardised response, border ring first:", " ".join(f"{v:+.2f}" for v in by_ring))
        print("  argmax per ring, centre first:", " ".join(str(c) for c in peaks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
