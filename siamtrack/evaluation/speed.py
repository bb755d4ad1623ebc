"""``siamtrack speed``: per-frame latency, MACs, parameters and file size of trackers, in one run.

Latency is the wall time of ``tracker.update`` on real-size 640x360 frames (a generated synthetic
sequence played forwards and backwards, so motion stays continuous), after a warm-up, reported as
the median and 90th percentile. The models are measured interleaved (a short chunk of frames each,
in turn) under every thread count, so on a shared, noisy machine a load spike hits all of them
alike and their ratios hold even when absolute numbers drift.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .benchmark import _set_threads, learned_spec
from ..models.profile import count_macs, format_macs
from .report import speed_markdown, write_json

Log = Callable[[str], None]


@dataclass
class SpeedOptions:
    """Everything ``siamtrack speed`` takes."""

    weights: list[str]
    threads: list[int] = field(default_factory=lambda: [1])
    frames: int = 100
    warmup: int = 10
    json_path: str | None = None
    device: str | None = "cpu"
    frame_size: tuple[int, int] = (640, 360)
    accuracy_json: str | None = None   # a benchmark JSON whose AO joins the table, matched by name
    names: list[str] | None = None     # display names, one per weights entry (default: from the file)


def _frames(n: int, size: tuple[int, int]) -> tuple[list[np.ndarray], np.ndarray]:
    from ..data.synthetic import make_sequence

    seq = make_sequence(num_frames=n, frame_size=size, target_size=(64, 48), growth=1.3, seed=0,
                        name="speed")
    return seq.frames, seq.boxes[0]


def _static(spec: Any, tracker: Any) -> dict[str, Any]:
    """MACs, parameters and file size: counted on the torch net, or read from the export's JSON
    (an exported folder has no torch net; the counts were taken at export)."""
    from ..models import count_parameters
    from ..deploy.runtime import read_manifest

    cfg = tracker.cfg
    if tracker.net is not None:
        macs = count_macs(tracker.net, cfg.exemplar_sz, cfg.instance_sz, cfg.scale_num)
        counts = {"macs": macs["per_frame"], "exemplar_macs": macs["exemplar"],
                  "params": count_parameters(tracker.net), "scale_num": macs["scale_num"]}
    else:
        stats = read_manifest(spec.source)["stats"]
        counts = {k: stats[k] for k in ("macs", "exemplar_macs", "params")}
        counts["scale_num"] = stats.get("scale_num", cfg.scale_num)
    return {**counts, "bytes": sum(os.path.getsize(p) for p in spec.model_files()),
            "path": spec.source,
            "engine": f"{spec.backend} {spec.precision}"}


def _add_accuracy(results: dict[str, Any], path: str, log: Log) -> None:
    """AO / SR0.5 from ``siamtrack benchmark``'s JSON, so one table has speed and accuracy."""
    import json

    try:
        benchmark = json.loads(Path(path).read_text(encoding="utf-8"))
        scored, dataset = benchmark["trackers"], benchmark.get("dataset")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"--accuracy {path}: not a benchmark JSON ({exc})".splitlines()[0]) from exc
    for entry in results.values():
        metrics = scored.get(entry["model"])
        if metrics is None:
            log(f"{entry['model']}: not in {path}; no AO in the table")
            continue
        entry.update(ao=metrics.get("ao"), sr50=metrics.get("sr50"), accuracy_dataset=dataset)


def run(opts: SpeedOptions, log: Log = print) -> dict[str, Any]:
    """Measure every model under every thread count; returns ``{"models": {key: {...}}}``.

    ``key`` is the tracker name when one thread count is given, ``name@Nt`` otherwise.
    """
    import torch

    if not opts.weights:
        raise ValueError("pass --weights teacher,student or checkpoint paths")
    if opts.frames < 1 or opts.warmup < 0:
        raise ValueError("--frames must be at least 1")
    if not opts.threads or min(opts.threads) < 1:
        raise ValueError("--threads must be positive integers")
    specs = [learned_spec(w, opts.device) for w in opts.weights]
    if opts.names is not None:
        if len(opts.names) != len(specs):
            raise ValueError(f"{len(opts.names)} names for {len(specs)} models")
        specs = [replace(spec, name=name) for spec, name in zip(specs, opts.names)]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError("two models share a name; rename one of the checkpoint files")
    trackers = [spec.build() for spec in specs]
    static = {spec.name: _static(spec, tr) for spec, tr in zip(specs, trackers)}

    frames, box0 = _frames(min(60, opts.frames + opts.warmup + 1), opts.frame_size)
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))  # ping-pong playback
    chunk = max(1, opts.frames // 10)
    previous = torch.get_num_threads()
    results: dict[str, Any] = {}
    try:
        for threads in opts.threads:
            _set_threads(threads)
            samples: dict[str, list[float]] = {n: [] for n in names}
            cursor = {n: 1 for n in names}
            for name, tr in zip(names, trackers):
                tr.init(frames[0], box0)
                for _ in range(opts.warmup):
                    tr.update(frames[order[cursor[name] % len(order)]])
                    cursor[name] += 1
            while any(len(v) < opts.frames for v in samples.values()):
                for name, tr in zip(names, trackers):  # interleaved chunks: noise hits all alike
                    for _ in range(min(chunk, opts.frames - len(samples[name]))):
                        frame = frames[order[cursor[name] % len(order)]]
                        cursor[name] += 1
                        t0 = time.perf_counter()
                        tr.update(frame)
                        samples[name].append((time.perf_counter() - t0) * 1000.0)
            for name in names:
                ms = np.asarray(samples[name])
                key = name if len(opts.threads) == 1 else f"{name}@{threads}t"
                med = float(np.median(ms))
                results[key] = {"model": name, "ms": med, "p90_ms": float(np.percentile(ms, 90)),
                                "mean_ms": float(ms.mean()), "fps": 1000.0 / med, "threads": threads,
                                "frames": len(ms), **static[name]}
    finally:
        _set_threads(previous)

    if opts.accuracy_json:
        _add_accuracy(results, opts.accuracy_json, log)
    out = {"models": results, "frame_size": list(opts.frame_size), "device": str(trackers[0].device),
           "warmup": opts.warmup}
    log(speed_markdown(results))
    for name in names:
        log(f"{name}: exemplar {format_macs(static[name]['exemplar_macs'])} MACs once per sequence, "
            f"{format_macs(static[name]['macs'])} MACs per frame ({static[name]['scale_num']} search crops)")
    if len(names) > 1:
        base = names[0]
        for threads in opts.threads:
            suffix = "" if len(opts.threads) == 1 else f"@{threads}t"
            ratios = ", ".join(f"{n}: {results[base + suffix]['ms'] / results[n + suffix]['ms']:.2f}x"
                               for n in names[1:])
            log(f"speed-up over {base} at {threads} thread(s): {ratios}")
    if opts.json_path:
        write_json(opts.json_path, out)
        log(f"JSON: {Path(opts.json_path)}")
    return out
