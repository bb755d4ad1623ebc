"""Lost flag and re-detection, with and without: a markdown table of AO and lost-flag rates.

On the training sequences whose target leaves the view (absent frames: NaN boxes + absence.label)
and on the val split (where it never leaves, so re-detection must cost nothing there):

* AO: mean IoU over the frames where the target is visible (GOT-10k's convention);
* lost on absent: fraction of absent frames with ``tracker.lost`` True (higher is better);
* lost on visible: fraction of visible frames flagged lost (lower is better);
* ms: mean ``update`` time.

    nice -n 19 env OMP_NUM_THREADS=1 PYTHONPATH=. python experiments/redetect_eval.py --weights student
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from siamtrack.evaluation.experiments import FolderDataset
from siamtrack.geometry import iou
from siamtrack.tracking.threads import apply_threads
from siamtrack.tracking.tracker import SiamFCTracker

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
ABSENCE = [("got10k/train", "UAV123_car14"), ("got10k/train", "UAV123_group2_2"),
           ("got10k/train", "UAV123_group3_2"), ("got10k-extra/train", "VOTLT2019_yamaha")]


def run_sequence(tracker: SiamFCTracker, files: list[str], anno: np.ndarray) -> dict[str, float]:
    """Track one sequence; AO over visible frames, lost-flag rates, mean update ms."""
    first = cv2.cvtColor(cv2.imread(files[0]), cv2.COLOR_BGR2RGB)
    tracker.init(first, anno[0])
    ious, lost, absent, secs = [], [], [], 0.0
    for f, gt in zip(files[1:], anno[1:]):
        img = cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB)
        t0 = time.perf_counter()
        box = tracker.update(img)
        secs += time.perf_counter() - t0
        gone = not np.isfinite(gt).all()
        absent.append(gone)
        lost.append(tracker.lost)
        ious.append(np.nan if gone else float(iou(box[None], gt[None])[0]))
    ious_a, lost_a, absent_a = np.array(ious), np.array(lost), np.array(absent)
    return {"ao": float(np.nanmean(ious_a)), "frames": len(ious_a), "absent": int(absent_a.sum()),
            "lost_absent": float(lost_a[absent_a].mean()) if absent_a.any() else float("nan"),
            "lost_visible": float(lost_a[~absent_a].mean()), "ms": 1000 * secs / max(1, len(ious_a))}


def fmt(v: float) -> str:
    return "-" if v != v else f"{v:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="student", help="student, teacher or a checkpoint path")
    parser.add_argument("--threads", type=int, default=None, help="default: the thread policy (1)")
    parser.add_argument("--data", default=str(DATA))
    parser.add_argument("--no-val", action="store_true", help="only the absence sequences")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="TrackerConfig overrides, e.g. lost_threshold=0.4 lost_frames=3")
    args = parser.parse_args(argv)
    apply_threads(args.threads)
    base = SiamFCTracker.from_pretrained(args.weights, device="cpu")
    for item in args.overrides:
        key, _, value = item.partition("=")
        kind = type(getattr(base.cfg, key))
        base.cfg = dataclasses.replace(base.cfg, **{key: kind(value)})
    seqs = []
    for sub, name in ABSENCE:
        ds = FolderDataset(Path(args.data) / sub)
        seqs.append((name, *ds[ds.seq_names.index(name)]))
    if not args.no_val:
        ds = FolderDataset(Path(args.data) / "got10k" / "val")
        seqs += [(f"val/{n}", *ds[k]) for k, n in enumerate(ds.seq_names)]
    print(f"weights {args.weights}; lost after {base.cfg.lost_frames} frames below "
          f"{base.cfg.lost_threshold}; re-detection found at {base.cfg.redetect_found}\n")
    print("| sequence | frames | absent | AO off | AO on | lost on absent, off | lost on absent, on "
          "| lost on visible, off | lost on visible, on | ms off | ms on |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for name, files, anno in seqs:
        res = {}
        for redetect in (False, True):
            base.cfg = dataclasses.replace(base.cfg, redetect=redetect)
            res[redetect] = run_sequence(base, files, anno)
            rows[redetect].append(res[redetect] | {"name": name})
        off, on = res[False], res[True]
        print(f"| {name} | {off['frames']} | {off['absent']} | {fmt(off['ao'])} | {fmt(on['ao'])} | "
              f"{fmt(off['lost_absent'])} | {fmt(on['lost_absent'])} | {fmt(off['lost_visible'])} | "
              f"{fmt(on['lost_visible'])} | {off['ms']:.1f} | {on['ms']:.1f} |", flush=True)
    for group, pick in (("absence sequences", lambda n: not n.startswith("val/")),
                        ("val", lambda n: n.startswith("val/"))):
        sel = {r: [x for x in rows[r] if pick(x["name"])] for r in rows}
        if not sel[False]:
            continue
        mean = {r: {k: np.nanmean([x[k] for x in sel[r]]) for k in ("ao", "lost_absent", "lost_visible", "ms")}
                for r in sel}
        print(f"| **mean, {group}** | | | {fmt(mean[False]['ao'])} | {fmt(mean[True]['ao'])} | "
              f"{fmt(mean[False]['lost_absent'])} | {fmt(mean[True]['lost_absent'])} | "
              f"{fmt(mean[False]['lost_visible'])} | {fmt(mean[True]['lost_visible'])} | "
              f"{mean[False]['ms']:.1f} | {mean[True]['ms']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
