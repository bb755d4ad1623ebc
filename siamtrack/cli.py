"""The ``siamtrack`` command line: ``track`` a video / image folder / camera, run a synthetic ``demo``.

Other packages add their own sub-commands without this module importing them eagerly: each module
named in :data:`_PLUGINS` may define ``add_subcommands(subparsers)``; a plugin whose module is absent
is skipped. Every sub-command stores its handler with ``set_defaults(func=...)`` and returns an exit
code.

Errors a user can cause (missing or unreadable input, malformed box, missing or corrupt weights)
are printed as ONE line, ``siamtrack: error: ...``, with exit code 2 and no traceback: the
``ValueError`` / ``OSError`` family is the contract between the library and this boundary
(:class:`~siamtrack.checkpoint.CheckpointError` is a ``ValueError``).
"""
from __future__ import annotations

import argparse
import importlib
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import __version__

#: Modules that may contribute sub-commands through ``add_subcommands(subparsers)``.
_PLUGINS = ["siamtrack.evaluation.cli", "siamtrack.deploy.cli"]

BoxRow = tuple[float, float, float, float, float]


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line error (``<program>: error: ...``, exit 2) instead of usage + message.

    Shared by every siamtrack command line (``siamtrack``, ``experiments/train.py``), so a script
    driving them can rely on one stderr line per failure.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        program = self.prog.split()[0]  # sub-parsers are named "siamtrack track"
        self.exit(2, f"{program}: error: {message} (see '{self.prog} --help')\n")


# ---------------------------------------------------------------------------------------- helpers
def parse_box(text: str) -> list[float]:
    """``"x,y,w,h"`` (commas and/or spaces) -> 4 floats, with a message that shows what was wrong."""
    parts = [p for p in re.split(r"[,\s]+", text.strip()) if p]
    if len(parts) != 4:
        raise ValueError(f"--box expects 4 numbers x,y,w,h, got {text!r}")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"--box expects 4 numbers x,y,w,h, got {text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"--box values must be finite, got {text!r}")
    if values[2] <= 0 or values[3] <= 0:
        raise ValueError(f"--box width and height must be positive, got w={values[2]:g}, h={values[3]:g}")
    return values


def has_display() -> bool:
    """Whether a window can be opened (on Linux: an X11 or Wayland display is set)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def _require_display(option: str) -> None:
    if not has_display():
        raise ValueError(f"{option} needs a display, and none is available (DISPLAY/WAYLAND_DISPLAY "
                         f"not set); pass --box x,y,w,h and open the written video instead")


def select_box(frame_rgb: np.ndarray) -> list[float]:
    """Let the user drag the first box with ``cv2.selectROI`` (needs a display)."""
    import cv2

    _require_display("--select")
    title = "siamtrack: drag a box around the target, then ENTER/SPACE (c cancels)"
    try:
        x, y, w, h = cv2.selectROI(title, cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2BGR),
                                   showCrosshair=True, fromCenter=False)
        cv2.destroyWindow(title)
    except cv2.error as exc:
        raise ValueError(f"--select could not open a window ({str(exc).strip().splitlines()[-1]}); "
                         f"pass --box x,y,w,h instead") from None
    if w <= 0 or h <= 0:
        raise ValueError("no box selected (selection cancelled or empty)")
    return [float(x), float(y), float(w), float(h)]


def load_tracker(weights: str | None, device: str | None, backend: str | None = None) -> Any:
    """Tracker from ``weights`` or, when not given, the shipped student, else the shipped teacher,
    run by ``backend`` (default: torch, or what a ``@onnx`` / ``@int8`` suffix on ``weights`` says)."""
    from .checkpoint import CheckpointError
    from .tracking.tracker import PRETRAINED, SiamFCTracker, resolve_weights, weights_search_dirs

    if weights:
        return SiamFCTracker.from_pretrained(weights, device=device, backend=backend)
    for name in ("student", "teacher"):
        try:
            resolve_weights(name)
        except CheckpointError:
            continue
        # corrupt files raise, no fallback
        return SiamFCTracker.from_pretrained(name, device=device, backend=backend)
    dirs = ", ".join(str(d) for d in weights_search_dirs())
    raise CheckpointError(
        f"no trained weights are shipped yet ({' / '.join(PRETRAINED.values())} not found in {dirs}); "
        f"train them with `python experiments/train.py --config experiments/teacher.yaml`, set "
        f"SIAMTRACK_WEIGHTS to their folder, or pass --weights PATH")


def _format_row(box: Sequence[float], score: float) -> str:
    return ",".join(f"{v:.2f}" for v in box) + f",{score:.4f}\n"


def _fps_text(frames: int, seconds: float) -> str:
    return f"{frames / seconds:.1f}" if frames and seconds > 0 else "n/a"


def _track_stream(tracker: Any, frames: Any, first: np.ndarray, box: Sequence[float],
                  video_path: Path | None, boxes_path: Path, fps: float | None, total: int | None,
                  max_frames: int | None, desc: str, show: bool = False,
                  truth: np.ndarray | None = None) -> tuple[list[BoxRow], float, bool]:
    """Track ``first`` + ``frames``, writing rows and the annotated video as it goes.

    Outputs are flushed frame by frame, so Ctrl-C keeps everything tracked so far. Returns
    ``(rows, seconds spent in update, interrupted)``.
    """
    import cv2
    from tqdm import tqdm

    from .io import AnnotatedVideoWriter, draw_box

    tracker.init(first, box)  # validates the box against the frame before any file is written
    boxes_path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[BoxRow] = [(*(float(v) for v in box), 1.0)]  # type: ignore[list-item]
    update_s, interrupted = 0.0, False
    label = getattr(tracker, "name", None)
    writer = AnnotatedVideoWriter(video_path, fps=fps) if video_path is not None else None
    gt_colour = (255, 64, 64)

    with open(boxes_path, "w", encoding="utf-8") as fh:
        def emit(frame: np.ndarray, row: BoxRow, index: int) -> None:
            fh.write(_format_row(row[:4], row[4]))
            fh.flush()
            if writer is not None:
                extra = [(truth[index], gt_colour)] if truth is not None and index < len(truth) else []
                writer.write(frame, row[:4], score=row[4], label=label, extra_boxes=extra)
            if show:
                cv2.imshow("siamtrack", cv2.cvtColor(draw_box(frame, row[:4], row[4], label=label),
                                                     cv2.COLOR_RGB2BGR))

        bar = tqdm(total=total, initial=1, unit="frame", desc=desc, dynamic_ncols=True)
        try:
            emit(first, rows[0], 0)
            for frame in frames:
                if max_frames and len(rows) >= max_frames:
                    break
                t0 = time.perf_counter()
                out = tracker.update(frame)
                update_s += time.perf_counter() - t0
                rows.append((*(float(v) for v in out), float(tracker.score)))  # type: ignore[arg-type]
                emit(frame, rows[-1], len(rows) - 1)
                bar.update(1)
                bar.set_postfix(fps=_fps_text(len(rows) - 1, update_s), refresh=False)
                if show and (cv2.waitKey(1) & 0xFF) in (27, ord("q")):
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            bar.close()
            if writer is not None:
                writer.close()
            if show:
                cv2.destroyAllWindows()
    return rows, update_s, interrupted


# ---------------------------------------------------------------------------------------- commands
def cmd_track(args: argparse.Namespace) -> int:
    """``siamtrack track``: annotated video + one ``x,y,w,h,score`` row per frame."""
    from .io import open_source, quiet_opencv_logs

    quiet_opencv_logs()
    if args.box is None and not args.select:
        raise ValueError("give the first-frame box with --box x,y,w,h or pick it with --select")
    box = parse_box(args.box) if args.box is not None else None
    if args.show:
        _require_display("--show")
    if args.select:
        _require_display("--select")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be at least 1, got {args.max_frames}")
    from .tracking.threads import apply_threads

    apply_threads(args.threads)
    with open_source(args.source) as source:
        tracker = load_tracker(args.weights, args.device, args.backend)
        frames = iter(source)
        first = next(frames, None)
        if first is None:
            raise ValueError(f"no frames in {args.source}")
        if box is None:
            box = select_box(first)
        video_path = Path(args.output) if args.output else Path.cwd() / f"{source.name}_tracked.mp4"
        boxes_path = Path(args.boxes) if args.boxes else Path.cwd() / f"{source.name}_boxes.txt"
        total = source.frame_count
        if args.max_frames:
            total = min(total, args.max_frames) if total else args.max_frames
        rows, update_s, interrupted = _track_stream(
            tracker, frames, first, box, video_path, boxes_path, source.fps, total, args.max_frames,
            desc=source.name, show=args.show)
    n_upd = len(rows) - 1
    ms = f"{1000 * update_s / n_upd:.1f} ms/frame" if n_upd else "no updates"
    status = "interrupted after" if interrupted else "tracked"
    print(f"{status} {len(rows)} frames with {tracker.name}: mean update {_fps_text(n_upd, update_s)} "
          f"fps ({ms}); video {video_path}, boxes {boxes_path}")
    return 130 if interrupted else 0


def cmd_demo(args: argparse.Namespace) -> int:
    """``siamtrack demo``: track a generated clip with the shipped weights and score it."""
    from .data.synthetic import make_sequence
    from .io import quiet_opencv_logs
    from .tracking.geometry import iou

    quiet_opencv_logs()
    if args.frames < 2:
        raise ValueError(f"--frames must be at least 2, got {args.frames}")
    from .tracking.threads import apply_threads

    apply_threads(args.threads)
    tracker = load_tracker(args.weights, args.device, args.backend)
    seq = make_sequence(num_frames=args.frames, seed=args.seed, name="demo", style="object")
    out_dir = Path(args.output)
    video_path, boxes_path = out_dir / "demo_tracked.mp4", out_dir / "demo_boxes.txt"
    rows, update_s, interrupted = _track_stream(
        tracker, iter(seq.frames[1:]), seq.frames[0], seq.boxes[0], video_path, boxes_path, fps=25.0,
        total=len(seq.frames), max_frames=None, desc="demo", truth=seq.boxes)
    pred = np.array([r[:4] for r in rows])
    mean_iou = float(iou(pred, seq.boxes[:len(pred)]).mean())
    print(f"demo: {len(rows)} synthetic frames tracked with {tracker.name} "
          f"({tracker.weights_path}): mean IoU {mean_iou:.3f} against the known truth, "
          f"{_fps_text(len(rows) - 1, update_s)} fps; video {video_path} (green: tracker, "
          f"red: truth), boxes {boxes_path}")
    return 130 if interrupted else 0


def _add_weights_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, metavar="teacher|student|PATH[@onnx|@int8]",
                   help="shipped weights by name, a checkpoint file or a folder written by `siamtrack "
                        "export` (default: student, else teacher; named weights are looked up in "
                        "$SIAMTRACK_WEIGHTS, the repo's weights/, ./weights); a @onnx / @int8 suffix "
                        "runs the fp32 / int8 ONNX graphs on onnxruntime")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where the network runs (default: cuda when available; onnxruntime: cpu)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default=None,
                   help="what runs the network (default: torch; onnxruntime needs the deploy extra, "
                        "pip install -e '.[deploy]')")
    add_threads_option(p)


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N``: intra-op threads for the network and OpenCV (see siamtrack.tracking.threads)."""
    from .tracking.threads import DEFAULT_THREADS

    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"CPU threads for the network and OpenCV (default {DEFAULT_THREADS}: steady "
                        f"speed when other processes share the CPU; more helps only big networks on "
                        f"an idle many-core machine)")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, plugin sub-commands included."""
    parser = OneLineParser(prog="siamtrack", description="SiamFC single-object tracking.")
    parser.add_argument("--version", action="version", version=f"siamtrack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True

    p = sub.add_parser("track", help="track one object through a video, image folder or camera",
                       description="Track one object; writes an annotated video and a boxes file with "
                                   "one 'x,y,w,h,score' row per frame (0-based pixels; the first row is "
                                   "the given box, score 1). Outputs default to the current folder.")
    p.add_argument("source", help="video file, folder of images (jpg/png/bmp, sorted) or camera index")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--box", metavar="x,y,w,h",
                       help="first-frame box in pixels (use --box=-3,... for a negative x)")
    group.add_argument("--select", action="store_true", help="drag the first box with the mouse")
    _add_weights_options(p)
    p.add_argument("--output", metavar="OUT.mp4", help="annotated video (default: ./<name>_tracked.mp4)")
    p.add_argument("--boxes", metavar="OUT.txt", help="box rows (default: ./<name>_boxes.txt)")
    p.add_argument("--show", action="store_true", help="show frames while tracking (q/Esc stops)")
    p.add_argument("--max-frames", type=int, default=None, metavar="N",
                   help="stop after N frames (the first frame included)")
    p.set_defaults(func=cmd_track)

    p = sub.add_parser("demo", help="track a generated clip with the shipped weights and report IoU",
                       description="Generate a synthetic clip (a textured patch moving and growing), "
                                   "track it and print the mean IoU against its known boxes.")
    p.add_argument("--output", default="siamtrack_demo", metavar="DIR",
                   help="folder for demo_tracked.mp4 and demo_boxes.txt (default: ./siamtrack_demo)")
    _add_weights_options(p)
    p.add_argument("--frames", type=int, default=60, help="clip length (default 60)")
    p.add_argument("--seed", type=int, default=0, help="clip seed (default 0)")
    p.set_defaults(func=cmd_demo)

    _add_plugins(sub)
    return parser


def _add_plugins(subparsers: Any) -> None:
    for module_name in _PLUGINS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = exc.name or ""
            if missing and (module_name == missing or module_name.startswith(missing + ".")):
                continue  # the plugin itself is not installed / not written yet
            raise
        hook: Callable[[Any], None] | None = getattr(module, "add_subcommands", None)
        if callable(hook):
            hook(subparsers)


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``siamtrack`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("siamtrack: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as exc:  # FileNotFoundError is an OSError; CheckpointError a ValueError
        print(f"siamtrack: error: {one_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
