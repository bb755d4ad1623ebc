"""Fit and compare tracking-confidence candidates (siamtrack.tracking.confidence).

Tracks every training sequence (``got10k/train`` + ``got10k-extra/train``) with re-detection off,
records each frame's response statistics, the IoU with the truth and whether the target is absent,
then compares candidates by ROC AUC for on-target (IoU >= 0.5) vs lost (IoU < 0.1 or absent):
single statistics and logistic fits of 2-3 of them, fitted on train. The val split is only scored,
never fitted on. Prints a markdown table and the ``TrackerConfig`` values of the chosen fit.

    nice -n 19 env OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/confidence_fit.py --weights student
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from siamtrack.evaluation.experiments import FolderDataset
from siamtrack.tracking.confidence import STAT_NAMES, roc_auc, separation_labels
from siamtrack.geometry import iou
from siamtrack.tracking.tracker import SiamFCTracker

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TRAIN = ["got10k/train", "got10k-extra/train"]
VAL = ["got10k/val"]


def collect(tracker: SiamFCTracker, roots: list[Path]) -> dict[str, np.ndarray]:
    """Per-frame stats (N, 3), IoU (N,) and absent (N,) over every sequence of ``roots``."""
    stats, ious, absent = [], [], []
    for root in roots:
        ds = FolderDataset(root)
        for k in range(len(ds)):
            files, anno = ds[k]
            first = cv2.cvtColor(cv2.imread(files[0]), cv2.COLOR_BGR2RGB)
            tracker.init(first, anno[0])
            for f, gt in zip(files[1:], anno[1:]):
                box = tracker.update(cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB))
                stats.append(tracker.stats.copy())
                gone = not np.isfinite(gt).all()
                absent.append(gone)
                ious.append(np.nan if gone else float(iou(box[None], gt[None])[0]))
    return {"stats": np.array(stats), "iou": np.array(ious), "absent": np.array(absent)}


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-3, iters: int = 50) -> np.ndarray:
    """``[bias, w...]`` of a logistic regression by Newton's method (IRLS), with a small ridge."""
    a = np.concatenate([np.ones((len(x), 1)), x], axis=1)
    w = np.zeros(a.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -50, 50)))
        grad = a.T @ (p - y) + ridge * np.r_[0.0, w[1:]]
        hess = (a * (p * (1 - p))[:, None]).T @ a + ridge * np.eye(len(w))
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


CANDIDATES = {  # name -> the statistics' columns it uses (None: the old score, sigmoid(peak))
    "old: sigmoid(peak)": [0],
    "psr": [1],
    "zscore": [2],
    "logistic(peak, psr)": [0, 1],
    "logistic(peak, zscore)": [0, 2],
    "logistic(peak, psr, zscore)": [0, 1, 2],
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="student")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--cache", default=None, help="npz of collected statistics (reused if present)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    cache = Path(args.cache or f"/tmp/confidence_{Path(args.weights).stem}.npz")
    if cache.is_file():
        data = dict(np.load(cache))
    else:
        tracker = SiamFCTracker.from_pretrained(args.weights, device="cpu")
        t0 = time.time()
        tr = collect(tracker, [Path(args.data) / r for r in TRAIN])
        va = collect(tracker, [Path(args.data) / r for r in VAL])
        data = {f"train_{k}": v for k, v in tr.items()} | {f"val_{k}": v for k, v in va.items()}
        np.savez(cache, **data)
        print(f"collected {len(tr['iou'])} train / {len(va['iou'])} val frames in {time.time() - t0:.0f} s",
              file=sys.stderr)
    used_tr, pos_tr = separation_labels(data["train_iou"], data["train_absent"])
    used_va, pos_va = separation_labels(data["val_iou"], data["val_absent"])
    print(f"train: {pos_tr.sum()} on-target, {(used_tr & ~pos_tr).sum()} lost frames "
          f"({data['train_absent'].sum()} absent); val: {pos_va.sum()} on-target, "
          f"{(used_va & ~pos_va).sum()} lost\n")
    print("| candidate | train ROC AUC | val ROC AUC | bias, weights (" + ", ".join(STAT_NAMES) + ") |")
    print("|---|---:|---:|---|")
    fits = {}
    for name, cols in CANDIDATES.items():
        xtr, xva = data["train_stats"][used_tr][:, cols], data["val_stats"][used_va][:, cols]
        if len(cols) == 1:
            w = np.r_[0.0, 1.0]
        else:
            w = fit_logistic(xtr, pos_tr[used_tr].astype(np.float64))
        full = np.zeros(4)
        full[0] = w[0]
        full[1 + np.array(cols)] = w[1:]
        fits[name] = full
        a_tr = roc_auc(np.c_[np.ones(len(xtr)), xtr] @ w, pos_tr[used_tr])
        a_va = roc_auc(np.c_[np.ones(len(xva)), xva] @ w, pos_va[used_va])
        print(f"| {name} | {a_tr:.3f} | {a_va:.3f} | {', '.join(f'{v:.4f}' for v in full)} |")
    best = fits["logistic(peak, psr, zscore)"]
    print(f"\nTrackerConfig: conf_bias={best[0]:.4f} conf_w_peak={best[1]:.4f} conf_w_psr={best[2]:.4f} "
          f"conf_w_zscore={best[3]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
