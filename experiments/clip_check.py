"""The README clips, frame by frame: is the box on the target, and does the lost flag say so?

The clips have no ground truth, so the reference is two other trackers (NanoTrack v2 and vitTrack,
OpenCV, from ``../shared/models``) where they agree: a frame is *on target* when our box's centre
lies within half a target size (``sqrt(w * h)`` of the reference) of both references' centres,
*off target* when it lies outside that radius of both, and *unknown* where the references disagree
with each other. Frames where the target is out of view (checked by eye, :data:`ABSENT`) are
*off target* whatever the references say. A *loss* is a run of at least ``--min-run`` off-target
frames after an on-target one; the flag's delay is the first flagged frame of the run minus its
first frame. References are cached as ``runs/clips/<clip>_<baseline>.txt``.

    PYTHONPATH=. python experiments/clip_check.py --weights student,teacher
    PYTHONPATH=. python experiments/clip_check.py --weights student --redetect --save runs/clips/boxes
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np

from siamtrack.cli import parse_box
from siamtrack.evaluation.baselines import make_baseline, with_shared_files
from siamtrack.io.frames import open_source
from siamtrack.tracking.threads import apply_threads
from siamtrack.tracking.tracker import SiamFCTracker

VIDEOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"
CLIPS = ("sam2_dog", "opentracker_oneperson")
REFERENCES = ("nano", "vit")
#: Frames (0-based, inclusive) where the target is out of view, checked by eye: the dog runs out
#: of the right edge (last sliver at 73) and its head re-enters at 102.
ABSENT = {"sam2_dog": [(74, 101)]}


def read_clip(name: str) -> tuple[list[np.ndarray], np.ndarray]:
    """RGB frames and the first-frame box of ``name`` (``<name>.mp4`` and ``<name>.box``)."""
    frames = list(open_source(str(VIDEOS / f"{name}.mp4")))
    box = np.array(parse_box((VIDEOS / f"{name}.box").read_text()))
    return frames, box


def track(tracker: Any, frames: list[np.ndarray], box: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes ``(N, 4)`` and lost flags ``(N,)`` of one run (frame 0: the given box, not lost)."""
    tracker.init(frames[0], box)
    boxes, lost = [box], [False]
    for frame in frames[1:]:
        boxes.append(np.asarray(tracker.update(frame), dtype=np.float64))
        lost.append(bool(getattr(tracker, "lost", False)))
    return np.array(boxes), np.array(lost)


def reference(name: str, key: str, frames: list[np.ndarray], box: np.ndarray, cache: Path) -> np.ndarray:
    """Baseline ``key``'s boxes on clip ``name`` (tracked once, then read from ``cache``)."""
    path = cache / f"{name}_{key}.txt"
    if path.is_file():
        return np.loadtxt(path, delimiter=",")
    boxes, _ = track(make_baseline(key, with_shared_files()), frames, box)
    cache.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, boxes, delimiter=",")
    return boxes


def near(boxes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Whether each box's centre is within half the reference's size of the reference's centre."""
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    ref_centre = ref[:, :2] + ref[:, 2:] / 2
    return np.hypot(*(centre - ref_centre).T) <= 0.5 * np.sqrt(ref[:, 2] * ref[:, 3])


def labels(name: str, boxes: np.ndarray, refs: list[np.ndarray]) -> np.ndarray:
    """Per frame 1 (on target), 0 (off target) or -1 (unknown)."""
    agree = np.all([near(a, b) for a in refs for b in refs if a is not b], axis=0)
    on = np.all([near(boxes, r) for r in refs], axis=0)
    off = ~np.any([near(boxes, r) for r in refs], axis=0)
    out = np.where(agree & on, 1, np.where(agree & off, 0, -1))
    for first, last in ABSENT.get(name, []):
        out[first:last + 1] = 0
    return out


def losses(label: np.ndarray, min_run: int) -> list[tuple[int, int]]:
    """``(first, last)`` frames of each run of >= ``min_run`` off-target frames that follows an
    on-target frame (unknown frames neither start nor end a run)."""
    runs, start, seen_on = [], None, False
    for i, value in enumerate(list(label) + [1]):
        if value == 0 and start is None and seen_on:
            start = i
        elif value == 1:
            if start is not None and i - start >= min_run:
                runs.append((start, i - 1))
            start, seen_on = None, True
    return runs


def report(name: str, label: np.ndarray, lost: np.ndarray, min_run: int) -> list[str]:
    """Lines: on-target frames flagged (and which), each loss with the flag's delay, unknown frames."""
    on = label == 1
    lines = [f"on target {int(on.sum())} frames, flagged on {int(lost[on].sum())} "
             f"({lost[on].mean() if on.any() else float('nan'):.1%})"
             + (f": frames {runs_text(np.flatnonzero(on & lost))}" if (on & lost).any() else "")]
    for first, last in losses(label, min_run):
        flagged = np.flatnonzero(lost[first:last + 1])
        delay = f"flag after {flagged[0]} frames" if len(flagged) else "never flagged"
        lines.append(f"loss at {first}-{last} ({last - first + 1} frames): {delay}, "
                     f"flagged on {len(flagged)} of them")
    lines.append(f"unknown (references disagree) {int((label == -1).sum())} frames")
    return [f"{name}: {line}" for line in lines]


def runs_text(frames: np.ndarray) -> str:
    """``3-7, 12`` for frames 3..7 and 12."""
    parts, start = [], None
    for i, f in enumerate(frames):
        if start is None:
            start = f
        if i + 1 == len(frames) or frames[i + 1] != f + 1:
            parts.append(f"{start}" if start == f else f"{start}-{f}")
            start = None
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="student,teacher")
    parser.add_argument("--clips", default=",".join(CLIPS))
    parser.add_argument("--redetect", action="store_true", help="track with re-detection on")
    parser.add_argument("--min-run", type=int, default=5, help="off-target frames that make a loss")
    parser.add_argument("--cache", default="runs/clips", help="folder for the reference boxes")
    parser.add_argument("--save", help="folder to write each run's boxes and flags (x,y,w,h,lost)")
    args = parser.parse_args(argv)
    apply_threads(1)
    cache = Path(args.cache)
    for name in args.clips.split(","):
        frames, box = read_clip(name)
        refs = [reference(name, key, frames, box, cache) for key in REFERENCES]
        for weights in args.weights.split(","):
            tracker = SiamFCTracker.from_pretrained(weights, threads=1)
            tracker.cfg = dataclasses.replace(tracker.cfg, redetect=args.redetect)
            boxes, lost = track(tracker, frames, box)
            label = labels(name, boxes, refs)
            print("\n".join(f"[{weights}{' redetect' if args.redetect else ''}] {line}"
                            for line in report(name, label, lost, args.min_run)), flush=True)
            if args.save:
                out = Path(args.save)
                out.mkdir(parents=True, exist_ok=True)
                tag = weights.replace("/", "_").replace("@", "_") + ("_redetect" if args.redetect else "")
                np.savetxt(out / f"{name}_{tag}.txt", np.c_[boxes, lost], delimiter=",", fmt="%.2f")
    return 0


if __name__ == "__main__":
    sys.exit(main())
