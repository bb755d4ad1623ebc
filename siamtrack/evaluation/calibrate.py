"""Fit a checkpoint's confidence (:mod:`siamtrack.tracking.confidence`) out of sample and store it
in the checkpoint.

Why out of sample: fitted and scored on the same training sequences the teacher's old calibration
read ROC AUC 0.892 and then 0.79 on val. Here the logistic model is scored by grouped k-fold over
*sequences* of the training roots (no frame of a held-out sequence is seen by its fold's fit), the
in-sample figure printed beside it, and val only scored, never fitted on. The lost flag's
thresholds are chosen on the same out-of-fold scores (the flag is simulated with its hysteresis).

One pass per sequence (re-detection off, every frame's :data:`~.confidence.FEATURES`, IoU with the
truth, absence) feeds everything else, which is numpy on a few thousand rows (< 1 s).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..checkpoint import atomic_save, plain_data, read_checkpoint
from ..config import TrackerConfig, from_dict
from ..geometry import iou
from ..data.transforms import load_image
from ..tracking.confidence import FEATURES, calibrated_score, roc_auc, separation_labels, smooth
from ..tracking.redetect import LostSearch
from .experiments import FolderDataset

#: The flag's settings are chosen from these, flagging at most MAX_FALSE_LOST of the on-target
#: frames out of fold: half the issue's 5 % bound on val, a margin for a new split (at 3.5 % out of
#: fold the teacher flagged 12.2 % of on-target val frames, the student 5.7 %; at 2.5 %: see MODEL_CARD).
THRESHOLDS = np.round(np.r_[0.01, 0.02, 0.03, 0.04, np.arange(0.05, 0.81, 0.025)], 3)
LOST_FRAMES = (1, 2, 3, 5, 8)
BANDS = (0.05, 0.1, 0.2)          # found_threshold - lost_threshold
MAX_FALSE_LOST = 0.025
#: Moving-average weights the fit chooses ``conf_smoothing`` from (by out-of-sample ROC AUC).
SMOOTHING = (0.0, 0.5, 0.7, 0.85)


def collect(tracker: Any, roots: Sequence[str | Path], max_frames: int = 0, cue: Any = None,
            log: Any = None) -> dict[str, np.ndarray]:
    """Track the first ``max_frames`` frames (0: all) of every sequence of ``roots`` with
    re-detection off; per frame ``features`` (N, F), ``iou``, ``absent`` and ``seq`` (a sequence index).

    ``cue``, for experiments with candidate confidence inputs (``experiments/colour_cues.py``,
    ``verifier_cue.py``): an object with ``start(image, tracker)``, called after ``init``, and
    ``cue(image, tracker)``, called after every ``update`` and returning a few floats, which come
    back as ``cue`` (N, K). ``log``: called with each sequence's name and the frame count so far."""
    tracker.cfg = dataclasses.replace(tracker.cfg, redetect=False)
    rows: dict[str, list[Any]] = {"features": [], "cue": [], "iou": [], "absent": [], "seq": []}
    names: list[str] = []
    for root in roots:
        ds = FolderDataset(root)
        for k in range(len(ds)):
            files, anno = ds[k]
            if max_frames:
                files, anno = files[:max_frames], anno[:max_frames]
            seq = len(names)
            names.append(f"{Path(root).name}/{ds.seq_names[k]}")
            image = load_image(files[0])
            tracker.init(image, anno[0])
            if cue is not None:
                cue.start(image, tracker)
            for f, gt in zip(files[1:], anno[1:]):
                image = load_image(f)
                box = tracker.update(image)
                gone = not np.isfinite(gt).all()
                rows["features"].append(tracker.features.copy())
                if cue is not None:
                    rows["cue"].append(cue(image, tracker))
                rows["iou"].append(np.nan if gone else float(iou(box[None], gt[None])[0]))
                rows["absent"].append(gone)
                rows["seq"].append(seq)
            if log is not None:
                log(f"{names[-1]} {len(rows['iou'])}")
    out = {k: np.array(v) for k, v in rows.items() if k != "cue"}
    out["features"] = out["features"].reshape(-1, len(FEATURES))
    if cue is not None:
        out["cue"] = (np.array(rows["cue"], dtype=np.float64).reshape(len(out["iou"]), -1) if rows["cue"]
                      else np.zeros((0, 0)))
    out["names"] = np.array(names)
    return out


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1.0, iters: int = 100) -> np.ndarray:
    """``[bias, w...]`` on raw features: a class-balanced logistic regression (Newton / IRLS) on
    standardised features with an L2 ridge, mapped back, so tracking is one dot product."""
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-9
    a = np.concatenate([np.ones((len(x), 1)), (x - mean) / std], axis=1)
    pos = max(float(y.sum()), 1.0)
    sample = np.where(y > 0, 0.5 * len(y) / pos, 0.5 * len(y) / max(len(y) - pos, 1.0))
    w = np.zeros(a.shape[1])
    reg = ridge * np.r_[0.0, np.ones(a.shape[1] - 1)]
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(a @ w, -50, 50)))
        grad = a.T @ (sample * (p - y)) + reg * w
        hess = (a * (sample * p * (1 - p))[:, None]).T @ a + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    raw = w[1:] / std
    return np.r_[w[0] - float(raw @ mean), raw]


def flag_sequence(scores: np.ndarray, seq: np.ndarray, cfg: TrackerConfig) -> np.ndarray:
    """The lost flag per frame for per-frame ``scores`` (re-detection off): the tracker's own
    :meth:`~siamtrack.tracking.redetect.LostSearch.observe` replayed, restarted per sequence."""
    flags = np.zeros(len(scores), dtype=bool)
    state, here = LostSearch(), np.zeros(2)  # the box does not matter to the flag
    for i, s in enumerate(scores):
        if i == 0 or seq[i] != seq[i - 1]:
            state.reset(here, here)
        state.observe(float(s), here, here, cfg)
        flags[i] = state.lost
    return flags


def flag_rates(flags: np.ndarray, ious: np.ndarray, absent: np.ndarray) -> dict[str, float]:
    """Share of on-target frames (IoU >= 0.5) and of lost frames (IoU < 0.1 or absent) flagged."""
    used, pos = separation_labels(ious, absent)
    neg = used & ~pos
    return {"on_target_flagged": float(flags[pos].mean()) if pos.any() else float("nan"),
            "lost_flagged": float(flags[neg].mean()) if neg.any() else float("nan")}


def choose_flag(scores: np.ndarray, data: dict[str, np.ndarray], base: TrackerConfig) -> TrackerConfig:
    """The flag settings that flag the most lost frames while flagging at most
    :data:`MAX_FALSE_LOST` of the on-target ones (ties: more frames, a wider band, a lower threshold);
    when none stays within it, the one that flags the fewest on-target frames."""
    best, best_key = base, (-1.0,)
    fallback, fallback_key = base, (-2.0,)
    for frames in LOST_FRAMES:
        for band in BANDS:
            for t in THRESHOLDS:
                cfg = dataclasses.replace(base, lost_threshold=float(t), lost_frames=frames, found_frames=2,
                                          found_threshold=float(round(min(t + band, 0.95), 3)))
                r = flag_rates(flag_sequence(scores, data["seq"], cfg), data["iou"], data["absent"])
                key = (round(r["lost_flagged"], 3), frames, band, -t)
                if r["on_target_flagged"] <= MAX_FALSE_LOST and key > best_key:
                    best, best_key = cfg, key
                if (-r["on_target_flagged"], *key) > fallback_key:
                    fallback, fallback_key = cfg, (-r["on_target_flagged"], *key)
    return best if best_key[0] >= 0 else fallback


def smoothed(features: np.ndarray, seq: np.ndarray, weight: float) -> np.ndarray:
    """The features as the tracker averages them (:func:`~siamtrack.tracking.confidence.smooth`),
    restarted per sequence."""
    out = np.empty_like(features, dtype=np.float64)
    for i in range(len(features)):
        first = i == 0 or seq[i] != seq[i - 1]
        out[i] = smooth(None if first else out[i - 1], features[i], weight)
    return out


def out_of_fold(x: np.ndarray, y: np.ndarray, used: np.ndarray, held_out: list[np.ndarray]) -> np.ndarray:
    """Each frame's score from a fit on the other folds' sequences (``held_out``: :func:`group_folds`);
    NaN where a fold was unfittable."""
    oof = np.full(len(x), np.nan)
    for held in held_out:
        fold_used = used & ~held
        if y[fold_used].all() or not y[fold_used].any():
            continue  # a fold whose training part lacks a class cannot be fitted: left out
        oof[held] = calibrated_score(x[held], fit_logistic(x[fold_used], y[fold_used]))
    return oof


def group_folds(seq: np.ndarray, k: int) -> list[np.ndarray]:
    """``k`` held-out masks over frames, whole sequences each (sequence ids dealt round-robin)."""
    ids = np.unique(seq)
    return [np.isin(seq, ids[i::k]) for i in range(min(k, len(ids)))]


def smoothing_choice(tried: list[tuple[float, np.ndarray, float, float]]) -> tuple[float, np.ndarray]:
    """``(smoothing, its out-of-fold scores)`` from ``(smoothing, scores, ROC AUC, standard error)``
    rows: the most smoothing whose out-of-fold ROC AUC is within one standard error (over the folds)
    of the best one's (the one-standard-error rule). Why not the best alone: the smoothings differ
    by less than that error (student v5: 0.964 / 0.963 / 0.962 / 0.959 for 0 / 0.5 / 0.7 / 0.85, error
    0.009), and the unsmoothed winner flagged 5.2 % of on-target val frames against 3.6 % at 0.85:
    a loss is a lasting state, and a smoothed score crosses the flag's thresholds less often by chance."""
    best = max(tried, key=lambda row: row[2])
    close = [row for row in tried if row[2] >= best[2] - best[3] - 1e-12]
    weight, oof, _, _ = max(close, key=lambda row: row[0])
    return weight, oof


def fit(train: dict[str, np.ndarray], val: dict[str, np.ndarray] | None, base: TrackerConfig,
        folds: int = 5) -> tuple[TrackerConfig, dict[str, Any]]:
    """The fitted settings and a report: ROC AUC in sample, out of fold (by sequence) and on val,
    and the flag's rates. Raises ``ValueError`` when the training frames lack either class."""
    used, pos = separation_labels(train["iou"], train["absent"])
    if pos[used].all() or not pos[used].any():
        raise ValueError(f"need on-target and lost frames to fit the confidence; got {int(pos.sum())} "
                         f"on-target and {int((used & ~pos).sum())} lost")
    y = pos.astype(np.float64)
    held_out = group_folds(train["seq"], folds)
    tried = []  # (smoothing, out-of-fold scores, pooled ROC AUC, standard error over the folds)
    for weight in SMOOTHING:
        oof = out_of_fold(smoothed(train["features"], train["seq"], weight), y, used, held_out)
        ok = used & np.isfinite(oof)
        per_fold = [a for a in (roc_auc(oof[ok & held], pos[ok & held]) for held in held_out) if a is not None]
        error = float(np.std(per_fold, ddof=1) / np.sqrt(len(per_fold))) if len(per_fold) > 1 else 0.0
        tried.append((weight, oof, roc_auc(oof[ok], pos[ok]) or 0.0, error))
    weight, oof = smoothing_choice(tried)
    x = smoothed(train["features"], train["seq"], weight)
    weights = fit_logistic(x[used], y[used])
    scored = used & np.isfinite(oof)
    cfg = dataclasses.replace(base, conf_weights=[round(float(v), 6) for v in weights], conf_smoothing=weight)
    cfg = choose_flag(np.nan_to_num(oof, nan=1.0), train, cfg)
    report: dict[str, Any] = {
        "features": list(FEATURES), "folds": folds,
        # every smoothing tried: [out-of-fold ROC AUC, its standard error over the folds] (smoothing_choice)
        "smoothing_tried": {str(w): [round(a, 4), round(e, 4)] for w, _, a, e in tried},
        "train_frames": int(used.sum()), "train_on_target": int(pos.sum()), "train_lost": int((used & ~pos).sum()),
        "train_sequences": int(len(np.unique(train["seq"]))),
        "auc_in_sample": roc_auc(calibrated_score(x[used], weights), pos[used]),
        "auc_out_of_sample": roc_auc(oof[scored], pos[scored]),
        "flag_out_of_sample": flag_rates(flag_sequence(np.nan_to_num(oof, nan=1.0), train["seq"], cfg),
                                         train["iou"], train["absent"]),
    }
    if val is not None and len(val["iou"]):
        v_used, v_pos = separation_labels(val["iou"], val["absent"])
        v_scores = calibrated_score(smoothed(val["features"], val["seq"], weight), weights)
        report.update(val_frames=int(v_used.sum()), val_on_target=int(v_pos.sum()),
                      auc_val=roc_auc(v_scores[v_used], v_pos[v_used]),
                      flag_val=flag_rates(flag_sequence(v_scores, val["seq"], cfg), val["iou"], val["absent"]))
    return cfg, report


FITTED_KEYS = ("conf_weights", "conf_smoothing", "lost_threshold", "found_threshold", "lost_frames", "found_frames")


def write_fitted(src: str | Path, dst: str | Path, cfg: TrackerConfig, report: dict[str, Any]) -> None:
    """Copy checkpoint ``src`` to ``dst`` (atomically; may be the same file) with the fitted
    confidence and flag settings in ``tracker`` and the report in ``meta.confidence_fit``; the
    weights and every other field are carried over as loaded."""
    ckpt = read_checkpoint(src)
    fitted = dataclasses.asdict(cfg)
    ckpt["tracker"] = dict(ckpt["tracker"], **{k: fitted[k] for k in FITTED_KEYS})
    for key in ("conf_bias", "conf_w_peak", "conf_w_psr", "conf_w_zscore"):  # the retired fit
        ckpt["tracker"].pop(key, None)
    ckpt["meta"] = dict(ckpt.get("meta", {}), confidence_fit=plain_data(report))
    atomic_save(ckpt, dst)


def fit_checkpoint(path: str | Path, roots: Sequence[str | Path], val_roots: Sequence[str | Path] = (),
                   max_frames: int = 60, folds: int = 5, dst: str | Path | None = None,
                   cache: str | Path | None = None, log: Any = print) -> dict[str, Any]:
    """Collect, fit and write (to ``dst``, default ``path`` itself); returns the report. ``cache``:
    an ``.npz`` of the collected frames, reused when present (a refit of the thresholds is then instant)."""
    from ..tracking.tracker import SiamFCTracker

    t0 = time.time()
    ckpt_cfg = from_dict(TrackerConfig, read_checkpoint(path)["tracker"])
    data: dict[str, dict[str, np.ndarray]] = {}
    if cache is not None and Path(cache).is_file():
        with np.load(cache) as npz:
            data = {part: {k.split("/", 1)[1]: npz[k] for k in npz.files if k.startswith(part + "/")}
                    for part in ("train", "val")}
    else:
        tracker = SiamFCTracker.from_pretrained(str(path), device="cpu")
        data["train"] = collect(tracker, roots, max_frames)
        data["val"] = collect(tracker, val_roots, 0) if val_roots else collect(tracker, [], 0)
        if cache is not None:
            np.savez(cache, **{f"{p}/{k}": v for p, d in data.items() for k, v in d.items()})
    cfg, report = fit(data["train"], data["val"] if len(data["val"]["iou"]) else None, ckpt_cfg, folds)
    report.update(roots=[str(r) for r in roots], val_roots=[str(r) for r in val_roots],
                  max_frames=max_frames, seconds=round(time.time() - t0, 1))
    write_fitted(path, dst or path, cfg, report)
    log(format_report(report, cfg))
    return report


def format_report(report: dict[str, Any], cfg: TrackerConfig) -> str:
    """The report as a few lines: what was fitted, the AUCs side by side, the flag's rates."""
    def f(v: Any) -> str:
        return "-" if v is None or v != v else f"{v:.3f}"

    lines = [f"frames: {report['train_frames']} used of {report['train_sequences']} training sequences "
             f"({report['train_on_target']} on-target, {report['train_lost']} lost)",
             f"ROC AUC: in sample {f(report['auc_in_sample'])}, out of sample ({report['folds']}-fold by "
             f"sequence) {f(report['auc_out_of_sample'])}, val {f(report.get('auc_val'))} "
             f"(features smoothed with weight {cfg.conf_smoothing})",
             f"lost flag (< {cfg.lost_threshold} for {cfg.lost_frames}, found >= {cfg.found_threshold} for "
             f"{cfg.found_frames}): out of sample on {f(report['flag_out_of_sample']['on_target_flagged'])} "
             f"of on-target / {f(report['flag_out_of_sample']['lost_flagged'])} of lost frames"]
    if "flag_val" in report:
        lines[-1] += (f"; val {f(report['flag_val']['on_target_flagged'])} / "
                      f"{f(report['flag_val']['lost_flagged'])}")
    lines.append("conf_weights (bias, " + ", ".join(FEATURES) + "): "
                 + ", ".join(f"{v:.4f}" for v in cfg.conf_weights))
    return "\n".join(lines)
