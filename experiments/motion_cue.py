"""Does the box move with the background? A tracker that has lost its target usually sits on a piece
of the background (the teacher on ``OTB_Human3``'s kerb, the student on the README person clip's
tool cabinet), and then its box moves exactly as the background does, a thing neither the response
map nor the box's looks can tell. Per frame of the training roots and val (re-detection off) this
collects the confidence's features and the raw motion of the box and of the background around it:
the background's shift is the phase correlation (``cv2.phaseCorrelate``, Hann window) of two small
grey crops of the *same* frame square, the previous frame's search region, in the previous frame
and in this one. ``--analyse`` fits the confidence without and with motion terms built from them
(grouped 5-fold by sequence, the shipped rules) and prints ROC AUC and flag rates::

    PYTHONPATH=. python experiments/motion_cue.py --weights student --output runs/dev6/student_motion.npz
    PYTHONPATH=. python experiments/motion_cue.py --analyse runs/dev6/student_motion.npz
"""
from __future__ import annotations

import argparse
import functools
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

import siamtrack.config as config
from siamtrack.config import TrackerConfig
from siamtrack.evaluation import calibrate
from siamtrack.geometry import crop_squares
from siamtrack.tracking.tracker import SiamFCTracker

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOTS = [DATA / "got10k/train", DATA / "got10k-extra/train",
         Path(__file__).resolve().parents[1].parent / "data" / "sources-v3" / "train"]
VAL = [DATA / "got10k/val"]
#: Side of the grey crops the shift is measured on.
SIDE = 64
#: The columns of ``cue``: background shift and box move (frame pixels), the previous size
#: ``sqrt(w * h)``, the phase correlation's peak, and after shifting the previous crop by the
#: background's shift, the mean absolute grey difference inside the previous box, over the whole
#: crop, and the grey standard deviation inside the previous box.
RAW = ("gx", "gy", "bx", "by", "size", "response", "box_diff", "all_diff", "box_std")


def grey_crop(img: np.ndarray, center: np.ndarray, side: float, fill: np.ndarray) -> np.ndarray:
    """``(SIDE, SIDE)`` float32 grey square of ``side`` frame pixels at ``center``."""
    planes = crop_squares(img, center, [side], SIDE, fill)[0].astype(np.float32)
    return 0.299 * planes[0] + 0.587 * planes[1] + 0.114 * planes[2]


class BackgroundMotion:
    """The raw motion columns :data:`RAW` (a ``calibrate.collect`` cue)."""

    window = cv2.createHanningWindow((SIDE, SIDE), cv2.CV_32F)

    def start(self, img: np.ndarray, tracker: SiamFCTracker) -> None:
        self._remember(img, tracker)

    def _remember(self, img: np.ndarray, tracker: SiamFCTracker) -> None:
        self.center, self.size = tracker.center.copy(), tracker.target_sz.copy()
        self.side = tracker._search_side()
        self.patch = grey_crop(img, self.center, self.side, tracker.avg_color)

    def __call__(self, img: np.ndarray, tracker: SiamFCTracker) -> list[float]:
        now = grey_crop(img, self.center, self.side, tracker.avg_color)
        (dx, dy), response = cv2.phaseCorrelate(self.patch, now, self.window)
        scale = self.side / SIDE
        move = tracker.center - self.center
        shifted = cv2.warpAffine(self.patch, np.float32([[1, 0, dx], [0, 1, dy]]), (SIDE, SIDE),
                                 borderMode=cv2.BORDER_REPLICATE)
        diff = np.abs(now - shifted)
        half, mid = self.size / scale / 2.0, SIDE / 2.0
        inside = (slice(max(int(mid - half[1]), 0), int(math.ceil(mid + half[1]))),
                  slice(max(int(mid - half[0]), 0), int(math.ceil(mid + half[0]))))
        row = [dx * scale, dy * scale, float(move[0]), float(move[1]),
               math.sqrt(float(self.size[0] * self.size[1])), float(response),
               float(diff[inside].mean()), float(diff.mean()), float(self.patch[inside].std())]
        self._remember(img, tracker)
        return row


def terms(cue: np.ndarray, cap: float = 1.0) -> dict[str, np.ndarray]:
    """Candidate inputs from the raw columns: in target sizes, ``bg`` the background's shift and
    ``rel`` the box's move against it (both capped at ``cap``), ``lock`` = bg / (bg + rel + 0.02);
    ``change`` the grey change inside the box once the background's shift is undone (capped at 30
    grey levels, over 30), ``change_rel`` the same over the whole crop's (+1), ``change_std`` over
    the box's own grey spread (+5)."""
    g, b, s = cue[:, 0:2], cue[:, 2:4], np.maximum(cue[:, 4], 1.0)
    bg = np.minimum(np.hypot(*g.T) / s, cap)
    rel = np.minimum(np.hypot(*(b - g).T) / s, cap)
    box_diff, all_diff, box_std = cue[:, 6], cue[:, 7], cue[:, 8]
    return {"bg": bg, "rel": rel, "lock": bg / (bg + rel + 0.02), "response": cue[:, 5],
            "change": np.minimum(box_diff, 30.0) / 30.0, "change_rel": np.minimum(box_diff / (all_diff + 1.0), 5.0),
            "change_std": np.minimum(box_diff / (box_std + 5.0), 3.0),
            "log_change": np.log1p(box_diff)}


VARIANTS = (("confidence features", []), ("+ bg, rel", ["bg", "rel"]), ("+ lock", ["lock"]),
            ("+ change", ["change"]), ("+ log_change", ["log_change"]), ("+ change_rel", ["change_rel"]),
            ("+ change_std", ["change_std"]), ("+ bg, rel, change", ["bg", "rel", "change"]),
            ("+ bg, rel, log_change", ["bg", "rel", "log_change"]))


def analyse(path: str) -> None:
    data = dict(np.load(path))
    parts = {p: {k.split("/", 1)[1]: v for k, v in data.items() if k.startswith(p + "/")} for p in ("train", "val")}
    for label, names in VARIANTS:
        def rows(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            t = terms(d["cue"])
            extra = [t[n][:, None] for n in names]
            return {**d, "features": np.concatenate([d["features"], *extra], 1)}

        t, v = rows(parts["train"]), rows(parts["val"])
        n = t["features"].shape[1] + 1
        config.DEFAULT_CONF_WEIGHTS = (0.0,) * n  # the fit's config takes this many weights here
        cfg, rep = calibrate.fit(t, v, TrackerConfig(conf_weights=[0.0] * n))
        flag_oos, flag_val = rep["flag_out_of_sample"], rep["flag_val"]
        print(f"{label:24s} ROC AUC out of sample {rep['auc_out_of_sample']:.3f}, val {rep['auc_val']:.3f} "
              f"(smoothing {cfg.conf_smoothing}); flag on target / lost: out of sample "
              f"{flag_oos['on_target_flagged']:.3f} / {flag_oos['lost_flagged']:.3f}, "
              f"val {flag_val['on_target_flagged']:.3f} / {flag_val['lost_flagged']:.3f}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="student")
    parser.add_argument("--output")
    parser.add_argument("--analyse", metavar="NPZ")
    args = parser.parse_args(argv)
    if args.analyse:
        analyse(args.analyse)
        return 0
    if not args.output:
        parser.error("give --output (or --analyse NPZ)")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tracker = SiamFCTracker.from_pretrained(args.weights, device="cpu", threads=1)
    log = functools.partial(print, flush=True)
    data = {part: calibrate.collect(tracker, roots, cue=BackgroundMotion(), log=log)
            for part, roots in (("val", VAL), ("train", ROOTS))}
    np.savez(args.output, **{f"{p}/{k}": v for p, d in data.items() for k, v in d.items()})
    print("wrote", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
