"""``siamtrack speed``: per-frame latency, MACs, parameters and file size of trackers, in one run.

Latency is the wall time of ``tracker.update`` on real-size 640x360 frames (a generated synthetic
sequence played forwards and backwards, so motion stays continuous), after a warm-up, reported as
the median and 90th percentile. The models are measured interleaved (a short chunk of frames each,
in turn) under every thread count, so on a shared, noisy machine a load spike hits all of them
alike and their ratios hold even when absolute numbers drift.

OpenCV's trackers (``--baselines nano,vit``: NanoTrack v2 and vitTrack on OpenCV's DNN module, or
MIL / KCF / CSRT) run in the same loop, on the same frames (in BGR, OpenCV's order, converted before
timing), at the same thread counts, so "fps relative to NanoTrack" is a ratio measured side by side
that holds on any machine. Their ONNX files default to the shared model folder
(``../shared/models``); MACs and parameters of a baseline are unknown ("-"), its size is that of its
ONNX files.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .baselines import opencv_errors_only, with_shared_files
from .benchmark import _set_threads, baseline_specs, learned_spec
from ..models.profile import format_macs, tracker_costs
from .report import speed_markdown, write_json

Log = Callable[[str], None]


@dataclass
class SpeedOptions:
    """Everything ``siamtrack speed`` takes."""

    weights: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)  # OpenCV baselines (keys of BASELINE_NAMES)
    files: dict[str, str | None] = field(default_factory=dict)  # nano_backbone, nano_head, vit_model
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
    from ..deploy.runtime import read_manifest

    cfg = tracker.cfg
    if tracker.net is not None:
        counts = tracker_costs(tracker.net, cfg)
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


@dataclass
class _Timed:
    """One tracker in the timing loop: what it is, how to start it and how to time one frame."""

    name: str
    tracker: Any
    frames: list[np.ndarray]          # RGB for ours, the same frames in BGR for OpenCV's
    update: Callable[[np.ndarray], Any]


def _baseline_static(spec: Any) -> dict[str, Any]:
    """What is known of an OpenCV tracker without counting: the size of its ONNX files, if any."""
    paths = [p for _, p in spec.files]
    return {"macs": None, "exemplar_macs": None, "params": None, "scale_num": None,
            "bytes": sum(os.path.getsize(p) for p in paths) if paths else None,
            "path": ", ".join(paths) or spec.source, "engine": "OpenCV DNN" if paths else "OpenCV",
            "baseline": True}


def _ratio_lines(results: dict[str, Any], learned: list[str], baselines: list[str],
                 threads_list: list[int]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Per thread count: a "speed-up over <first model>" line (every model, baselines too) and, for
    every baseline, a "fps relative to <baseline>" line of our models; returns the lines and those
    fps ratios (``{baseline key: {model key: ratio}}``, keys as in ``results``)."""
    names = learned + baselines
    lines: list[str] = []
    relative: dict[str, dict[str, float]] = {}
    for threads in threads_list:
        suffix = "" if len(threads_list) == 1 else f"@{threads}t"
        if len(names) > 1:
            base = names[0]
            ratios = ", ".join(f"{n}: {results[base + suffix]['ms'] / results[n + suffix]['ms']:.2f}x"
                               for n in names[1:])
            lines.append(f"speed-up over {base} at {threads} thread(s): {ratios}")
        for b in baselines if learned else []:
            ref = results[b + suffix]["fps"]
            relative[b + suffix] = {n + suffix: results[n + suffix]["fps"] / ref for n in learned}
            lines.append(f"fps relative to {b} at {threads} thread(s): "
                         + ", ".join(f"{n} {results[n + suffix]['fps'] / ref:.2f}x" for n in learned))
    return lines, relative


def run(opts: SpeedOptions, log: Log = print) -> dict[str, Any]:
    """Measure every model and baseline under every thread count; returns ``{"models": {key: {...}},
    "skipped": {baseline: reason}, "relative": {...}, ...}``.

    ``key`` is the tracker name when one thread count is given, ``name@Nt`` otherwise. OpenCV
    baselines run in the same loop, interleaved with the models on the same frames (given to them
    in BGR, converted once beforehand) at the same thread count (``cv2.setNumThreads``).
    """
    import cv2
    import torch

    if not opts.weights and not opts.baselines:
        raise ValueError("nothing to time: pass --weights (teacher,student or checkpoint paths) "
                         "and/or --baselines (e.g. nano,vit)")
    if opts.frames < 1 or opts.warmup < 0:
        raise ValueError("--frames must be at least 1")
    if not opts.threads or min(opts.threads) < 1:
        raise ValueError("--threads must be positive integers")
    specs = [learned_spec(w, opts.device) for w in opts.weights]
    if opts.names is not None:
        if len(opts.names) != len(specs):
            raise ValueError(f"{len(opts.names)} names for {len(specs)} models")
        specs = [replace(spec, name=name) for spec, name in zip(specs, opts.names)]
    # ONNX files not given default to the shared model folder's
    base_specs, skipped = baseline_specs(opts.baselines, with_shared_files(opts.files), log)
    if not specs and not base_specs:
        raise ValueError("nothing to time: every baseline was skipped ("
                         + "; ".join(f"{n}: {why}" for n, why in skipped.items()) + ")")
    learned = [s.name for s in specs]
    baselines = [s.name for s in base_specs]
    names = learned + baselines
    if len(set(names)) != len(names):
        raise ValueError("two models share a name; rename one of the checkpoint files")
    trackers = [spec.build() for spec in specs]
    static = {spec.name: _static(spec, tr) for spec, tr in zip(specs, trackers)}
    static.update({spec.name: _baseline_static(spec) for spec in base_specs})

    frames, box0 = _frames(min(60, opts.frames + opts.warmup + 1), opts.frame_size)
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames] if base_specs else []
    timed = [_Timed(n, tr, frames, tr.update) for n, tr in zip(learned, trackers)]
    for spec in base_specs:
        tr = spec.build()
        timed.append(_Timed(spec.name, tr, bgr, tr.update_bgr))
    order = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))  # ping-pong playback
    chunk = max(1, opts.frames // 10)
    previous = (torch.get_num_threads(), cv2.getNumThreads())
    results: dict[str, Any] = {}
    try:
        with opencv_errors_only():
            for threads in opts.threads:
                _set_threads(threads)  # torch's and OpenCV's (the baselines' DNN) thread counts
                samples: dict[str, list[float]] = {n: [] for n in names}
                cursor = {n: 1 for n in names}
                for t in timed:
                    t.tracker.init(frames[0], box0)  # OpenCV trackers: a fresh one, on this thread count
                    for _ in range(opts.warmup):
                        t.update(t.frames[order[cursor[t.name] % len(order)]])
                        cursor[t.name] += 1
                while any(len(v) < opts.frames for v in samples.values()):
                    for t in timed:  # interleaved chunks: noise hits all alike
                        for _ in range(min(chunk, opts.frames - len(samples[t.name]))):
                            frame = t.frames[order[cursor[t.name] % len(order)]]
                            cursor[t.name] += 1
                            t0 = time.perf_counter()
                            t.update(frame)
                            samples[t.name].append((time.perf_counter() - t0) * 1000.0)
                for name in names:
                    ms = np.asarray(samples[name])
                    key = name if len(opts.threads) == 1 else f"{name}@{threads}t"
                    med = float(np.median(ms))
                    results[key] = {"model": name, "ms": med, "p90_ms": float(np.percentile(ms, 90)),
                                    "mean_ms": float(ms.mean()), "fps": 1000.0 / med, "threads": threads,
                                    "frames": len(ms), **static[name]}
    finally:
        torch.set_num_threads(previous[0])
        cv2.setNumThreads(previous[1])

    if opts.accuracy_json:
        _add_accuracy(results, opts.accuracy_json, log)
    lines, relative = _ratio_lines(results, learned, baselines, opts.threads)
    out = {"models": results, "skipped": skipped, "relative": relative,
           "frame_size": list(opts.frame_size),
           "device": str(trackers[0].device) if trackers else "cpu", "opencv": cv2.__version__,
           "warmup": opts.warmup}
    log(speed_markdown(results))
    for name in learned:
        log(f"{name}: exemplar {format_macs(static[name]['exemplar_macs'])} MACs once per sequence, "
            f"{format_macs(static[name]['macs'])} MACs per frame ({static[name]['scale_num']} search crops)")
    for line in lines:
        log(line)
    for name, why in skipped.items():
        log(f"skipped {name}: {why}")
    if opts.json_path:
        write_json(opts.json_path, out)
        log(f"JSON: {Path(opts.json_path)}")
    return out
