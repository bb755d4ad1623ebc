#!/usr/bin/env python3
"""Which int8 variant of the search graph is fastest on this CPU, and what does each cost in accuracy?

    python experiments/int8_variants.py --weights student --threads 2

Exports ``--weights`` once to fp32 ONNX, then quantizes the search graph with every choice of
``keep_fp32`` (what stays in fp32 besides the xcorr head: nothing, the depthwise convolutions, those
and the first convolution) with and without ``reduce_range``, calibrated on the same training crops
as ``siamtrack export --int8``. For each it prints one table row: the median ms of one tracker-shaped
search pass (3 scales, the exemplar kernel fixed), its speed-up over fp32, and the largest response
difference to PyTorch on held-out crops. Tracking accuracy (val AO) is ``siamtrack benchmark``'s job.
"""
from __future__ import annotations

import argparse
import itertools
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from siamtrack.checkpoint import load_model
from siamtrack.deploy.artifacts import CALIBRATION_PAIRS, CHECK_PAIRS
from siamtrack.deploy.crops import default_data_root, sample_crops
from siamtrack.deploy.export import EXEMPLAR_FILE, SEARCH_FILE, export_onnx
from siamtrack.deploy.quantize import KEEP_FP32, SEARCH_INT8_FILE, quantize_int8
from siamtrack.deploy.runtime import OrtEngine, require_deploy
from siamtrack.weights import resolve_weights


def median_ms(engine: OrtEngine, kernel: np.ndarray, x: np.ndarray, runs: int) -> float:
    for _ in range(10):
        engine.respond(kernel, x)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        engine.respond(kernel, x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="student", help="teacher, student or a .pth path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=200, help="timed search passes per variant")
    args = parser.parse_args(argv)
    require_deploy("onnxruntime")
    torch.set_num_threads(args.threads)  # OrtEngine follows torch's thread count
    path = resolve_weights(args.weights)
    net, cfg, meta = load_model(path)
    root = default_data_root()
    check = sample_crops(CHECK_PAIRS, cfg, root, subset="val", seed=1)
    calibration = sample_crops(CALIBRATION_PAIRS, cfg, root, subset="train", seed=0)
    x = check.x[:cfg.scale_num]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "fp32"
        manifest = export_onnx(net, cfg, base, check, source=path, meta=meta)
        fp32 = OrtEngine(base / EXEMPLAR_FILE, base / SEARCH_FILE)
        kernel = fp32.embed_exemplar(check.z[:1])
        fp32_ms = median_ms(fp32, kernel, x, args.runs)
        rows.append(("fp32", "-", fp32_ms, manifest["models"]["fp32"]["check"]["response_max_abs_diff"]))
        for keep, reduce_range in itertools.product(KEEP_FP32, (True, False)):
            folder = Path(tmp) / f"{keep}-{reduce_range}"
            shutil.copytree(base, folder)  # the checked fp32 export; quantize_int8 adds to its folder
            manifest = quantize_int8(net, cfg, folder, calibration, check, keep_fp32=keep,
                                     reduce_range=reduce_range)
            int8 = OrtEngine(folder / EXEMPLAR_FILE, folder / SEARCH_INT8_FILE, "int8")
            rows.append((f"int8, fp32: {keep}", str(reduce_range), median_ms(int8, kernel, x, args.runs),
                         manifest["models"]["int8"]["check"]["response_max_abs_diff"]))
    print(f"{path.name}: one search pass ({cfg.scale_num} scales), {args.threads} thread(s), "
          f"onnxruntime, median of {args.runs}")
    print("| variant | reduce_range | ms | vs fp32 | max abs diff to torch |")
    print("|:--|:--|--:|--:|--:|")
    for name, rr, ms, diff in rows:
        print(f"| {name} | {rr} | {ms:.2f} | {fp32_ms / ms:.2f}x | {diff:.2e} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
