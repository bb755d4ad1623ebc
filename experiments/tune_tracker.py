"""Tracker settings search on the *training* sequences (val stays the test set): AO per setting.

Each ``--grid`` entry is ``key=v1,v2,...`` (``TrackerConfig`` fields); every combination is scored by
AO as the GOT-10k toolkit computes it: the mean IoU over all visible frames of all sequences pooled
(long sequences weigh more), with the mean of per-sequence AO beside it. The
sequences run in ``--workers`` processes with one torch thread each. Prints a markdown table, best
first, and writes it with the settings to ``--json``.

    nice -n 19 env OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/tune_tracker.py \\
        --weights runs/teacher_lite0_box/teacher/final.pth --workers 2 \\
        --grid box_penalty_k=0.04,0.1,0.2 box_window_influence=0.21,0.35 box_lr=0.52,0.8
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from siamtrack.evaluation.experiments import FolderDataset
from siamtrack.geometry import iou

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOTS = ("got10k/train", "got10k-extra/train")

_TRACKER: Any = None
_FRAMES: dict[str, list[np.ndarray]] = {}


def _setup(weights: str) -> None:
    global _TRACKER
    import torch

    from siamtrack.tracking.tracker import SiamFCTracker

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    _TRACKER = SiamFCTracker.from_pretrained(weights, device="cpu")


def _score(job: tuple[dict[str, Any], list[str], np.ndarray, int]) -> tuple[float, int]:
    """Sum of IoUs and visible frames of one sequence under one setting (frames are decoded once per worker and kept)."""
    overrides, files, anno, step = job
    key = files[0]
    if key not in _FRAMES:
        _FRAMES.clear()  # one sequence at a time: jobs come grouped by sequence
        _FRAMES[key] = [cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files[::step]]
    frames = _FRAMES[key]
    anno = anno[::step]
    base = _TRACKER.cfg
    _TRACKER.cfg = dataclasses.replace(base, **overrides)
    try:
        _TRACKER.init(frames[0], anno[0])
        ious = [float(iou(_TRACKER.update(img)[None], gt[None])[0])
                for img, gt in zip(frames[1:], anno[1:]) if np.isfinite(gt).all()]
    finally:
        _TRACKER.cfg = base
    return float(np.sum(ious)), len(ious)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="teacher, student or a checkpoint path")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--roots", default=",".join(ROOTS), help="GOT-10k-layout folders under --data")
    parser.add_argument("--grid", nargs="+", required=True, metavar="KEY=V1,V2")
    parser.add_argument("--step", type=int, default=1, help="use every step-th frame (faster motion)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)

    axes: dict[str, list[Any]] = {}
    for item in args.grid:
        key, _, values = item.partition("=")
        axes[key] = [json.loads(v) for v in values.split(",")]
    settings = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
    seqs = []
    for root in args.roots.split(","):
        ds = FolderDataset(Path(args.data) / root)
        seqs += [(f"{root}/{name}", *ds[k]) for k, name in enumerate(ds.seq_names)]
    jobs = [(s, list(files), np.asarray(anno, dtype=np.float64), args.step)
            for _, files, anno in seqs for s in settings]
    t0 = time.time()
    with ProcessPoolExecutor(args.workers, initializer=_setup, initargs=(args.weights,)) as pool:
        scores = list(pool.map(_score, jobs, chunksize=len(settings)))
    sums = np.array([s for s, _ in scores], dtype=np.float64).reshape(len(seqs), len(settings))
    counts = np.array([n for _, n in scores], dtype=np.float64).reshape(len(seqs), len(settings))
    ao = sums.sum(0) / np.maximum(counts.sum(0), 1)
    table = sums / np.maximum(counts, 1)
    seq_mean = table.mean(axis=0)
    order = np.argsort(-ao)
    print(f"weights {args.weights}; {len(seqs)} sequences ({args.roots}), every {args.step} frame(s); "
          f"{time.time() - t0:.0f} s\n")
    print("| " + " | ".join(axes) + " | AO (frames pooled) | mean of sequence AO |")
    print("|" + "---:|" * (len(axes) + 2))
    for i in order:
        print("| " + " | ".join(str(settings[i][k]) for k in axes) + f" | {ao[i]:.3f} | {seq_mean[i]:.3f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"weights": args.weights, "roots": args.roots,
                                               "settings": settings, "ao": ao.tolist(),
                                               "sequence_mean_ao": seq_mean.tolist(),
                                               "per_sequence": dict(zip([s[0] for s in seqs], table.tolist()))},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
