"""Score a checkpoint on a GOT-10k-layout val root and write the metrics into it, as a finished stage has them.

For weights trained where the evaluation could not run (the GPU machine has no got10k toolkit: the
pipeline saves the weights, skips the confidence fit and the scoring, and says so). Fit the
confidence first (``experiments/confidence_fit.py``), then score; the weights and tracker settings
are not touched, ``meta.metrics`` and ``meta.summary`` are (re)written atomically.

    PYTHONPATH=. python experiments/score_checkpoint.py runs/v5/distill/final.pth --eval-root ../shared/data/got10k
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from siamtrack.pipeline import score_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--eval-root", required=True, help="folder holding the subset (e.g. ../shared/data/got10k)")
    parser.add_argument("--subset", default="val")
    args = parser.parse_args(argv)
    if not args.checkpoint.is_file():
        parser.error(f"no checkpoint at {args.checkpoint}")
    if not Path(args.eval_root).is_dir():
        parser.error(f"no evaluation root at {args.eval_root}")
    metrics = score_checkpoint(args.checkpoint, args.eval_root, args.subset)
    print(" ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
