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
import contextlib
import importlib
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .version import __version__
from .errors import OneLineParser, one_line
from .tracking.threads import add_threads_option

#: Modules that may contribute sub-commands through ``add_subcommands(subparsers)``.
_PLUGINS = ["siamtrack.evaluation.cli", "siamtrack.export_cli"]

BoxRow = tuple[float, float, float, float, float]


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
    from .tracking.tracker import SiamFCTracker
    from .weights import PRETRAINED, WEIGHTS, resolve_weights, search_dirs

    if weights:  # threads=None: the command applied --threads before loading
        return SiamFCTracker.from_pretrained(weights, device=device, backend=backend, threads=None)
    for name in ("student", "teacher"):
        try:
            resolve_weights(name)
        except CheckpointError:
            continue
        # corrupt files raise, no fallback
        return SiamFCTracker.from_pretrained(name, device=device, backend=backend, threads=None)
    dirs = ", ".join(str(d) for d in search_dirs())
    raise CheckpointError(
        f"no trained weights are shipped yet ({' / '.join(PRETRAINED.values())} not found in {dirs}); "
        f"train them with `python experiments/train.py --config experiments/{WEIGHTS['teacher'].config}.yaml`, set "
        f"SIAMTRACK_WEIGHTS to their folder, or pass --weights PATH")


def _format_row(box: Sequence[float], score: float, lost: bool | None = None) -> str:
    """``x,y,w,h,score`` (today's five columns), plus ``,lost`` (0 / 1) when ``lost`` is given."""
    row = ",".join(f"{v:.2f}" for v in box) + f",{score:.4f}"
    if lost is not None:
        row += ",1" if lost else ",0"
    return row + "\n"


def _fps_text(frames: int, seconds: float) -> str:
    return f"{frames / seconds:.1f}" if frames and seconds > 0 else "n/a"


def corner_box_hint(box: Sequence[float], width: int, height: int) -> str | None:
    """A warning when ``x,y,w,h`` runs past the frame but reads well as corners ``x1,y1,x2,y2``."""
    x, y, w, h = (float(v) for v in box)
    if (x + w > width or y + h > height) and x < w <= width and y < h <= height:
        return (f"--box {x:g},{y:g},{w:g},{h:g} runs past the {width}x{height} frame; if you meant "
                f"corners x1,y1,x2,y2, pass --box {x:g},{y:g},{w - x:g},{h - y:g}")
    return None


class StopSignals:
    """SIGINT, SIGTERM and SIGHUP end a run between frames, like Ctrl-C: the loop sees ``signum``
    and stops, outputs are closed whole. A second signal raises ``KeyboardInterrupt`` (a stuck run
    can still be stopped), except while outputs are being finalised (``finalising``).

    Handlers are installed only in the main thread (Python allows no other); elsewhere this is a no-op.
    """

    NAMES = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self) -> None:
        self.signum: int | None = None
        self.finalising = False
        self._saved: dict[int, Any] = {}
        self._atomic = False
        self._deferred = False

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None and not self.finalising:
            if self._atomic:  # inside one frame's writes: stop right after them
                self._deferred = True
                return
            raise KeyboardInterrupt
        self.signum = self.signum or signum

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """A block a second signal does not cut: its ``KeyboardInterrupt`` is raised when the block
        ends, so one frame's video write and row write happen both or neither."""
        self._atomic, self._deferred = True, False
        try:
            yield
        finally:
            self._atomic = False
        if self._deferred:
            self._deferred = False
            raise KeyboardInterrupt

    def __enter__(self) -> "StopSignals":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.NAMES:
                num = getattr(signal, name, None)
                if num is not None:
                    self._saved[num] = signal.signal(num, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for num, handler in self._saved.items():
            signal.signal(num, handler)
        self._saved.clear()

    @property
    def exit_code(self) -> int:
        """128 + signal number (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP)."""
        return 128 + (self.signum or 2)


def _track_stream(tracker: Any, frames: Iterator[tuple[int, np.ndarray]], first: np.ndarray,
                  box: Sequence[float], video_path: Path | None, boxes_path: Path, fps: float | None,
                  total: int | None, max_frames: int | None, desc: str, show: bool = False,
                  truth: np.ndarray | None = None, overwrite: bool = False,
                  pad_to: int | None = None, lost_column: bool = False) -> tuple[list[BoxRow], float, int]:
    """Track ``first`` + ``frames`` (``(frame number, frame)`` pairs), writing rows and the video.

    Outputs are locked, written to temporary files and renamed into place at the end, including an
    end by Ctrl-C / SIGTERM / SIGHUP (every row so far is kept). A frame number skipped by the
    source (undecodable) gets a NaN row and a black video frame, so row k is always frame k. A
    failed write raises a one-line ``OSError`` naming the file; the rows before it are kept.
    Any other exception also keeps the rows so far and removes the temporary files before it is
    raised again (a ``ValueError`` with the rows named). With ``pad_to`` (a folder's exact frame
    count), frames lost at the end get NaN rows too. The tracker's lost flag turns the drawn box
    red with ``LOST``; ``lost_column`` adds it to the rows as a sixth column (0 / 1).
    Returns ``(rows, seconds spent in update, exit code)``: 0, or 128 + the signal that stopped it.
    """
    import cv2
    from tqdm import tqdm

    from .io import AnnotatedVideoWriter, draw_box
    from .io.output import OutputLock, RowFile, check_output_path

    tracker.init(first, box)  # validates the box against the frame before any file is written
    outputs = [(video_path, "video", True)] if video_path is not None else []
    outputs.append((boxes_path, "boxes", False))
    for path, what, is_video in outputs:  # say what is wrong with a path before touching any
        check_output_path(path, what, overwrite, video=is_video)
    rows: list[BoxRow] = [(*(float(v) for v in box), 1.0)]  # type: ignore[list-item]
    update_s = 0.0
    label = getattr(tracker, "name", None)
    gt_colour = (255, 64, 64)
    nan_row: BoxRow = (math.nan,) * 5  # type: ignore[assignment]

    with contextlib.ExitStack() as stack:
        for path, what, is_video in outputs:
            stack.enter_context(OutputLock(path, what))
            check_output_path(path, what, overwrite, video=is_video)  # a run that ended meanwhile
        writer = None
        if video_path is not None:
            writer = AnnotatedVideoWriter(video_path, fps=fps)
            writer.open(first.shape[1], first.shape[0])  # before the boxes file: no 1-row leftovers
            if writer.note:
                print(f"siamtrack: note: {writer.note}", file=sys.stderr)
        try:
            rows_file = RowFile(boxes_path)
        except OSError:
            if writer is not None:
                writer.close(keep=False)
            raise

        signals = stack.enter_context(StopSignals())

        def emit(frame: np.ndarray | None, row: BoxRow, index: int, lost: bool = False) -> None:
            with signals.atomic():  # a second signal waits for both writes: frames and rows in step
                if writer is not None:  # video first: its write can fail silently, the rows' cannot
                    extra = [(truth[index], gt_colour)] if truth is not None and index < len(truth) else []
                    writer.write(first * 0 if frame is None else frame, row[:4], score=row[4], label=label,
                                 extra_boxes=extra, lost=lost)
                rows_file.write(_format_row(row[:4], row[4], lost if lost_column else None))
            if show and frame is not None:
                caption = f"{label} LOST" if lost else label
                cv2.imshow("siamtrack", cv2.cvtColor(draw_box(frame, row[:4], row[4], label=caption,
                                                              color=(255, 0, 0) if lost else (0, 255, 0)),
                                                     cv2.COLOR_RGB2BGR))

        code, failure = 0, None
        bar = tqdm(total=total, initial=1, unit="frame", desc=desc, dynamic_ncols=True)
        try:
            emit(first, rows[0], 0)
            for index, frame in frames:
                while len(rows) < index and not (max_frames and len(rows) >= max_frames):
                    rows.append(nan_row)  # frames the source could not decode
                    emit(None, nan_row, len(rows) - 1)
                    bar.update(1)
                if (max_frames and len(rows) >= max_frames) or signals.signum:
                    break
                t0 = time.perf_counter()
                out = tracker.update(frame)
                update_s += time.perf_counter() - t0
                rows.append((*(float(v) for v in out), float(tracker.score)))  # type: ignore[arg-type]
                emit(frame, rows[-1], len(rows) - 1, bool(getattr(tracker, "lost", False)))
                bar.update(1)
                bar.set_postfix(fps=_fps_text(len(rows) - 1, update_s), refresh=False)
                if signals.signum or (show and (cv2.waitKey(1) & 0xFF) in (27, ord("q"))):
                    break
            else:
                while pad_to is not None and len(rows) < pad_to and not (max_frames and len(rows) >= max_frames):
                    rows.append(nan_row)  # a folder's unreadable last frames are frames too
                    emit(None, nan_row, len(rows) - 1)
                    bar.update(1)
        except KeyboardInterrupt:
            signals.signum = signals.signum or 2
        except Exception as exc:  # noqa: BLE001 - any failure: keep the rows, remove the temporaries
            failure = exc
        finally:
            signals.finalising = True
            bar.close()
            if show:
                cv2.destroyAllWindows()
        if signals.signum:
            code = signals.exit_code
        # finalise: the rows written are whole in any case; the video only if every frame got in
        kept = rows_file.rows
        try:
            if writer is not None:
                writer.close(keep=failure is None)
        except OSError as exc:
            failure = exc
        rows_file.commit()
        if failure is not None:
            video_note = "" if writer is None else "; no video written"
            rows_note = f"{kept} whole rows kept in {boxes_path}" if kept else "no rows written"
            if isinstance(failure, (OSError, ValueError)):  # the one-line errors of the CLI
                kind = OSError if isinstance(failure, OSError) else ValueError
                raise kind(f"{one_line(failure)}; stopped with {rows_note}{video_note}") from failure
            raise failure
    return rows, update_s, code


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
        frames = source.indexed()
        first = next(frames, (0, None))[1]
        if first is None:
            raise ValueError(f"no frames in {args.source}")
        if box is None:
            box = select_box(first)
        hint = corner_box_hint(box, first.shape[1], first.shape[0])
        if hint:
            print(f"siamtrack: warning: {hint}", file=sys.stderr)
        video_path = None if args.no_video else (
            Path(args.output) if args.output else Path.cwd() / f"{source.name}_tracked.mp4")
        boxes_path = Path(args.boxes) if args.boxes else Path.cwd() / f"{source.name}_boxes.txt"
        total = source.frame_count
        if args.max_frames:
            total = min(total, args.max_frames) if total else args.max_frames
        rows, update_s, code = _track_stream(
            tracker, frames, first, box, video_path, boxes_path, source.fps, total, args.max_frames,
            desc=source.name, show=args.show, overwrite=args.overwrite,
            pad_to=source.frame_count if source.exact_count else None, lost_column=args.lost_column)
        damage = source.damage_report()
    if damage:
        which = "every unreadable frame has a NaN row" if source.exact_count else \
            "frames lost before the last decoded one have NaN rows"
        print(f"siamtrack: warning: {args.source}: {damage} ({which} in {boxes_path})", file=sys.stderr)
    n_upd = len(rows) - 1
    ms = f"{1000 * update_s / n_upd:.1f} ms/frame" if n_upd else "no updates"
    status, stop = "tracked", ""
    if code:
        import signal

        status, stop = "interrupted after", f"stopped by {signal.Signals(code - 128).name}; "
    outputs = f"boxes {boxes_path}" if video_path is None else f"video {video_path}, boxes {boxes_path}"
    print(f"{status} {len(rows)} frames with {tracker.name}: mean update {_fps_text(n_upd, update_s)} "
          f"fps ({ms}); {stop}{damage + '; ' if damage else ''}{outputs}")
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    """``siamtrack demo``: track a generated clip with the shipped weights and score it.

    The demo owns its output folder, so a second demo run replaces the first one's files.
    """
    from .data.synthetic import make_sequence
    from .io import quiet_opencv_logs
    from .geometry import iou

    quiet_opencv_logs()
    if args.frames < 2:
        raise ValueError(f"--frames must be at least 2, got {args.frames}")
    from .tracking.threads import apply_threads

    apply_threads(args.threads)
    tracker = load_tracker(args.weights, args.device, args.backend)
    seq = make_sequence(num_frames=args.frames, seed=args.seed, name="demo", style="object")
    out_dir = Path(args.output)
    video_path, boxes_path = out_dir / "demo_tracked.mp4", out_dir / "demo_boxes.txt"
    rows, update_s, code = _track_stream(
        tracker, enumerate(seq.frames[1:], start=1), seq.frames[0], seq.boxes[0], video_path,
        boxes_path, fps=25.0, total=len(seq.frames), max_frames=None, desc="demo", truth=seq.boxes,
        overwrite=True)
    pred = np.array([r[:4] for r in rows])
    mean_iou = float(iou(pred, seq.boxes[:len(pred)]).mean())
    print(f"demo: {len(rows)} synthetic frames tracked with {tracker.name} "
          f"({tracker.weights_path}): mean IoU {mean_iou:.3f} against the known truth, "
          f"{_fps_text(len(rows) - 1, update_s)} fps; video {video_path} (green: tracker, "
          f"red: truth), boxes {boxes_path}")
    return code


def _add_weights_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=None, metavar="teacher|student|alexnet|PATH[@onnx|@int8]",
                   help="shipped weights by name, a checkpoint file or a folder written by `siamtrack "
                        "export` (default: student, else teacher; named weights are looked up in "
                        "$SIAMTRACK_WEIGHTS, the source tree's weights/, the installed copy "
                        "<prefix>/share/siamtrack/weights, ./weights); a @onnx / @int8 suffix "
                        "runs the fp32 / int8 ONNX graphs on onnxruntime")
    p.add_argument("--device", choices=["cpu", "cuda"], default=None,
                   help="where the network runs (default: cuda when available; onnxruntime: cpu)")
    p.add_argument("--backend", choices=["torch", "onnxruntime"], default=None,
                   help="what runs the network (default: torch; onnxruntime needs the deploy extra, "
                        "pip install -e '.[deploy]')")
    add_threads_option(p)


def build_parser() -> argparse.ArgumentParser:
    """The full parser, plugin sub-commands included."""
    parser = OneLineParser(prog="siamtrack", description="SiamFC single-object tracking.")
    parser.add_argument("--version", action="version", version=f"siamtrack {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    sub.required = True

    p = sub.add_parser("track", help="track one object through a video, image folder or camera",
                       description="Track one object; writes an annotated video and a boxes file with "
                                   "one 'x,y,w,h,score' row per frame (0-based pixels; the first row is "
                                   "the given box, score 1; frames that cannot be decoded get NaN rows). "
                                   "Outputs default to the current folder; they are written whole or "
                                   "not at all (also on Ctrl-C, SIGTERM, SIGHUP), never over an "
                                   "existing file without --overwrite, and one run at a time per path.")
    p.add_argument("source", help="video file, folder of images (jpg/png/bmp, sorted) or camera index")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--box", metavar="x,y,w,h",
                       help="first-frame box in pixels (use --box=-3,... for a negative x)")
    group.add_argument("--select", action="store_true", help="drag the first box with the mouse")
    _add_weights_options(p)
    out = p.add_mutually_exclusive_group()
    out.add_argument("--output", metavar="OUT.mp4",
                     help="annotated video, .mp4/.m4v/.mov/.mkv (H.264 when OpenCV can encode it, "
                          "else mp4v) or .avi (MJPG) (default: ./<name>_tracked.mp4)")
    out.add_argument("--no-video", action="store_true", help="write the boxes file only")
    p.add_argument("--boxes", metavar="OUT.txt", help="box rows (default: ./<name>_boxes.txt)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing output files (default: refuse)")
    p.add_argument("--lost-column", action="store_true",
                   help="add a sixth column to the boxes file: 1 while the tracker flags the target "
                        "lost, else 0 (the video shows it either way: a red box captioned LOST)")
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
