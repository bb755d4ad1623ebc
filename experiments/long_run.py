#!/usr/bin/env python3
"""Long-run check: track a generated stream for hours' worth of frames and show that memory stays
flat and speed steady (issue 5).

    python experiments/long_run.py                         # 10,000 frames, random tiny student
    python experiments/long_run.py --weights teacher --frames 10000 --json long_run.json

The stream is one synthetic clip (``siamtrack.data.make_clip``: a textured patch moving and growing
over clutter) played forwards and backwards, rendered lazily so the frames themselves take no
memory. Every ``--window`` updates the script samples the process RSS (``VmRSS``) and the mean
``update`` time. RSS growth is measured from the end of the warm-up (allocator pools, caches and
lazy initialisations fill up first) to the end of the run; the exit code is 1 when it reaches 5 %.
Without ``--weights`` a random quarter-width student is used: the loop and its memory behaviour do
not depend on what the network learned.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from siamtrack import SiamFCTracker
from siamtrack.cli import OneLineParser, one_line
from siamtrack.data import make_clip
from siamtrack.models import build_model, named_spec

#: RSS growth after warm-up (percent) at which the run fails.
MAX_GROWTH_PCT = 5.0


@dataclass
class Window:
    end: int              # updates done when the sample was taken
    ms_per_frame: float   # mean update time over the window
    rss_mib: float        # resident set size at the end of the window


@dataclass
class LongRunReport:
    tracker: str
    frames: int
    warmup: int
    windows: list[Window]
    rss_warm_mib: float
    rss_end_mib: float
    rss_peak_mib: float
    rss_growth_pct: float
    speed_ratio: float    # last window's ms/frame over the first window after warm-up
    mean_score: float
    passed: bool


def rss_mib() -> float:
    """Current resident set size of this process, MiB (``/proc``; peak RSS where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0)


def ping_pong(k: int, n: int) -> int:
    """Frame index ``k`` of a clip of ``n`` frames played forwards then backwards (no jumps)."""
    period = 2 * (n - 1)
    k %= period
    return k if k < n else period - k


def random_student(seed: int = 0, device: str = "cpu") -> SiamFCTracker:
    torch.manual_seed(seed)
    return SiamFCTracker(build_model(named_spec("student", 0.25)), device=device,
                         name="SiamFC-random-student")


def track_stream(tracker: SiamFCTracker, frames: int = 10_000, window: int = 500, warmup: int = 1_000,
                 seed: int = 0, clip_frames: int = 240) -> LongRunReport:
    """Track ``frames`` updates of the generated stream, sampling RSS and speed every ``window``."""
    if window < 1 or warmup < window or warmup % window or frames <= warmup:
        raise ValueError(f"need 1 <= window <= warm-up < frames with the warm-up a multiple of the "
                         f"window, got frames={frames}, window={window}, warm-up={warmup}")
    clip = make_clip(clip_frames, seed=seed)
    tracker.init(clip.frame(0), clip.boxes[0])
    windows: list[Window] = []
    score_sum, spent = 0.0, 0.0
    for k in range(1, frames + 1):
        image = clip.frame(ping_pong(k, len(clip)))
        t0 = time.perf_counter()
        tracker.update(image)
        spent += time.perf_counter() - t0
        score_sum += tracker.score
        if k % window == 0 or k == frames:
            done = k - (windows[-1].end if windows else 0)
            windows.append(Window(k, 1000.0 * spent / done, rss_mib()))
            spent = 0.0
    return summarise(tracker.name, frames, warmup, windows, score_sum / frames)


def summarise(name: str, frames: int, warmup: int, windows: list[Window], mean_score: float) -> LongRunReport:
    """Growth from the sample at the end of the warm-up to the last one."""
    warm = next(w for w in windows if w.end == warmup)
    after = [w for w in windows if w.end > warmup]
    growth = 100.0 * (windows[-1].rss_mib - warm.rss_mib) / warm.rss_mib
    return LongRunReport(
        tracker=name, frames=frames, warmup=warmup, windows=windows, rss_warm_mib=warm.rss_mib,
        rss_end_mib=windows[-1].rss_mib, rss_peak_mib=max(w.rss_mib for w in after),
        rss_growth_pct=growth, speed_ratio=windows[-1].ms_per_frame / after[0].ms_per_frame,
        mean_score=mean_score, passed=growth < MAX_GROWTH_PCT)


def format_report(r: LongRunReport) -> str:
    rows = ["| updates | ms/frame | fps | RSS MiB | RSS vs warm-up |", "|---:|---:|---:|---:|---:|"]
    for w in r.windows:
        mark = " (warm-up)" if w.end <= r.warmup else ""
        rows.append(f"| {w.end}{mark} | {w.ms_per_frame:.2f} | {1000.0 / w.ms_per_frame:.1f} | "
                    f"{w.rss_mib:.1f} | {100.0 * (w.rss_mib - r.rss_warm_mib) / r.rss_warm_mib:+.2f} % |")
    verdict = "PASS" if r.passed else "FAIL"
    rows += ["", f"{r.tracker}: {r.frames} updates, mean score {r.mean_score:.3f}",
             f"RSS growth after warm-up: {r.rss_growth_pct:+.2f} % ({r.rss_warm_mib:.1f} -> "
             f"{r.rss_end_mib:.1f} MiB, peak {r.rss_peak_mib:.1f} MiB; limit {MAX_GROWTH_PCT:g} %) {verdict}",
             f"speed: last window / first window after warm-up = {r.speed_ratio:.2f}"]
    return "\n".join(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = OneLineParser(prog="long_run.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=None, metavar="teacher|student|PATH",
                   help="weights to track with (default: a random quarter-width student)")
    p.add_argument("--frames", type=int, default=10_000, help="tracker updates (default 10000)")
    p.add_argument("--window", type=int, default=500, help="updates per sample (default 500)")
    p.add_argument("--warmup", type=int, default=1_000, help="updates before the RSS baseline (default 1000)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument("--seed", type=int, default=0, help="clip seed (default 0)")
    p.add_argument("--json", dest="json_path", default=None, metavar="FILE", help="also write the report as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
        tracker = (SiamFCTracker.from_pretrained(args.weights, device=args.device) if args.weights
                   else random_student(args.seed, args.device))
        report = track_stream(tracker, args.frames, args.window, args.warmup, args.seed)
    except (ValueError, OSError) as exc:
        print(f"long_run.py: error: {one_line(exc)}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(asdict(report), indent=2))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
