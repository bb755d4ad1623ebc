"""The ``siamtrack`` command line, end to end on a small generated video and a random network.

Bad input must give exit code 2 and ONE line on stderr, never a traceback; ``capfd`` also catches
what OpenCV/FFmpeg would print at the file-descriptor level.
"""
from __future__ import annotations

import re
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siamtrack import cli
from siamtrack.checkpoint import atomic_save, make_checkpoint, save_checkpoint
from siamtrack.data.synthetic import make_sequence
from siamtrack.models import build_model, named_spec
from siamtrack import weights as weights_module
from siamtrack.tracking import tracker as tracker_module

FRAMES = 12
BOX = "65,48,30,24"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    torch.manual_seed(0)
    net = build_model(named_spec("student", width=0.5))
    weights_dir = root / "weights"
    save_checkpoint(weights_dir / "siamfc_student.pth", net, meta={"note": "random test net"})
    seq = make_sequence(num_frames=FRAMES, frame_size=(160, 120), target_size=(30, 24), seed=2)
    video = root / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (160, 120))
    for frame in seq.frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    folder = root / "frames"
    folder.mkdir()
    for i, frame in enumerate(seq.frames[:6]):
        cv2.imwrite(str(folder / f"{i + 1}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (root / "empty").mkdir()
    (root / "not_a_video.mp4").write_text("hello\n")
    (root / "corrupt.pth").write_bytes(b"\x80\x04garbage" * 10)
    mismatched = make_checkpoint(net)
    mismatched["arch"] = named_spec("student", width=1.0)  # widths no longer match the weights
    atomic_save(mismatched, root / "mismatched.pth")
    return {"root": root, "weights_dir": weights_dir, "weights": weights_dir / "siamfc_student.pth",
            "video": video, "folder": folder}


def read_rows(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


def test_track_video_writes_annotated_video_and_boxes(files, tmp_path, capfd) -> None:
    out, boxes = tmp_path / "out" / "tracked.mp4", tmp_path / "boxes.txt"
    rc = cli.main(["track", str(files["video"]), "--box", BOX, "--weights", str(files["weights"]),
                   "--output", str(out), "--boxes", str(boxes), "--device", "cpu"])
    captured = capfd.readouterr()
    assert rc == 0, captured.err
    rows = read_rows(boxes)
    assert rows.shape == (FRAMES, 5)
    np.testing.assert_allclose(rows[0], [65, 48, 30, 24, 1.0])
    assert np.all(np.isfinite(rows)) and np.all((rows[:, 4] >= 0) & (rows[:, 4] <= 1))
    cap = cv2.VideoCapture(str(out))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (120, 160, 3)
    summary = captured.out.strip().splitlines()
    assert len(summary) == 1 and f"tracked {FRAMES} frames" in summary[0] and "fps" in summary[0]


def test_track_image_folder_with_default_outputs(files, tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["track", str(files["folder"]), "--box", "65 48 30 24", "--weights",
                   str(files["weights"]), "--max-frames", "4"])
    assert rc == 0, capfd.readouterr().err
    assert read_rows(tmp_path / "frames_boxes.txt").shape == (4, 5)
    assert (tmp_path / "frames_tracked.mp4").stat().st_size > 0


def test_ctrl_c_keeps_finished_rows(files, tmp_path, monkeypatch, capfd) -> None:
    real_update = tracker_module.SiamFCTracker.update
    calls = {"n": 0}

    def update(self, image):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real_update(self, image)

    monkeypatch.setattr(tracker_module.SiamFCTracker, "update", update)
    rc = cli.main(["track", str(files["video"]), "--box", BOX, "--weights", str(files["weights"]),
                   "--output", str(tmp_path / "o.mp4"), "--boxes", str(tmp_path / "o.txt")])
    assert rc == 130
    assert read_rows(tmp_path / "o.txt").shape == (4, 5)  # the first box + 3 updates
    assert "interrupted after 4 frames" in capfd.readouterr().out
    cap = cv2.VideoCapture(str(tmp_path / "o.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 4  # the video was finalised
    cap.release()


def bad_cases(files: dict[str, Path]) -> dict[str, tuple[list[str], str]]:
    r, w, v = files["root"], str(files["weights"]), str(files["video"])
    return {
        "missing video": (["track", str(r / "nope.mp4"), "--box", BOX, "--weights", w], "no such video"),
        "unreadable video": (["track", str(r / "not_a_video.mp4"), "--box", BOX, "--weights", w],
                             "cannot open video"),
        "empty folder": (["track", str(r / "empty"), "--box", BOX, "--weights", w], "no images"),
        "3 numbers": (["track", v, "--box", "1,2,3", "--weights", w], "4 numbers"),
        "letters": (["track", v, "--box", "a,b,c,d", "--weights", w], "4 numbers"),
        "outside": (["track", v, "--box", "400,300,20,20", "--weights", w], "outside the 160x120 frame"),
        "zero size": (["track", v, "--box", "10,10,0,20", "--weights", w], "must be positive"),
        "no box": (["track", v, "--weights", w], "--box x,y,w,h or pick it with --select"),
        "missing weights": (["track", v, "--box", BOX, "--weights", str(r / "none.pth")], "not found"),
        "corrupt weights": (["track", v, "--box", BOX, "--weights", str(r / "corrupt.pth")], "corrupt"),
        "mismatched weights": (["track", v, "--box", BOX, "--weights", str(r / "mismatched.pth")],
                               "do not match"),
        "bad max-frames": (["track", v, "--box", BOX, "--weights", w, "--max-frames", "0"], "at least 1"),
        "unknown option": (["track", v, "--bogus"], "unrecognized arguments"),
        "no command": ([], "required"),
    }


CASES = ["missing video", "unreadable video", "empty folder", "3 numbers", "letters", "outside",
         "zero size", "no box", "missing weights", "corrupt weights", "mismatched weights",
         "bad max-frames", "unknown option", "no command"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_line_and_exit_code_2(case, files, capfd) -> None:
    argv, message = bad_cases(files)[case]
    rc = cli.main(argv)
    err = capfd.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("siamtrack: error:") and message in lines[0]
    assert "Traceback" not in err


def test_select_and_show_without_display_say_so(files, monkeypatch, capfd) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    for extra in (["--select"], ["--box", BOX, "--show"]):
        rc = cli.main(["track", str(files["video"]), *extra, "--weights", str(files["weights"])])
        err = capfd.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "needs a display" in err[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is missing")
def test_cuda_without_cuda_is_a_clear_error(files, capfd) -> None:
    rc = cli.main(["track", str(files["video"]), "--box", BOX, "--weights", str(files["weights"]),
                   "--device", "cuda"])
    assert rc == 2 and "CUDA is not available" in capfd.readouterr().err


def test_console_script_in_a_subprocess(files) -> None:
    script = Path(sys.executable).with_name("siamtrack")
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "siamtrack"]
    proc = subprocess.run([*cmd, "track", str(files["root"] / "not_a_video.mp4"), "--box", BOX,
                           "--weights", str(files["weights"])], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"siamtrack: error: cannot open video {files['root'] / 'not_a_video.mp4'} "
        "(not a format OpenCV can decode?)"]


def test_demo_with_weights_from_env(files, tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setenv("SIAMTRACK_WEIGHTS", str(files["weights_dir"]))
    rc = cli.main(["demo", "--output", str(tmp_path / "demo"), "--frames", "8", "--device", "cpu"])
    out = capfd.readouterr().out
    assert rc == 0
    assert (tmp_path / "demo" / "demo_tracked.mp4").stat().st_size > 0
    assert read_rows(tmp_path / "demo" / "demo_boxes.txt").shape == (8, 5)
    match = re.search(r"mean IoU (\d\.\d+)", out)
    assert match and 0.0 <= float(match.group(1)) <= 1.0
    assert "SiamFC-student" in out


def test_demo_without_weights_exits_2_with_clear_message(tmp_path, monkeypatch, capfd) -> None:
    monkeypatch.setattr(weights_module, "search_dirs", lambda: [tmp_path])
    rc = cli.main(["demo", "--output", str(tmp_path / "demo")])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert "no trained weights are shipped yet" in err[0] and "train" in err[0]
    assert not (tmp_path / "demo").exists()


def test_plugins_add_subcommands_and_missing_ones_are_skipped(monkeypatch, capsys) -> None:
    plugin = types.ModuleType("fake_siamtrack_plugin")

    def add_subcommands(subparsers) -> None:
        p = subparsers.add_parser("hello", help="say hello")
        p.add_argument("--name", default="world")
        p.set_defaults(func=lambda args: print(f"hello {args.name}") or 0)

    plugin.add_subcommands = add_subcommands  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_siamtrack_plugin", plugin)
    monkeypatch.setattr(cli, "_PLUGINS", ["siamtrack_no_such_plugin.cli", "fake_siamtrack_plugin"])
    assert cli.main(["hello", "--name", "tracker"]) == 0
    assert capsys.readouterr().out == "hello tracker\n"


def test_plugin_with_a_broken_dependency_is_not_hidden(tmp_path, monkeypatch) -> None:
    (tmp_path / "plugin_with_bad_import.py").write_text("import siamtrack_missing_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "_PLUGINS", ["plugin_with_bad_import"])
    with pytest.raises(ImportError, match="siamtrack_missing_dependency"):
        cli.build_parser()


def test_parse_box_and_help(capsys) -> None:
    assert cli.parse_box("1,2,3,4") == [1, 2, 3, 4]
    assert cli.parse_box(" 1.5 2 3,4 ") == [1.5, 2, 3, 4]
    with pytest.raises(ValueError, match="finite"):
        cli.parse_box("1,2,inf,4")
    assert cli.main(["--help"]) == 0
    assert "track" in capsys.readouterr().out
    assert cli.main(["track", "--help"]) == 0
    assert "x,y,w,h,score" in capsys.readouterr().out


def test_track_first_frames_of_a_real_clip(shared_data, tmp_path, files, capfd) -> None:
    video = shared_data / "videos" / "opentracker_oneperson.mp4"
    if not video.exists():
        pytest.skip(f"{video} not found")
    box = (shared_data / "videos" / "opentracker_oneperson.box").read_text().strip()
    rc = cli.main(["track", str(video), "--box", box, "--weights", str(files["weights"]),
                   "--max-frames", "20", "--output", str(tmp_path / "o.mp4"),
                   "--boxes", str(tmp_path / "o.txt"), "--device", "cpu"])
    assert rc == 0, capfd.readouterr().err
    rows = read_rows(tmp_path / "o.txt")
    assert rows.shape == (20, 5) and np.all(np.isfinite(rows))
    np.testing.assert_allclose(rows[0, :4], [float(v) for v in box.split(",")])


def test_evaluation_entry_point_alone_has_the_same_one_line_errors(files, capfd) -> None:
    from siamtrack.evaluation import cli as evaluation_cli

    rc = evaluation_cli.main(["speed"])  # neither --weights nor --baselines
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("siamtrack: error:") and "--weights" in err[0] and "--baselines" in err[0]
    rc = evaluation_cli.main(["speed", "--weights", str(files["root"] / "corrupt.pth"), "--frames", "1"])
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "corrupt.pth" in err[0] and "corrupt" in err[0]


def test_lost_flag_in_the_video_and_behind_an_option_in_the_boxes(files, tmp_path, capfd) -> None:
    """Issue 25: the lost flag was invisible to CLI users. The video draws a lost box red with LOST;
    ``--lost-column`` adds a sixth 0/1 column, and without it the rows keep their five columns."""
    from siamtrack.config import TrackerConfig
    from siamtrack.tracking.confidence import FEATURES

    never = TrackerConfig(conf_weights=[-50.0] + [0.0] * len(FEATURES), lost_frames=3)
    torch.manual_seed(0)
    weights = tmp_path / "never_sure.pth"
    save_checkpoint(weights, build_model(named_spec("student", width=0.5)), never)
    out, boxes, plain = tmp_path / "lost.mp4", tmp_path / "lost.txt", tmp_path / "plain.txt"
    args = ["track", str(files["video"]), "--box", BOX, "--weights", str(weights), "--device", "cpu"]
    assert cli.main(args + ["--output", str(out), "--boxes", str(boxes), "--lost-column"]) == 0
    assert cli.main(args + ["--no-video", "--boxes", str(plain)]) == 0
    rows = read_rows(boxes)
    assert rows.shape == (FRAMES, 6) and rows[:, 5].tolist() == [0, 0, 0] + [1] * (FRAMES - 3)
    assert read_rows(plain).shape == (FRAMES, 5)
    np.testing.assert_allclose(read_rows(plain), rows[:, :5])
    cap = cv2.VideoCapture(str(out))
    frames = [cap.read()[1] for _ in range(FRAMES)]
    cap.release()

    def reddish(bgr: np.ndarray) -> int:
        b, g, r = (bgr[..., i].astype(int) for i in range(3))
        return int(((r > 180) & (g < 90) & (b < 90)).sum())

    assert reddish(frames[-1]) > 40 and reddish(frames[-1]) > 4 * reddish(frames[1])
