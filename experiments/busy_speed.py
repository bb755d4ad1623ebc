"""``siamtrack track`` ms per update, quiet and beside CPU-bound busy loops, per thread count.

Why: the thread policy (siamtrack.tracking.threads) is chosen for steady speed on a shared CPU; the
target is that one busy process alongside at most doubles the time per update. Each cell runs
``python -m siamtrack track VIDEO --box ... --threads N --max-frames F`` in a fresh process and reads
its "mean update ... (X ms/frame)" line; the busy loops are ``python -c "while True: pass"``
processes started before and killed after that run. Run it on a quiet machine:

    PYTHONPATH=. python experiments/busy_speed.py --weights student --threads 1,2 --busy 0,1

``--api`` times the Python API instead, in this process: ``SiamFCTracker.from_pretrained(weights)``
as an application writes it (the default thread policy) against ``threads=None`` (torch's own
default, what the API did before issue 26), on the same decoded frames, quiet and beside busy loops:

    PYTHONPATH=. python experiments/busy_speed.py --api --weights student --busy 0,1
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "videos"


def track_ms(weights: str, threads: int, frames: int, video: Path, box: str, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "siamtrack", "track", str(video), f"--box={box}", "--weights", weights,
               "--threads", str(threads), "--max-frames", str(frames), "--device", "cpu",
               "--output", f"{tmp}/out.mp4", "--boxes", f"{tmp}/boxes.txt"]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
    match = re.search(r"\(([\d.]+) ms/frame\)", out)
    if not match:
        raise RuntimeError(f"no ms/frame in: {out}")
    return float(match.group(1))


def api_ms(weights: str, threads: int | None, frames: list, box: list[float]) -> float:
    """Median ms per ``update`` of ``from_pretrained(weights, threads=threads)`` over ``frames``."""
    import time

    import numpy as np
    import torch

    from siamtrack import SiamFCTracker

    if threads is None:
        torch.set_num_threads(os.cpu_count() or 1)  # torch's own default: one thread per core
    tracker = SiamFCTracker.from_pretrained(weights, device="cpu", threads=threads)
    tracker.init(frames[0], box)
    times = []
    for frame in frames[1:]:
        t0 = time.perf_counter()
        tracker.update(frame)
        times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times[5:]))


def main_api(args: argparse.Namespace, video: Path, box: str, busy: list[int]) -> int:
    import torch

    from siamtrack.io import open_source
    from siamtrack.tracking.threads import DEFAULT_THREADS

    with open_source(video) as source:
        frames = [f for _, f in zip(range(args.frames), source)]
    first_box = [float(v) for v in box.replace(",", " ").split()]
    print(f"| API (threads) | " + " | ".join(f"ms/update, {b} busy" for b in busy) + " |")
    print("|---|" + "---:|" * len(busy))
    for label, threads in ((f"from_pretrained default ({DEFAULT_THREADS})", DEFAULT_THREADS),
                           (f"threads=None, torch default ({os.cpu_count()})", None)):
        cells = []
        for b in busy:
            loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(b)]
            try:
                cells.append(api_ms(args.weights, threads, frames, first_box))
            finally:
                for p in loops:
                    p.kill()
                    p.wait()
        print(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |", flush=True)
    torch.set_num_threads(DEFAULT_THREADS)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="student")
    parser.add_argument("--threads", default="1,2", help="comma-separated --threads values")
    parser.add_argument("--busy", default="0,1", help="comma-separated numbers of busy loops alongside")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--video", default=str(DATA / "sam2_dog.mp4"))
    parser.add_argument("--api", action="store_true",
                        help="time SiamFCTracker.from_pretrained in this process instead of the CLI")
    args = parser.parse_args(argv)
    video = Path(args.video)
    box = video.with_suffix(".box").read_text().strip()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # --threads decides
    threads = [int(t) for t in args.threads.split(",")]
    busy = [int(b) for b in args.busy.split(",")]
    if args.api:
        return main_api(args, video, box, busy)
    print(f"| threads | " + " | ".join(f"ms/update, {b} busy" for b in busy) + " | ratio |")
    print("|---:|" + "---:|" * (len(busy) + 1))
    for t in threads:
        cells = []
        for b in busy:
            loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(b)]
            try:
                cells.append(track_ms(args.weights, t, args.frames, video, box, env))
            finally:
                for p in loops:
                    p.kill()
                    p.wait()
        ratio = cells[-1] / cells[0] if cells[0] > 0 else float("nan")
        print(f"| {t} | " + " | ".join(f"{c:.1f}" for c in cells) + f" | {ratio:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
