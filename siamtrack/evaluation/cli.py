"""The ``benchmark`` and ``speed`` sub-commands.

``siamtrack.cli`` calls :func:`add_subcommands`; each sub-command's ``func(args)`` returns an exit
code and raises ``ValueError`` / ``FileNotFoundError`` with a one-line message for bad input (the
main command prints it as ``siamtrack: error: ...`` and exits 2). :func:`main` runs the two
sub-commands on their own (``python -m siamtrack.evaluation.cli``).
"""
from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence

from .baselines import BASELINE_FILES, BASELINE_NAMES, SHARED_MODEL_FILES
from ..tracking.threads import add_threads_option

BENCHMARK_EXAMPLES = """examples:
  siamtrack benchmark --dataset got10k --root ../shared/data/got10k --subset val \\
      --trackers teacher,student --baselines mil,nano,vit     # NanoTrack / vitTrack from ../shared/models
  siamtrack benchmark --dataset otb --root OTB100 --trackers student --baselines nano \\
      --nano-backbone my/nanotrack_backbone.onnx --nano-head my/nanotrack_head.onnx
  siamtrack benchmark --dataset got10k --root GOT10K --subset test --trackers student   # submission zip
  siamtrack benchmark --dataset got10k --root ../shared/data/got10k --subset val \
      --trackers student,student@onnx,student@int8
  siamtrack benchmark --dataset otb --root OTB100 --version 2015 --trackers student --sequences Boy,Car4
  siamtrack benchmark --dataset folder --root my_sequences --trackers runs/x/best.pth --workers 2
"""

SPEED_EXAMPLES = """examples:
  siamtrack speed --weights teacher,student --threads 1,2 --frames 200 --json speed.json
  siamtrack speed --weights student,student@onnx,student@int8 --threads 2 --frames 200
  siamtrack speed --weights student,student@onnx --baselines nano,vit --threads 1,2 --frames 200
      (NanoTrack / vitTrack ONNX files from ../shared/models unless --nano-backbone, --nano-head,
      --vit-model point at other copies)
"""


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_csv(text: str) -> list[int]:
    try:
        return [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _version(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def add_baseline_options(p: argparse.ArgumentParser, shared_default: bool = False) -> None:
    """``--baselines`` and the ONNX files NanoTrack / vitTrack need, for ``benchmark`` and ``speed``
    (read back with :func:`baseline_files`). ``shared_default``: files not given are looked for in
    the shared model folder (:func:`.baselines.with_shared_files`), and the help says so."""
    p.add_argument("--baselines", type=_csv, default=[], metavar="A,B,...",
                   help=f"comma-separated OpenCV baselines: {','.join(BASELINE_NAMES)} (unavailable ones "
                        f"are reported as skipped)")
    for option, what, key in (("--nano-backbone", "NanoTrack v2 backbone", "nano"),
                              ("--nano-head", "NanoTrack v2 neck/head", "nano"),
                              ("--vit-model", "vitTrack", "vit")):
        default = SHARED_MODEL_FILES[option[2:].replace("-", "_")]
        p.add_argument(option, default=None, metavar="FILE",
                       help=f"{what} ONNX file (for --baselines {key}"
                            + (f"; default: {default} in ../shared/models or $SIAMTRACK_MODELS)"
                               if shared_default else ")"))


def baseline_files(args: argparse.Namespace) -> dict[str, str | None]:
    """The ``--nano-backbone`` / ``--nano-head`` / ``--vit-model`` values, keyed as
    :data:`.baselines.BASELINE_FILES` names them."""
    return {opt: getattr(args, opt) for opts in BASELINE_FILES.values() for opt in opts}


def add_benchmark_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "benchmark", help="accuracy of trackers and OpenCV baselines on GOT-10k / OTB / a folder",
        description="Run trackers through the got10k toolkit's experiments and report AO, SR0.5, SR0.75, "
                    "success AUC, precision and fps, with a markdown table, JSON and plots.",
        epilog=BENCHMARK_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=["got10k", "otb", "folder"])
    p.add_argument("--root", required=True, metavar="DIR", help="data set folder (GOT-10k: the folder holding val/ test/)")
    p.add_argument("--subset", default="val", choices=["val", "test"],
                   help="GOT-10k split; test writes the server's submission archive (default val)")
    p.add_argument("--version", type=_version, default=2015, metavar="YEAR", help="OTB version: 2013 or 2015 (default 2015)")
    p.add_argument("--sequences", type=_csv, default=None, metavar="A,B,...", help="comma-separated subset of sequences")
    p.add_argument("--trackers", type=_csv, default=[], metavar="A,B,...",
                   help="comma-separated learned trackers: teacher, student, checkpoint paths or export "
                        "folders; a @onnx / @int8 suffix runs the fp32 / int8 ONNX graphs on onnxruntime "
                        "(e.g. student,student@onnx,student@int8)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="parallel worker processes (default 1)")
    p.add_argument("--report-dir", default=None, metavar="DIR",
                   help="where results, report.md, benchmark.json and plots go (default benchmarks/<dataset>)")
    p.add_argument("--json", dest="json_path", default=None, metavar="FILE", help="also write the JSON summary here")
    p.add_argument("--overwrite", action="store_true",
                   help="re-run trackers whose results exist (default: reuse them, and say so)")
    p.add_argument("--device", default=None, metavar="DEV", help="torch device for learned trackers (default: cuda if available)")
    add_baseline_options(p, shared_default=True)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave out (and name) sequences that are missing or whose ground-truth rows "
                        "do not match their frames (default: stop with an error before tracking)")
    add_threads_option(p)
    p.set_defaults(func=run_benchmark)
    return p


def add_speed_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "speed", help="per-frame latency, MACs, parameters and size of trackers",
        description="Time tracker.update on 640x360 frames for every model, OpenCV baseline and thread "
                    "count (interleaved, so ratios hold on a noisy machine) and count MACs per frame.",
        epilog=SPEED_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=_csv, default=[], metavar="A,B,...",
                   help="comma-separated models: teacher, student, checkpoint paths or export folders, "
                        "each optionally with @onnx / @int8 (onnxruntime fp32 / int8); --weights "
                        "and/or --baselines")
    p.add_argument("--threads", type=_int_csv, default=[1], metavar="N,M,...", help="comma-separated thread counts (default 1)")
    p.add_argument("--frames", type=int, default=100, metavar="N", help="timed frames per model (default 100)")
    p.add_argument("--warmup", type=int, default=10, metavar="N", help="untimed frames first (default 10)")
    p.add_argument("--device", default="cpu", metavar="DEV", help="torch device (default cpu)")
    p.add_argument("--json", dest="json_path", default=None, metavar="FILE", help="write the results as JSON here")
    p.add_argument("--accuracy", default=None, metavar="BENCHMARK.json",
                   help="add AO and SR0.5 columns from a `siamtrack benchmark` JSON (matched by tracker name)")
    add_baseline_options(p, shared_default=True)
    p.set_defaults(func=run_speed)
    return p


def add_subcommands(subparsers: Any) -> None:
    """Register ``benchmark`` and ``speed`` on the main command's sub-parsers."""
    add_benchmark_parser(subparsers)
    add_speed_parser(subparsers)


def run_benchmark(args: argparse.Namespace) -> int:
    from .baselines import with_shared_files
    from .benchmark import BenchmarkOptions, run

    opts = BenchmarkOptions(
        dataset=args.dataset, root=args.root, subset=args.subset, version=args.version,
        sequences=args.sequences, trackers=args.trackers, baselines=args.baselines,
        files=with_shared_files(baseline_files(args)),  # as `speed`: the shared ONNX files by default
        workers=args.workers, report_dir=args.report_dir, json_path=args.json_path,
        overwrite=args.overwrite, device=args.device, progress=not args.no_progress,
        skip_bad=args.skip_bad, threads=args.threads)
    try:
        run(opts)
    except KeyboardInterrupt:
        print("interrupted: finished sequences are saved; run the same command again to continue",
              file=sys.stderr)
        return 130
    return 0


def run_speed(args: argparse.Namespace) -> int:
    from .speed import SpeedOptions, run

    run(SpeedOptions(weights=args.weights, baselines=args.baselines, files=baseline_files(args),
                     threads=args.threads, frames=args.frames, warmup=args.warmup,
                     json_path=args.json_path, device=args.device, accuracy_json=args.accuracy))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point with the same error handling as ``siamtrack``'s."""
    from ..errors import OneLineParser, one_line  # the main command's parser and error format

    parser = OneLineParser(prog="siamtrack")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    add_subcommands(sub)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, OSError) as exc:
        print(f"siamtrack: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
