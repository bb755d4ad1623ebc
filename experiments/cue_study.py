"""What the candidate-cue experiments share (``colour_cues.py``, ``motion_cue.py``, ``verifier_cue.py``):
collecting every frame of the training roots and val with an experiment's cue, the ``.npz`` they
write, and one fit of the confidence with extra input columns, printed as one line.

Why a fit with more columns needs care: ``TrackerConfig`` checks that ``conf_weights`` has one
weight per :data:`~siamtrack.tracking.confidence.FEATURES` (a checkpoint must not load with a
model of other inputs), so :func:`fit_line` widens that check for its own process only.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

import siamtrack.config as config
from siamtrack.config import TrackerConfig
from siamtrack.evaluation import calibrate
from siamtrack.tracking.tracker import SiamFCTracker

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: The 102 training sequences (data v3 beside the shared roots) and val.
ROOTS = [DATA / "got10k/train", DATA / "got10k-extra/train",
         Path(__file__).resolve().parents[1].parent / "data" / "sources-v3" / "train"]
VAL = [DATA / "got10k/val"]
PARTS = ("train", "val")


def collect_parts(weights: str, cue: Any, roots: list[Path] | None = None,
                  val: list[Path] | None = None) -> dict[str, dict[str, np.ndarray]]:
    """``{"val": ..., "train": ...}``: :func:`~siamtrack.evaluation.calibrate.collect` of ``weights``
    (1 thread) over val and the training roots with ``cue``."""
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    tracker = SiamFCTracker.from_pretrained(weights, device="cpu", threads=1)
    log = functools.partial(print, flush=True)
    return {part: calibrate.collect(tracker, dirs, cue=cue, log=log)
            for part, dirs in (("val", VAL if val is None else val), ("train", ROOTS if roots is None else roots))}


def save_parts(path: str | Path, data: dict[str, dict[str, np.ndarray]], drop: tuple[str, ...] = ()) -> None:
    """One ``.npz`` with ``part/key`` entries (``confidence_fit.py --cache`` reads this layout)."""
    np.savez(path, **{f"{p}/{k}": v for p, d in data.items() for k, v in d.items() if k not in drop})


def load_parts(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """The parts :func:`save_parts` wrote."""
    with np.load(path) as npz:
        return {p: {k.split("/", 1)[1]: npz[k] for k in npz.files if k.startswith(p + "/")} for p in PARTS}


def fit_line(label: str, train: dict[str, np.ndarray], val: dict[str, np.ndarray],
             extra_train: np.ndarray | None = None, extra_val: np.ndarray | None = None) -> str:
    """The confidence fitted out of sample (the shipped rules, :func:`~siamtrack.evaluation.calibrate.fit`)
    on the features plus the ``(N, K)`` extra columns, as one printable line: ROC AUC out of sample
    and on val, the smoothing chosen, the flag's rates."""
    def widened(d: dict[str, np.ndarray], extra: np.ndarray | None) -> dict[str, np.ndarray]:
        return d if extra is None else {**d, "features": np.concatenate([d["features"], extra], 1)}

    t, v = widened(train, extra_train), widened(val, extra_val)
    n = t["features"].shape[1] + 1
    config.DEFAULT_CONF_WEIGHTS = (0.0,) * n  # the length TrackerConfig checks, in this process only
    cfg, rep = calibrate.fit(t, v, TrackerConfig(conf_weights=[0.0] * n))
    oos, on_val = rep["flag_out_of_sample"], rep["flag_val"]
    return (f"{label:28s} ROC AUC out of sample {rep['auc_out_of_sample']:.3f}, val {rep['auc_val']:.3f} "
            f"(smoothing {cfg.conf_smoothing}); flag on target / lost: out of sample "
            f"{oos['on_target_flagged']:.3f} / {oos['lost_flagged']:.3f}, "
            f"val {on_val['on_target_flagged']:.3f} / {on_val['lost_flagged']:.3f}")
