"""Fit a checkpoint's confidence and lost flag out of sample and write them into a checkpoint.

Tracks (the first ``--frames`` frames of) every sequence of the training roots (``--roots``, default
``got10k/train`` + ``got10k-extra/train``) and all of val with re-detection off, fits the logistic confidence
(grouped k-fold by sequence for the out-of-sample figures), picks the flag's thresholds on the
out-of-fold scores, prints in-sample / out-of-sample / val ROC AUC and writes the settings into
``--output`` atomically (the weights untouched): ``siamtrack.evaluation.calibrate``.

    PYTHONPATH=. python experiments/confidence_fit.py --weights runs/x/final.pth --output weights/siamfc_student.pth
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import torch

from siamtrack.evaluation.calibrate import fit_checkpoint
from siamtrack.weights import resolve_weights

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN = ["got10k/train", "got10k-extra/train"]
VAL = ["got10k/val"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="checkpoint file or shipped name (teacher, student, alexnet)")
    parser.add_argument("--output", help="checkpoint to write (default: --weights itself, rewritten atomically)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--roots", default=",".join(TRAIN),
                        help="comma-separated GOT-10k-layout training folders, relative to --data or absolute "
                             f"(default {','.join(TRAIN)}; the shipped student adds $PWD/../data/sources-v3/train)")
    parser.add_argument("--frames", type=int, default=0,
                        help="frames tracked per training sequence (default 0: all; the shipped fits)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--no-val", action="store_true", help="skip the val report")
    parser.add_argument("--cache", help="npz of the collected frames, reused when present")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    src = resolve_weights(args.weights)
    data = Path(args.data)
    roots = [data / r for r in args.roots.split(",") if r]  # an absolute root replaces data /
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        parser.error(f"no such training root: {', '.join(missing)}")
    fit_checkpoint(src, roots, [] if args.no_val else [data / r for r in VAL],
                   max_frames=args.frames, folds=args.folds, dst=args.output or src, cache=args.cache)
    print(f"wrote {args.output or src}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
