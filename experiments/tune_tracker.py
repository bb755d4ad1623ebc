"""Tracker settings search on the *training* sequences (val stays the test set): AO per setting.

Each ``--grid`` entry is ``key=v1,v2,...`` (``TrackerConfig`` fields); every combination is scored by
AO as the GOT-10k toolkit computes it: the mean IoU over all visible frames of all sequences pooled
(long sequences weigh more), with the mean of per-sequence AO beside it. The
sequences run in ``--workers`` processes with one torch thread each. Prints a markdown table, best
first, and writes it with the settings to ``--json``.

    nice -n 19 env OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/tune_tracker.py \\
        --weights runs/teacher_lite0_box/teacher/final.pth --workers 2 \\
        --grid box_penalty_k=0.04,0.1,0.2 box_window_influence=0.21,0.35 box_lr=0.52,0.8

``--apply KEY=V ... --output PATH`` then writes a copy of the checkpoint with that setting (one of
the grid's, or any other) and the table in ``meta.tracker_search`` with ``--note`` (why this one),
so a shipped file says where its tracker settings came from. Refit the confidence after it
(``experiments/confidence_fit.py``): its features depend on the settings.
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
import torch

from siamtrack.evaluation.experiments import FolderDataset
from siamtrack.geometry import iou

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ROOTS = ("got10k/train", "got10k-extra/train")

_TRACKER: Any = None
_FRAMES: dict[str, list[np.ndarray]] = {}


def _setup(weights: str) -> None:
    global _TRACKER
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
    parser.add_argument("--apply", nargs="+", default=[], metavar="KEY=V",
                        help="write this setting into a copy of the checkpoint (needs --output)")
    parser.add_argument("--output", default="", help="checkpoint to write with --apply")
    parser.add_argument("--note", default="", help="why the applied setting was chosen (kept in the checkpoint)")
    parser.add_argument("--eval-root", default="", help="with --apply: score the written checkpoint on this "
                        "GOT-10k-layout root's val (siamtrack benchmark) into meta.metrics")
    args = parser.parse_args(argv)
    if bool(args.apply) != bool(args.output):
        parser.error("--apply and --output go together")

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
    if args.workers <= 1:  # in this process: no fork of a process whose torch has started threads
        threads = torch.get_num_threads(), cv2.getNumThreads()
        _setup(args.weights)
        try:
            scores = [_score(job) for job in jobs]
        finally:
            torch.set_num_threads(threads[0])
            cv2.setNumThreads(threads[1])
    else:
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
    summary = {"weights": args.weights, "roots": args.roots, "step": args.step, "settings": settings,
               "ao": ao.tolist(), "sequence_mean_ao": seq_mean.tolist()}
    if args.json:
        Path(args.json).write_text(json.dumps({**summary, "per_sequence": dict(zip([s[0] for s in seqs],
                                                                                     table.tolist()))}, indent=1))
    if args.apply:
        chosen = {key: json.loads(value) for key, _, value in (item.partition("=") for item in args.apply)}
        metrics = apply_setting(args.weights, args.output, chosen, {**summary, "chosen": chosen, "note": args.note},
                                args.eval_root)
        print(f"wrote {args.output} with {chosen} (val: {metrics or 'not scored'}); "
              f"refit its confidence: experiments/confidence_fit.py")
    return 0


def apply_setting(weights: str, output: str, chosen: dict[str, Any], record: dict[str, Any],
                  eval_root: str = "") -> dict[str, float]:
    """Copy checkpoint ``weights`` to ``output`` (atomically) with the ``chosen`` tracker fields and the
    search in ``meta.tracker_search``; ``TrackerConfig`` validates the result before it is written.
    The val metrics and stage summary measured under the old settings move to
    ``tracker_search.metrics_before`` / ``summary_before`` (they no longer describe the file); the
    summary is recounted at the new settings (MACs, crops) and, with ``eval_root``, the new file is
    scored into ``meta.metrics`` and the summary."""
    from siamtrack.checkpoint import atomic_save, model_from_checkpoint, plain_data, read_checkpoint
    from siamtrack.config import TrackerConfig, from_dict
    from siamtrack.pipeline import profile_summary, score_checkpoint
    from siamtrack.weights import resolve_weights

    ckpt = read_checkpoint(resolve_weights(weights))
    unknown = sorted(set(chosen) - {f.name for f in dataclasses.fields(TrackerConfig)})
    if unknown:
        raise SystemExit(f"error: not TrackerConfig fields: {', '.join(unknown)}")
    tracker = dict(ckpt["tracker"], **chosen)
    cfg = from_dict(TrackerConfig, tracker)  # a bad value is an error here, not in the shipped file
    ckpt["tracker"] = tracker
    meta = dict(ckpt.get("meta", {}))
    before = meta.pop("summary", {})
    record = {**record, "metrics_before": meta.pop("metrics", {}), "summary_before": before}
    summary = {"stage": before.get("stage", meta.get("stage")), **profile_summary(model_from_checkpoint(ckpt), cfg)}
    ckpt["meta"] = dict(meta, tracker_search=plain_data(record), summary=plain_data(summary))
    atomic_save(ckpt, output)
    if not eval_root:
        return {}
    return score_checkpoint(Path(output), eval_root)  # the benchmark reads the written file


if __name__ == "__main__":
    sys.exit(main())
