"""How good is a box head's box when the previous state is perfect? (issue 18 diagnosis)

For every ``--step``-th frame of each sequence, one search crop is cut around the *ground truth* of
the frame ``--step`` earlier, at that box's size (what the tracker would crop after a perfect
frame), and the head's box is decoded there: the raw best cell (``cls * quality``) and the tracker's
choice (SiamFC++ penalty and window from the checkpoint's settings). Printed per sequence: the mean
IoU of both, and the head's size change against the true one in log units, per axis. A head that
measures size has a mean log change near the true one (about 0) and a positive correlation with it;
a head biased towards one shape shows a large mean of opposite sign on w and h.

``--first-frame-correction`` divides every size by the head's own error on frame 0 (is the error a
fixed bias per target?); ``--training-pairs N`` also decodes N training pairs at the target cell
(does the head read the aspect on the data it was trained on?).

    PYTHONPATH=. python experiments/box_head_oracle.py --weights runs/teacher_lite0_box2/teacher/final.pth
    PYTHONPATH=. python experiments/box_head_oracle.py --weights W --training-pairs 96
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from siamtrack.data.transforms import load_image
from siamtrack.evaluation.experiments import FolderDataset
from siamtrack.geometry import context_size, crop_squares, iou
from siamtrack.tracking.boxhead import peak_window, pick_box

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "got10k" / "val"


def head_box(tracker, kernel, img: np.ndarray, prev: np.ndarray, avg: np.ndarray, penalty_k: float,
             window: float) -> np.ndarray:
    """The head's box ``[x, y, w, h]`` in frame pixels from one search crop around ``prev`` at its size
    (the crop the tracker cuts after a frame that ended on ``prev``), without the size damping."""
    cfg, geo = tracker.cfg, tracker.geometry
    centre = prev[:2] + prev[2:] / 2
    x_sz = context_size(*prev[2:], cfg.context) * cfg.instance_sz / cfg.exemplar_sz
    out = tracker.engine.respond(kernel, crop_squares(img, centre, [x_sz], cfg.instance_sz, avg))[0]
    scale = x_sz / cfg.instance_sz                                   # frame pixels per crop pixel
    pick = pick_box(out, tuple(prev[2:] / scale), geo.stride, geo.offset, peak_window(out.shape[-1]),
                    penalty_k, window)
    wh = np.array([pick.w, pick.h]) * scale
    return np.r_[centre + np.array([pick.dx, pick.dy]) * scale - wh / 2, wh]


def sequence_rows(tracker, files: list[str], anno: np.ndarray, step: int, correct: bool = False) -> np.ndarray:
    """``(n, 6)``: raw IoU, tracker IoU, log w change predicted / true, log h change predicted / true.
    ``correct``: divide every predicted size by the head's own error on frame 0 (crop around the first
    box, where the truth is known): how much of the error is a fixed per-target bias."""
    cfg = tracker.cfg
    img0, b0 = load_image(files[0]), anno[0]
    tracker.init(img0, b0)  # the exemplar embedding and padding colour the tracker itself would use
    kernel, avg = tracker._kernel, tracker.avg_color
    bias = head_box(tracker, kernel, img0, b0, avg, 0.0, 0.0)[2:] / b0[2:] if correct else np.ones(2)
    rows = []
    for k in range(step, len(files), step):
        prev, gt = anno[k - step], anno[k]
        if not (np.isfinite(prev).all() and np.isfinite(gt).all()):
            continue
        img = load_image(files[k])
        row = []
        for penalty_k, window in ((0.0, 0.0), (cfg.box_penalty_k, cfg.box_window_influence)):
            box = head_box(tracker, kernel, img, prev, avg, penalty_k, window)
            centre, wh = box[:2] + box[2:] / 2, box[2:] / bias
            row.append(float(iou(np.r_[centre - wh / 2, wh][None], gt[None])[0]))
        row += [np.log(wh[0] / prev[2]), np.log(gt[2] / prev[2]), np.log(wh[1] / prev[3]), np.log(gt[3] / prev[3])]
        rows.append(row)
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def training_pairs_check(tracker, config: str, pairs: int) -> str:
    """The head's size at the target-centre cell of ``pairs`` training pairs drawn by ``config``'s
    sampler (seed 123): does it read the aspect on the data it was trained on?"""
    import torch

    from siamtrack.config import load_experiment
    from siamtrack.data.pairs import PairDataset
    from siamtrack.geometry import cell_offsets

    cfg = load_experiment(config)
    ds = PairDataset.from_config(cfg.data, cfg.tracker, seed=123)
    items = [ds[i] for i in range(pairs)]
    z, x, t = (torch.stack([it[k] for it in items]) for k in range(3))
    with torch.inference_mode():
        out = tracker.net(z, x).numpy()
    grid = cell_offsets(out.shape[-1], tracker.geometry.stride, tracker.geometry.offset)
    rows = []
    for k, (dx, dy, w, h) in enumerate(t.numpy()):
        i, j = np.abs(grid - dy).argmin(), np.abs(grid - dx).argmin()
        left, top, right, bottom = out[k, 2:, i, j]
        rows.append((np.log((left + right) / w), np.log((top + bottom) / h), np.log(w / h)))
    lw, lh, aspect = np.array(rows).T
    thin = aspect < np.log(0.6)
    corr = np.corrcoef(aspect + lw - lh, aspect)[0, 1]
    return (f"{pairs} training pairs of {config}: correlation of predicted and true log aspect {corr:+.2f}; "
            f"log size error w {lw.mean():+.3f}, h {lh.mean():+.3f}; on {thin.sum()} thin targets "
            f"(aspect < 0.6) w {lw[thin].mean():+.3f}, h {lh[thin].mean():+.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="a box-head checkpoint (path or shipped name)")
    parser.add_argument("--root", default=str(DATA), help="GOT-10k-layout folder of sequences")
    parser.add_argument("--step", type=int, default=5, help="frames between the previous state and the crop")
    parser.add_argument("--limit", type=int, default=0, help="first N sequences only (0: all)")
    parser.add_argument("--first-frame-correction", action="store_true",
                        help="divide predicted sizes by the head's own size error on frame 0")
    parser.add_argument("--training-pairs", type=int, default=0, metavar="N",
                        help="also decode N training pairs of --pairs-config at the target cell")
    parser.add_argument("--pairs-config", default="experiments/teacher_lite0_box2.yaml")
    args = parser.parse_args(argv)

    import torch

    from siamtrack.tracking.tracker import SiamFCTracker

    torch.set_num_threads(2)
    tracker = SiamFCTracker.from_pretrained(args.weights, device="cpu")
    if tracker.head_kind != "box":
        parser.error(f"{args.weights} has a {tracker.head_kind} head; this diagnosis needs a box head")
    ds = FolderDataset(args.root)
    names = ds.seq_names[:args.limit or None]
    print("| sequence | crops | IoU raw best cell | IoU tracker choice | log w change pred / true | "
          "log h change pred / true | aspect w/h |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    pooled = []
    for i, name in enumerate(names):
        files, anno = ds[i]
        anno = np.asarray(anno, dtype=np.float64)
        rows = sequence_rows(tracker, list(files), anno, args.step, args.first_frame_correction)
        if not len(rows):
            continue
        pooled.append(rows)
        m = rows.mean(0)
        aspect = np.nanmedian(anno[:, 2] / anno[:, 3])
        print(f"| {name} | {len(rows)} | {m[0]:.3f} | {m[1]:.3f} | {m[2]:+.3f} / {m[3]:+.3f} | "
              f"{m[4]:+.3f} / {m[5]:+.3f} | {aspect:.2f} |")
    allrows = np.concatenate(pooled)
    corr = np.corrcoef(allrows[:, 2] - allrows[:, 4], allrows[:, 3] - allrows[:, 5])[0, 1]
    print(f"\npooled over {len(allrows)} crops: IoU raw {allrows[:, 0].mean():.3f}, tracker choice "
          f"{allrows[:, 1].mean():.3f}; log aspect change predicted vs true: correlation {corr:+.2f}")
    if args.training_pairs:
        print(training_pairs_check(tracker, args.pairs_config, args.training_pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
