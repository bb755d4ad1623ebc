"""Time the student architecture at given channel widths on onnxruntime, before training any of them.

Prints one row per width list: MACs per tracked frame and ms per 3-scale search pass (exported
graphs, random weights: the time does not depend on the values). The runs are interleaved over
``--rounds`` so that a noisy machine slows every candidate alike; the median of the rounds is shown.
This is how the pruning granularity (``compress.prune_round_to: 8``) was chosen::

    python experiments/width_timing.py 22,44,88,88,88,67 24,48,88,88,88,64 16,40,80,80,80,56

A width list is the stem width, then the five pointwise widths (see ``student_spec``).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from siamtrack.compress import prune_to_widths, prune_units
from siamtrack.config import TrackerConfig
from siamtrack.deploy.export import onnx_graphs
from siamtrack.models import build_model, init_weights, named_spec
from siamtrack.models.profile import count_macs
from siamtrack.deploy.runtime import OrtEngine, require_deploy


def student_with_widths(widths: list[int]):
    """The width-1 student cut to ``widths`` (one per prunable unit: the stem, then each pointwise
    conv; the depthwise convs follow their producer) by the pruner itself, as training would."""
    torch.manual_seed(0)
    net = build_model(named_spec("student"))
    init_weights(net)
    units = prune_units(net.backbone)
    if len(widths) != len(units) or any(not 0 < w <= u.channels for w, u in zip(widths, units)):
        raise SystemExit(f"give {len(units)} widths of at most {[u.channels for u in units]}, got {widths}")
    return prune_to_widths(net, [torch.arange(w) for w in widths]).eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("widths", nargs="+", help="comma-separated widths, e.g. 24,48,88,88,88,64")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200, help="timed search passes per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    require_deploy("onnxruntime")
    torch.set_num_threads(args.threads)  # OrtEngine follows torch's thread count
    cfg = TrackerConfig()
    rng = np.random.default_rng(0)
    z = rng.integers(0, 256, (1, 3, cfg.exemplar_sz, cfg.exemplar_sz), dtype=np.uint8)
    x = rng.integers(0, 256, (cfg.scale_num, 3, cfg.instance_sz, cfg.instance_sz), dtype=np.uint8)
    candidates = {}
    for text in args.widths:
        net = student_with_widths([int(v) for v in text.split(",")])
        engine = OrtEngine(*onnx_graphs(net, cfg))
        candidates[text] = (engine, engine.embed_exemplar(z), count_macs(net, scale_num=cfg.scale_num)["per_frame"])
    times: dict[str, list[float]] = {text: [] for text in candidates}
    for _ in range(args.rounds):
        for text, (engine, kernel, _) in candidates.items():
            for _ in range(10):
                engine.respond(kernel, x)
            runs = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                engine.respond(kernel, x)
                runs.append(time.perf_counter() - t0)
            times[text].append(float(np.median(runs)) * 1e3)
    print(f"| widths | MACs/frame | ms per search pass ({args.threads} threads, median of {args.rounds}) | rounds |")
    print("|---|---|---|---|")
    for text, (_, _, macs) in candidates.items():
        rounds = ", ".join(f"{t:.2f}" for t in times[text])
        print(f"| {text} | {macs / 1e6:.1f} M | {np.median(times[text]):.2f} | {rounds} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
