"""``siamtrack benchmark``: learned trackers and OpenCV baselines through the got10k experiments.

Flow: validate the data set (:func:`.experiments.make_experiment`) -> turn ``--trackers`` and
``--baselines`` into picklable :class:`TrackerSpec` s (unavailable baselines become "skipped") ->
decide per tracker whether existing results are reused -> track the missing sequences, in parallel
worker processes when ``--workers`` > 1, each with its own tracker and ``cores // workers`` threads ->
record through the experiment (its own layout) as each sequence finishes, so an interrupted run
loses nothing -> score with the toolkit -> markdown table, JSON and plots in the report folder.

Stale results are never silently reused: existing results are reused only with a printed notice
("reusing results in DIR; pass --overwrite to re-run"), and a run refuses to mix in results whose
recorded fingerprint (weights hash, OpenCV version and model files) differs from the tracker now
requested.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from tqdm import tqdm

from ..checkpoint import sha256_file
from . import plots
from .baselines import (BASELINE_FILES, BASELINE_NAMES, BaselineUnavailable, baseline_status,
                        make_baseline, opencv_errors_only)
from .experiments import make_experiment
from .report import benchmark_markdown, metrics_table, write_json

Log = Callable[[str], None]


def available_cores() -> int:
    """CPU cores this process may use (affinity-aware, unlike ``os.cpu_count``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class TrackerSpec:
    """What to build in a worker: plain strings, so it pickles (a live tracker does not travel).

    ``kind`` is ``"siamfc"`` (``source`` = resolved checkpoint path, or for ``backend`` onnxruntime
    the exported folder) or ``"opencv"`` (``source`` = baseline key, ``files`` = its ONNX model files
    as ``(option, path)`` pairs).
    """

    name: str
    kind: str
    source: str
    files: tuple[tuple[str, str], ...] = ()
    device: str | None = None
    backend: str = "torch"
    precision: str = "fp32"

    def build(self) -> Any:
        """A fresh got10k tracker."""
        if self.kind == "siamfc":
            from ..tracking.tracker import SiamFCTracker

            return SiamFCTracker.from_pretrained(self.source, device=self.device, name=self.name,
                                                 backend=self.backend, precision=self.precision,
                                                 threads=None)  # the worker / speed loop sets them
        if self.kind == "opencv":
            return make_baseline(self.source, dict(self.files), name=self.name)
        raise ValueError(f"unknown tracker kind {self.kind!r}")

    def model_files(self) -> list[Path]:
        """The files the tracker runs: the checkpoint, or the exported graphs of its precision."""
        if self.backend == "torch":
            return [Path(self.source)]
        from ..deploy.runtime import read_manifest

        models = read_manifest(self.source)["models"][self.precision]
        return [Path(self.source) / models["exemplar"], Path(self.source) / models["search"]]

    def fingerprint(self) -> dict[str, Any]:
        """What the results depend on; compared before results are reused."""
        if self.kind == "siamfc" and self.backend == "torch":
            return {"kind": self.kind, "weights_sha256": sha256_file(self.source), "weights": self.source}
        if self.kind == "siamfc":
            return {"kind": self.kind, "backend": self.backend, "precision": self.precision,
                    "files_sha256": {p.name: sha256_file(p) for p in self.model_files()},
                    "weights": self.source}
        import cv2

        return {"kind": self.kind, "baseline": self.source, "opencv": cv2.__version__,
                "files_sha256": {opt: sha256_file(p) for opt, p in self.files},
                "files": dict(self.files)}


_IGNORED_IN_FINGERPRINT = ("weights", "files")  # paths may move; the content hashes decide


def learned_spec(text: str, device: str | None = None) -> TrackerSpec:
    """``teacher`` / ``student`` / a checkpoint path / an exported folder, each optionally with a
    ``@onnx`` / ``@int8`` / ``@torch`` suffix -> spec (raises ``CheckpointError`` if missing).

    A checkpoint asked for on onnxruntime is exported (and, for int8, calibrated) here, once and
    cached, so worker processes only load the graphs.
    """
    from ..checkpoint import read_checkpoint
    from ..deploy.runtime import load_exported
    from ..weights import resolve

    r = resolve(text)  # exports (and caches) a checkpoint asked for on onnxruntime
    if r.backend == "torch":
        read_checkpoint(r.source)  # a corrupt file fails now, not in a worker halfway through the run
    else:
        load_exported(r.source, r.precision)  # missing graphs or onnxruntime fail now, with the fix
    return TrackerSpec(name=r.name, kind="siamfc", source=str(r.source.resolve()), device=device,
                       backend=r.backend, precision=r.precision)


def baseline_spec(key: str, files: Mapping[str, str | None]) -> TrackerSpec:
    """Spec of an available baseline; raises :class:`BaselineUnavailable` with the reason otherwise."""
    key = key.strip().lower()
    if key not in BASELINE_NAMES:
        raise ValueError(f"unknown baseline {key!r}; choose from {', '.join(BASELINE_NAMES)}")
    reason = baseline_status(key, files)
    if reason is not None:
        raise BaselineUnavailable(reason)
    pairs = tuple((opt, str(Path(files[opt]).resolve()))  # type: ignore[arg-type]
                  for opt in BASELINE_FILES.get(key, ()))
    return TrackerSpec(name=BASELINE_NAMES[key], kind="opencv", source=key, files=pairs)


def baseline_specs(keys: Sequence[str], files: Mapping[str, str | None], log: Log = print
                   ) -> tuple[list[TrackerSpec], dict[str, str]]:
    """Specs of the available baselines among ``keys`` and ``{name: reason}`` for the others, each
    skip logged ("skipping baseline NAME: reason"); ``ValueError`` for an unknown key."""
    specs: list[TrackerSpec] = []
    skipped: dict[str, str] = {}
    for key in keys:
        try:
            specs.append(baseline_spec(key, files))
        except BaselineUnavailable as exc:
            name = BASELINE_NAMES[key.strip().lower()]
            skipped[name] = str(exc)
            log(f"skipping baseline {name}: {exc}")
    return specs, skipped


# ------------------------------------------------------------------ worker side
_WORKER_TRACKERS: dict[TrackerSpec, Any] = {}


def _set_threads(threads: int) -> None:
    from ..tracking.threads import apply_threads

    apply_threads(threads)


def _init_worker(threads: int) -> None:
    """Worker start-up: a share of the cores each, so N workers do not oversubscribe the machine."""
    _set_threads(threads)
    opencv_errors_only().__enter__()  # for the worker's whole life


Task = tuple[TrackerSpec, str, list[str], list[float]]
Result = tuple[str, str, np.ndarray, np.ndarray, np.ndarray]


def track_with_scores(tracker: Any, img_files: Sequence[str], box: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """got10k's ``Tracker.track`` (same image loading and timing, so boxes and fps are unchanged)
    that also keeps each frame's ``tracker.score``: the toolkit records only boxes and times, and
    the score's on-target / lost separation is scored from these. NaN where a tracker has no score."""
    from ..tracking.base import track_files

    return track_files(tracker, img_files, box)


def _track(task: Task, cache: dict[TrackerSpec, Any]) -> Result:
    """Track one sequence with the tracker for ``spec`` from ``cache`` (built on first use)."""
    spec, seq_name, img_files, box = task
    tracker = cache.get(spec)
    if tracker is None:
        tracker = cache[spec] = spec.build()
    boxes, times, scores = track_with_scores(tracker, img_files, np.asarray(box, dtype=np.float64))
    return spec.name, seq_name, boxes, times, scores


def _track_in_worker(task: Task) -> Result:
    # one tracker per spec for the worker's lifetime (the pool lives for one benchmark run)
    return _track(task, _WORKER_TRACKERS)


# ------------------------------------------------------------------ driver side
@dataclass
class BenchmarkOptions:
    """Everything ``siamtrack benchmark`` takes (see :func:`run`)."""

    dataset: str
    root: str
    subset: str = "val"
    version: int | str = 2015
    sequences: list[str] | None = None
    trackers: list[str] = field(default_factory=list)
    baselines: list[str] = field(default_factory=list)
    files: dict[str, str | None] = field(default_factory=dict)   # nano_backbone, nano_head, vit_model
    workers: int = 1
    report_dir: str | None = None
    json_path: str | None = None
    overwrite: bool = False
    device: str | None = None
    progress: bool = True
    skip_bad: bool = False  # leave out (and name) sequences whose layout is broken, instead of failing
    threads: int | None = None   # per tracker process (default: siamtrack.tracking.threads policy)


def default_report_dir(opts: BenchmarkOptions) -> Path:
    tag = {"got10k": f"got10k-{opts.subset}", "otb": f"otb{opts.version}"}.get(
        opts.dataset, f"folder-{Path(opts.root).resolve().name}")
    return Path("benchmarks") / tag


def _fingerprint_file(report_dir: Path, exp: Any, name: str) -> Path:
    # kept outside the results tree: the GOT-10k test archive zips the tracker's result folder
    return report_dir / "fingerprints" / Path(exp.result_dir).name / f"{name}.json"


def _same_fingerprint(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    strip = lambda d: {k: v for k, v in d.items() if k not in _IGNORED_IN_FINGERPRINT}  # noqa: E731
    return strip(a) == strip(b)


def _prepare_results(exp: Any, spec: TrackerSpec, report_dir: Path, overwrite: bool, log: Log) -> bool:
    """Clear, check or keep ``spec``'s existing results; returns True when results are reused."""
    fp_file = _fingerprint_file(report_dir, exp, spec.name)
    fingerprint = spec.fingerprint()
    tdir = exp.tracker_dir(spec.name)
    reused = False
    if exp.has_results(spec.name):
        if overwrite:
            shutil.rmtree(tdir)
            shutil.rmtree(_scores_file(report_dir, exp, spec.name, "x").parent, ignore_errors=True)
            zip_file = Path(exp.result_dir) / f"{spec.name}.zip"
            if zip_file.exists():
                zip_file.unlink()
        else:
            if fp_file.is_file():
                old = json.loads(fp_file.read_text(encoding="utf-8"))
                if not _same_fingerprint(old, fingerprint):
                    raise ValueError(f"results for {spec.name} in {tdir} came from a different tracker "
                                     f"(weights or model files changed); pass --overwrite to re-run, "
                                     f"or choose another --report-dir")
                origin = ""
            else:
                origin = " (made outside siamtrack: no fingerprint)"
            log(f"{spec.name}: reusing results in {tdir}{origin}; pass --overwrite to re-run")
            reused = True
    write_json(fp_file, fingerprint)
    return reused


def _scores_file(report_dir: Path, exp: Any, name: str, seq: str) -> Path:
    # beside the fingerprints, outside the results tree (the test archive zips that tree)
    return report_dir / "scores" / Path(exp.result_dir).name / name / f"{seq}.txt"


def score_separation(exp: Any, report_dir: Path, name: str) -> float | None:
    """ROC AUC of the recorded per-frame scores for on-target (IoU >= 0.5) vs lost (IoU < 0.1 or
    target absent) frames over all sequences; ``None`` without scores or ground truth."""
    from ..tracking.confidence import roc_auc, separation_labels
    from ..geometry import iou
    from .experiments import valid_rows

    all_scores, all_pos = [], []
    for k, seq in enumerate(exp.dataset.seq_names):
        sfile, rfile = _scores_file(report_dir, exp, name, seq), exp.record_file(name, seq)
        if not (sfile.is_file() and os.path.isfile(rfile)):
            continue
        scores = np.loadtxt(sfile, ndmin=1)
        boxes = np.loadtxt(rfile, delimiter=",", ndmin=2)
        anno = np.asarray(exp.dataset[k][1], dtype=np.float64)
        n = min(len(scores), len(boxes), len(anno))
        if n < 2 or anno.shape[1] != 4:
            continue
        absent = ~valid_rows(anno[:n])
        absence = Path(exp.dataset.seq_dirs[k]) / "absence.label"
        if absence.is_file():
            flags = np.loadtxt(absence, ndmin=1)
            if len(flags) >= n:
                absent |= flags[:n] > 0
        ious = np.full(n, np.nan)
        ious[~absent] = iou(boxes[:n][~absent], anno[:n][~absent])
        used, pos = separation_labels(ious, absent)
        used[0] = False  # the init frame: its score is the given box's
        keep = used & np.isfinite(scores[:n])
        all_scores.append(scores[:n][keep])
        all_pos.append(pos[keep])
    if not all_scores:
        return None
    return roc_auc(np.concatenate(all_scores), np.concatenate(all_pos))


def _run_tasks(exp: Any, tasks: list[Task], workers: int, progress: bool,
               threads: int | None = None,
               on_scores: Callable[[str, str, np.ndarray], None] | None = None) -> None:
    """Track every task and record each result as soon as it arrives, each tracker process at
    ``threads`` threads (default: the thread policy, 1; never more than its share of the cores)."""
    from ..tracking.threads import DEFAULT_THREADS

    threads = threads or min(DEFAULT_THREADS, max(1, available_cores() // max(1, workers)))
    bar = tqdm(total=len(tasks), desc="sequences", unit="seq", disable=not progress, dynamic_ncols=True)
    try:
        if workers <= 1:
            _set_threads(threads)  # in this process
            cache: dict[TrackerSpec, Any] = {}  # per run: a rewritten checkpoint is never stale
            with opencv_errors_only():
                for task in tasks:
                    bar.set_postfix_str(f"{task[0].name}: {task[1]}", refresh=False)
                    name, seq, boxes, times, scores = _track(task, cache)
                    exp.record(name, seq, boxes, times)
                    if on_scores is not None:
                        on_scores(name, seq, scores)
                    bar.update()
        else:
            # spawn: forking a process that already runs torch / OpenMP threads can deadlock
            ctx = multiprocessing.get_context("spawn")
            with ctx.Pool(workers, initializer=_init_worker, initargs=(threads,)) as pool:
                try:
                    for name, seq, boxes, times, scores in pool.imap_unordered(_track_in_worker, tasks,
                                                                               chunksize=1):
                        exp.record(name, seq, boxes, times)
                        if on_scores is not None:
                            on_scores(name, seq, scores)
                        bar.set_postfix_str(f"{name}: {seq}", refresh=False)
                        bar.update()
                except BaseException:
                    pool.terminate()
                    raise
    finally:
        bar.close()


def run(opts: BenchmarkOptions, log: Log = print) -> dict[str, Any]:
    """Run the benchmark described by ``opts``; returns the JSON-ready result dict.

    Raises ``ValueError`` / ``FileNotFoundError`` (one-line messages) for bad input: unknown or
    missing data, weights that do not exist, nothing to run, duplicate names, stale results.
    """
    if opts.workers < 1:
        raise ValueError(f"--workers must be at least 1, got {opts.workers}")
    if not opts.trackers and not opts.baselines:
        raise ValueError("nothing to benchmark: pass --trackers and/or --baselines")
    report_dir = Path(opts.report_dir) if opts.report_dir else default_report_dir(opts)
    exp = make_experiment(opts.dataset, opts.root, report_dir / "results", report_dir / "toolkit",
                          subset=opts.subset, version=opts.version, sequences=opts.sequences,
                          skip_bad=opts.skip_bad, log=log)

    available, skipped = baseline_specs(opts.baselines, opts.files, log)
    specs: list[TrackerSpec] = [learned_spec(t, opts.device) for t in opts.trackers] + available
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"two trackers would share the name {dupes[0]} (and its results folder); "
                         f"rename one of the checkpoint files")

    # what to track: every (tracker, sequence) without a result, longest sequences first
    reused = [s.name for s in specs if _prepare_results(exp, s, report_dir, opts.overwrite, log)]
    tasks = []
    for spec in specs:
        for seq_name in exp.dataset.seq_names:
            if not os.path.exists(exp.record_file(spec.name, seq_name)):
                img_files, anno = exp.dataset[seq_name][:2]
                tasks.append((spec, seq_name, img_files, [float(v) for v in anno[0]]))
    tasks.sort(key=lambda t: -len(t[2]))
    if tasks:
        log(f"tracking {len(tasks)} sequence runs ({len(specs)} tracker(s), {len(exp.dataset)} "
            f"sequence(s)) with {opts.workers} worker(s)")
        def save_scores(name: str, seq: str, values: np.ndarray) -> None:
            path = _scores_file(report_dir, exp, name, seq)
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savetxt(path, values, fmt="%.6f")

        _run_tasks(exp, tasks, opts.workers, opts.progress, opts.threads, save_scores)

    scores = {spec.name: exp.evaluate(spec.name) for spec in specs}
    for spec in specs:  # the confidence's on-target / lost separation (None: no scores or truth)
        scores[spec.name]["overall"]["score_auc"] = score_separation(exp, report_dir, spec.name)
    result = _assemble(opts, exp, report_dir, scores, skipped, reused)
    _write_outputs(result, scores, report_dir, opts, log)
    return result


def _assemble(opts: BenchmarkOptions, exp: Any, report_dir: Path, scores: Mapping[str, Any],
              skipped: Mapping[str, str], reused: Sequence[str]) -> dict[str, Any]:
    trackers: dict[str, Any] = {}
    sequences: dict[str, dict[str, Any]] = {s: {} for s in exp.dataset.seq_names}
    for name, sc in scores.items():
        trackers[name] = dict(sc["overall"])
        if sc.get("archive"):
            trackers[name]["archive"] = sc["archive"]
        for seq, m in sc["sequences"].items():
            sequences[seq][name] = m
    return {
        "dataset": exp.tag, "root": str(Path(opts.root).resolve()), "protocol": exp.protocol,
        "sequences_count": len(exp.dataset), "trackers": trackers,
        "sequences": {s: v for s, v in sequences.items() if v}, "skipped": dict(skipped),
        "reused": list(reused), "results_dir": exp.result_dir, "report_dir": str(report_dir.resolve()),
        "curves": {n: {"success": sc["success_curve"], "precision": sc["precision_curve"]}
                   for n, sc in scores.items()},
    }


def _write_outputs(result: dict[str, Any], scores: Mapping[str, Any], report_dir: Path,
                   opts: BenchmarkOptions, log: Log) -> None:
    report_dir.mkdir(parents=True, exist_ok=True)
    succ = {n: sc["success_curve"] for n, sc in scores.items() if sc["success_curve"]}
    prec = {n: sc["precision_curve"] for n, sc in scores.items() if sc["precision_curve"]}
    files = []
    if succ:
        aucs = {n: scores[n]["overall"]["auc"] for n in succ}
        files.append(plots.success_plot(succ, aucs, report_dir / "success_plot.png",
                                        f"Success plot, {result['dataset']}"))
    if prec:
        p20 = {n: scores[n]["overall"]["precision"] for n in prec}
        files.append(plots.precision_plot(prec, p20, report_dir / "precision_plot.png",
                                          f"Precision plot, {result['dataset']}"))
    result["plots"] = [str(f.resolve()) for f in files]
    md = benchmark_markdown(result)
    (report_dir / "report.md").write_text(md, encoding="utf-8")
    write_json(report_dir / "benchmark.json", result)
    if opts.json_path:
        write_json(opts.json_path, result)

    if result["trackers"]:
        log("")
        log(metrics_table(result["trackers"]))
        log("")
    for name, m in result["trackers"].items():
        if m.get("archive"):
            log(f"GOT-10k submission archive for {name}: {m['archive']} "
                f"(upload it at http://got-10k.aitestunion.com/submit_instructions)")
    for name, why in result["skipped"].items():
        log(f"skipped {name}: {why}")
    log(f"report: {report_dir / 'report.md'}; JSON: {opts.json_path or report_dir / 'benchmark.json'}"
        + (f"; plots: {', '.join(Path(p).name for p in result['plots'])}" if result["plots"] else ""))
