"""Does the tracked box look more like the first frame's background than like the target?

A lost tracker sits on something that was already there: the kerb beside ``OTB_Human3``'s walker,
the lawn the README's dog runs off, the tool cabinet beside the README's person. The network's own
embedding of such a piece can match the exemplar about as well as the target does (the appearance
terms), but it should match *itself* better: the first frame's search region holds it, away from
the target. So at ``init`` the cue keeps a bank of the search embedding's windows (their central
half, the confidence's ``appearance_core`` window) at every cell whose box overlaps the target's by
IoU 0.1 or less, and per frame reads the chosen box's window (the one the appearance terms read)
against that bank: the largest cosine and the mean of the five largest. A second, running bank adds
the background of a confident frame every ``--every`` frames (the last ``--keep`` of them), and a
memory of the box's own window at those frames gives the largest cosine with the target's recent looks.
``lda_*``: a class-balanced ridge regression (+1 on the windows overlapping the target by IoU 0.7 or
more, -1 on the background bank), first frame only and refitted at those frames: the box's window
scored by a discriminant of this target against its own surroundings.

The shipped form is ``tracking/surround.py`` (the running discriminant on a 2 x 2-pooled core and the
mean of the five closest surroundings windows, ``surround`` and ``lookalike``); this script is the
exploration behind it, one collection per network (1 torch thread; ``--pooled-only`` leaves out the
full-core running discriminants, which cost the teacher minutes per sequence)::

    PYTHONPATH=. python experiments/distractor_cue.py --weights student --output runs/dev7/student_bank2.npz
    PYTHONPATH=. python experiments/distractor_cue.py --analyse runs/dev7/student_bank2.npz
    PYTHONPATH=. python experiments/distractor_cue.py --weights student --clips

Result (weights/MODEL_CARD.md, "The surround terms"), out of sample / val ROC AUC, flag on target /
lost on val, the 12 features and then with one cue: student v5 0.964 / 0.971, 3.8 % / 64.2 %; +
``lda_run`` 0.970 / 0.987, 2.5 % / 83.5 %; + ``run_max`` 0.958 / 0.972, 5.4 % / 79.8 %. Teacher
0.951 / 0.833, 1.5 % / 25.2 %; + ``run_max`` 0.956 / 0.945, 0.0 % / 39.7 %; + ``first_max`` 0.953 /
0.947, 0.0 % / 38.8 %; ``memory`` moves neither.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from cue_study import collect_parts, fit_line, load_parts, save_parts

from siamtrack.geometry import crop_squares, response_cell
from siamtrack.tracking.confidence import feature_window, roc_auc, separation_labels
from siamtrack.tracking.surround import core_vectors, window_boxes_iou
from siamtrack.tracking.tracker import SiamFCTracker

#: Names of the cue's columns, in order.
COLUMNS = ("first_max", "first_top5", "run_max", "run_top5", "memory", "lda_first", "lda_run",
           "lda_run_s2", "lda_run_p2", "lda_run_p1")


def discriminant(positive: np.ndarray, negative: np.ndarray, ridge: float = 0.5) -> np.ndarray:
    """``(D,)`` weights of a class-balanced ridge regression of +1 on ``positive`` and -1 on
    ``negative`` unit vectors, solved in its dual (a few hundred windows against 512-2,048 dimensions)."""
    x = np.concatenate([positive, negative])
    y = np.r_[np.ones(len(positive)), -np.ones(len(negative))]
    s = np.sqrt(np.r_[np.full(len(positive), len(negative) / max(len(positive), 1)), np.ones(len(negative))])
    xs = x * s[:, None]
    alpha = np.linalg.solve(xs @ xs.T + ridge * np.eye(len(x)), s * y)
    return xs.T @ alpha


#: The running discriminant's variants: (column, core pooling, background cell stride).
VARIANTS = (("lda_run_s2", 0, 2), ("lda_run_p2", 2, 1), ("lda_run_p1", 1, 1))


class DistractorBank:
    """A :func:`~siamtrack.evaluation.calibrate.collect` cue: the chosen box's window against the
    background windows of the first frame (and of recent confident frames)."""

    def __init__(self, every: int = 10, keep: int = 4, max_iou: float = 0.1, pooled_only: bool = False) -> None:
        self.every, self.keep, self.max_iou = every, keep, max_iou
        #: only the pooled discriminants (the full-core ones cost minutes per sequence with the teacher's 128 channels)
        self.pooled_only = pooled_only

    def windows(self, tracker: SiamFCTracker, features: np.ndarray, crop_center: np.ndarray,
                crop_px: float, target: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(windows, on_grid)``: the ``(N, C, k, k)`` windows of ``features`` (a search crop of
        ``crop_px`` frame pixels around ``crop_center``) whose box overlaps the tracker's current box
        by ``max_iou`` or less (``target``: by 0.7 or more), and whether each lies on the stride-2 grid."""
        k = tracker._kernel_vec.shape[-1]
        iou = window_boxes_iou(features.shape[-1] - k + 1, tracker.geometry.stride, tracker.geometry.offset,
                               crop_center, crop_px, tracker.cfg.instance_sz, tracker.center, tracker.target_sz)
        rows, cols = np.nonzero(iou >= 0.7) if target else np.nonzero(iou <= self.max_iou)
        windows = np.stack([features[:, r:r + k, c:c + k] for r, c in zip(rows, cols)]) if len(rows) else \
            np.zeros((0, *features.shape[:-2], k, k), dtype=features.dtype)
        return windows, (rows % 2 == 0) & (cols % 2 == 0) | target

    def start(self, img: np.ndarray, tracker: SiamFCTracker) -> None:
        crop = crop_squares(img, tracker.center, [tracker._search_side()], tracker.cfg.instance_sz, tracker.avg_color)
        _, features = tracker.engine.respond_features(tracker._kernel, crop)
        view = (tracker, np.asarray(features[0]), tracker.center.copy(), tracker._search_side())
        self.first = self.windows(*view)
        self.first_pos = self.windows(*view, target=True)
        self.recent: list[tuple[np.ndarray, np.ndarray]] = []
        self.recent_pos: list[tuple[np.ndarray, np.ndarray]] = []
        self.memory: list[np.ndarray] = []
        self.first_vectors = self.running_vectors = core_vectors(self.first[0], 0)
        self.lda_first = self.fit(0, 1, first_only=True)
        keys = [v[1:] for v in VARIANTS if not (self.pooled_only and v[1] == 0)]
        self.lda_run = {(pool, stride): self.fit(pool, stride) for pool, stride in ([] if self.pooled_only else [(0, 1)]) + keys}
        self.frame = 0

    def fit(self, pool: int, stride: int, first_only: bool = False) -> np.ndarray:
        """The discriminant on the banks, the core pooled by ``pool``, the background on every
        ``stride``-th cell."""
        def stack(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
            return core_vectors(np.concatenate([w if stride == 1 else w[grid] for w, grid in parts]), pool)
        pos = [self.first_pos] + ([] if first_only else self.recent_pos)
        neg = [self.first] + ([] if first_only else self.recent)
        return discriminant(stack(pos), stack(neg))

    def __call__(self, img: np.ndarray, tracker: SiamFCTracker) -> tuple[float, ...]:
        self.frame += 1
        features, crop_center, crop_px = tracker._view
        features = np.asarray(features)
        k = tracker._kernel_vec.shape[-1]
        side = features.shape[-1] - k + 1
        cell = response_cell(tracker.center - crop_center, side, tracker.geometry.stride, tracker.geometry.offset,
                             crop_px, tracker.cfg.instance_sz)
        window = feature_window(features, (k, k), cell)[None]
        box = core_vectors(window, 0)[0]

        def read(bank: np.ndarray) -> tuple[float, float]:
            if len(bank) == 0 or bank.shape[1] != len(box):
                return 0.0, 0.0
            sims = np.sort(bank @ box)
            return float(sims[-1]), float(sims[-5:].mean())

        first = read(self.first_vectors)
        running = read(self.running_vectors)
        memory = max((float(m @ box) for m in self.memory), default=1.0)
        lda = [float(self.lda_first @ box), float(self.lda_run[0, 1] @ box) if (0, 1) in self.lda_run else 0.0]
        lda += [float(self.lda_run[pool, stride] @ core_vectors(window, pool)[0]) if (pool, stride) in self.lda_run
                else 0.0 for _, pool, stride in VARIANTS]
        if self.frame % self.every == 0 and tracker.score >= tracker.cfg.found_threshold:
            view = (tracker, features, crop_center, crop_px)
            self.recent = (self.recent + [self.windows(*view)])[-self.keep:]
            self.running_vectors = core_vectors(np.concatenate([self.first[0], *(w for w, _ in self.recent)]), 0)
            self.recent_pos = (self.recent_pos + [self.windows(*view, target=True)])[-self.keep:]
            self.memory = (self.memory + [box])[-self.keep:]
            self.lda_run = {key: self.fit(*key) for key in self.lda_run}
        return (*first, *running, memory, *lda)


def analyse(path: str) -> None:
    """Each column alone on val (ROC AUC), then the confidence refitted with them (the shipped rules)."""
    parts = load_parts(path)
    train, val = parts["train"], parts["val"]
    used, positive = separation_labels(val["iou"], val["absent"])
    print(f"val alone: appearance_core {roc_auc(val['features'][used, 5], positive[used]):.3f}", end="")
    for j, name in enumerate(COLUMNS[:val["cue"].shape[1]]):
        sign = 1 if name == "memory" or name.startswith("lda") else -1
        print(f", {name} {roc_auc(sign * val['cue'][used, j], positive[used]):.3f}", end="")
        margin = val["cue"][used, j] - val["features"][used, 5]
        print(f" (minus core {roc_auc(sign * margin, positive[used]):.3f})", end="")
    print()
    print(fit_line("the 12 features", train, val))
    for label, cols in (("+ first_max", [0]), ("+ first_top5", [1]), ("+ first both", [0, 1]),
                        ("+ run_max", [2]), ("+ run_top5", [3]), ("+ run both", [2, 3]),
                        ("+ memory", [4]), ("+ run_max, memory", [2, 4]), ("+ first_max, run_max, memory", [0, 2, 4]),
                        ("+ lda_first", [5]), ("+ lda_run", [6]), ("+ lda both", [5, 6]), ("+ memory, lda_run", [4, 6]),
                        ("+ lda_run_s2", [7]), ("+ lda_run_p2", [8]), ("+ lda_run_p1", [9]),
                        ("+ run_max, lda_run", [2, 6]), ("+ run_max, lda_run_p2", [2, 8])):
        if max(cols) >= train["cue"].shape[1]:
            continue
        print(fit_line(label, train, val, train["cue"][:, cols], val["cue"][:, cols]))


def clips(weights: str) -> None:
    """The cue on the README clips, every fifth frame: score, appearance_core and the cue's columns."""
    from clip_check import CLIPS, read_clip

    for name in CLIPS:
        frames, box = read_clip(name)
        tracker = SiamFCTracker.from_pretrained(weights, threads=1)
        tracker.init(frames[0], box)
        cue = DistractorBank()
        cue.start(frames[0], tracker)
        print(name, weights)
        for i, frame in enumerate(frames[1:], 1):
            tracker.update(frame)
            values = cue(frame, tracker)
            if i % 5 == 0:
                print(f"  {i:3d} score {tracker.score:.2f} core {tracker.features[5]:.2f} "
                      f"first {values[0]:.2f} run {values[2]:.2f} memory {values[4]:.2f} "
                      f"lda {values[5]:+.2f} / {values[6]:+.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="teacher")
    parser.add_argument("--output", help="npz with train/ and val/ parts (features, cue, iou, absent, seq)")
    parser.add_argument("--analyse", metavar="NPZ")
    parser.add_argument("--clips", action="store_true", help="print the cue on the README clips")
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--keep", type=int, default=4)
    parser.add_argument("--pooled-only", action="store_true",
                        help="leave the full-core running discriminants out (their columns read 0)")
    args = parser.parse_args(argv)
    if args.analyse:
        analyse(args.analyse)
        return 0
    if args.clips:
        clips(args.weights)
        return 0
    if not args.output:
        parser.error("give --output (or --analyse NPZ, or --clips)")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    save_parts(args.output, collect_parts(args.weights, DistractorBank(args.every, args.keep, pooled_only=args.pooled_only)))
    print("wrote", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
