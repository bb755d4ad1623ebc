"""``siamtrack track`` ms per update, quiet and beside CPU-bound busy loops, per thread count.

Why: the thread policy (siamtrack.tracking.threads) is chosen for steady speed on a shared CPU; the
target is that one busy process alongside at most doubles the time per update. Each cell runs
``python -m siamtrack track VIDEO --box ... --threads N --max-frames F`` in a fresh process and reads
its "mean update ... (X ms/frame)" line; the busy loops are ``python -c "while True: pass"``
processes started before and killed after that run. Run it on a quiet machine:

    PYTHONPATH=. python experiments/busy_speed.py --weights student --threads 1,2 --busy 0,1
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="student")
    parser.add_argument("--threads", default="1,2", help="comma-separated --threads values")
    parser.add_argument("--busy", default="0,1", help="comma-separated numbers of busy loops alongside")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--video", default=str(DATA / "sam2_dog.mp4"))
    args = parser.parse_args(argv)
    video = Path(args.video)
    box = video.with_suffix(".box").read_text().strip()
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # --threads decides
    threads = [int(t) for t in args.threads.split(",")]
    busy = [int(b) for b in args.busy.split(",")]
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
