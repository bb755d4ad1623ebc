"""Issue 16: outputs you can trust. Full disk, kill signals, two runs on one path, damaged and
truncated videos, misleading writer errors, benchmark data that does not add up, one tracker in two
threads; plus --overwrite, --no-video and the corner-box warning. All on small generated data."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siamtrack import cli
from siamtrack.checkpoint import save_checkpoint
from siamtrack.data import make_sequence
from siamtrack.io import AnnotatedVideoWriter, VideoFileSource
from siamtrack.io import writer as writer_module
from siamtrack.io.output import OutputLock, RowFile
from siamtrack.models import build_model, named_spec
from siamtrack.tracking.tracker import SiamFCTracker

from dataset_writers import write_got10k_folder

REPO = Path(__file__).resolve().parents[1]
BOX = "65,48,30,24"
SIZE = (160, 120)


def _write_video(path: Path, frames: list[np.ndarray], codec: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), 10.0, SIZE)
    for frame in frames:
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("output")
    torch.manual_seed(0)
    weights = root / "tiny.pth"
    save_checkpoint(weights, build_model(named_spec("student", width=0.5)))
    seq = make_sequence(num_frames=40, frame_size=SIZE, target_size=(30, 24), seed=2)
    video = _write_video(root / "clip.mp4", seq.frames[:12])
    long_video = _write_video(root / "long.mp4", seq.frames * 10)  # 400 frames: time to send a signal
    damaged = _write_video(root / "damaged.mp4", seq.frames)
    data = bytearray(damaged.read_bytes())
    start = int(len(data) * 0.45)
    data[start:start + len(data) // 10] = bytes(len(data) // 10)  # zeros over a tenth of the middle
    damaged.write_bytes(bytes(data))
    avi = _write_video(root / "full.avi", seq.frames, codec="MJPG")  # readable without its index
    truncated = root / "truncated.avi"
    truncated.write_bytes(avi.read_bytes()[: avi.stat().st_size // 2])
    return {"root": root, "weights": weights, "video": video, "long": long_video, "damaged": damaged,
            "truncated": truncated, "seq": seq}  # type: ignore[dict-item]


def rows_of(path: Path) -> np.ndarray:
    return np.loadtxt(path, delimiter=",", ndmin=2)


def frames_in(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        return int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
    finally:
        cap.release()


def track(files: dict, *extra: str, source: Path | None = None) -> int:
    return cli.main(["track", str(source or files["video"]), "--box", BOX, "--weights",
                     str(files["weights"]), "--device", "cpu", *extra])


def no_leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


# ------------------------------------------------------------------ full disk
def test_a_writer_reporting_a_full_disk_exits_2_and_keeps_whole_rows(files, tmp_path, monkeypatch, capfd):
    # the command line's answer to the writer's signal; the real full disk is the next test
    calls = {"n": 0}

    def full_after_five(path: Path) -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    monkeypatch.setattr(writer_module, "disk_full", full_after_five)
    out, boxes = tmp_path / "o.mp4", tmp_path / "o.txt"
    rc = track(files, "--output", str(out), "--boxes", str(boxes))
    captured = capfd.readouterr()
    err = [ln for ln in captured.err.splitlines() if "siamtrack: error" in ln]
    assert rc == 2 and len(err) == 1, captured.err
    assert f"cannot write video {out}: No space left on device" in err[0] and "5 whole rows kept" in err[0]
    assert "tracked" not in captured.out  # nothing reported as success
    assert not out.exists() and rows_of(boxes).shape == (5, 5) and no_leftovers(tmp_path) == []


@pytest.fixture
def small_fs(tmp_path):
    """A 64 KiB tmpfs mounted for the test: a disk that really fills (needs root and mount rights)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip() or proc.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("video", [True, False], ids=["video", "boxes-only"])
def test_a_really_full_disk_exits_2_keeps_whole_rows_and_leaves_nothing(video, files, small_fs, capfd):
    out, boxes = small_fs / "o.mp4", small_fs / "o.txt"
    extra = ["--output", str(out)] if video else ["--no-video"]
    pad = small_fs / "pad"  # leave ~8 KiB so the boxes alone fill it too
    pad.write_bytes(b"\0" * (0 if video else 56 * 1024))
    rc = track(files, *extra, "--boxes", str(boxes), source=files["long"])
    err = [ln for ln in capfd.readouterr().err.splitlines() if "siamtrack: error" in ln]
    assert rc == 2 and len(err) == 1 and ("No space left on device" in err[0] or "disk full" in err[0]), err
    assert not out.exists() and [p.name for p in small_fs.iterdir() if p.name.startswith(".")] == []
    text = boxes.read_text() if boxes.exists() else ""
    assert text.endswith("\n") or text == ""  # no torn last row
    rows = rows_of(boxes) if text else np.zeros((0, 5))
    note = f"{len(rows)} whole rows kept" if len(rows) else "no rows written"
    assert rows.shape[1] == 5 and len(rows) < 400 and note in err[0], err


def test_a_short_row_write_leaves_no_torn_row(tmp_path, monkeypatch):
    rows = RowFile(tmp_path / "b.txt")
    rows.write("1.00,2.00,3.00,4.00,1.0000\n")
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:7]) and 0)  # then "full"
    with pytest.raises(OSError, match=r"cannot write boxes .*b\.txt: No space left on device"):
        rows.write("5.00,6.00,7.00,8.00,0.5000\n")
    monkeypatch.setattr(os, "write", real_write)
    rows.commit()
    assert (tmp_path / "b.txt").read_text() == "1.00,2.00,3.00,4.00,1.0000\n"


def test_boxes_to_dev_full_names_the_file(files, capfd):
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    rc = track(files, "--no-video", "--boxes", "/dev/full")
    err = capfd.readouterr().err
    assert rc == 2 and "cannot write boxes /dev/full: No space left on device" in err


# ------------------------------------------------------------------ kill signals
@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP"])
def test_signal_closes_the_video_and_keeps_rows(signame, files, tmp_path):
    out, boxes = tmp_path / "s.mp4", tmp_path / "s.txt"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "siamtrack", "track", str(files["long"]), "--box", BOX,
                             "--weights", str(files["weights"]), "--device", "cpu", "--output", str(out),
                             "--boxes", str(boxes)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 600  # start-up (torch import) is slow on a busy 2-core machine
        while time.time() < deadline:  # wait until a few rows are in the temporary boxes file
            partial = [p for p in tmp_path.glob(".s.partial-*.txt") if p.stat().st_size > 100]
            if partial or proc.poll() is not None:
                break
            time.sleep(0.05)
        assert partial and proc.poll() is None, "the run was not tracking when the signal was due"
        proc.send_signal(getattr(signal, signame))
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + getattr(signal, signame), stderr
    assert f"stopped by {signame}" in stdout
    n = len(rows_of(boxes))
    assert 1 < n < 400 and frames_in(out) == n and no_leftovers(tmp_path) == []


# ------------------------------------------------------------------ two runs, one output
def test_second_run_on_a_locked_output_is_refused(files, tmp_path, capfd):
    out, boxes = tmp_path / "o.mp4", tmp_path / "o.txt"
    with OutputLock(out, "video"):  # what a first run holds while it writes
        rc = track(files, "--output", str(out), "--boxes", str(boxes))
    err = capfd.readouterr().err
    assert rc == 2 and f"video {out} is being written by another run" in err
    assert not out.exists() and not boxes.exists() and no_leftovers(tmp_path) == []
    assert track(files, "--output", str(out), "--boxes", str(boxes)) == 0  # lock released


def test_a_run_in_another_process_holding_the_lock_refuses_this_one(files, tmp_path, capfd):
    # a lock that only one process sees would let two runs interleave one file: hold it elsewhere
    out, boxes = tmp_path / "o.mp4", tmp_path / "o.txt"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom pathlib import Path\nfrom siamtrack.io.output import OutputLock\n"
        f"lock = OutputLock(Path({str(boxes)!r}), 'boxes').acquire()\nprint('held', flush=True)\n"
        "sys.stdin.read()")], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        rc = track(files, "--output", str(out), "--boxes", str(boxes))
        err = capfd.readouterr().err
        assert rc == 2 and f"boxes {boxes} is being written by another run" in err, err
        assert not out.exists() and not boxes.exists()
    finally:
        holder.communicate("", timeout=60)
    assert track(files, "--output", str(out), "--boxes", str(boxes)) == 0  # the holder is gone
    assert no_leftovers(tmp_path) == []


# ------------------------------------------------------------------ damaged input
def test_damaged_middle_is_read_past_with_nan_rows(files, tmp_path, capfd):
    boxes, out = tmp_path / "b.txt", tmp_path / "v.mp4"
    rc = track(files, "--output", str(out), "--boxes", str(boxes), source=files["damaged"])
    captured = capfd.readouterr()
    assert rc == 0, captured.err
    rows = rows_of(boxes)
    lost = int(np.isnan(rows[:, 0]).sum())
    assert len(rows) == 40 and lost > 0 and frames_in(out) == 40  # row k is frame k
    warning = [ln for ln in captured.err.splitlines() if "warning" in ln]
    assert len(warning) == 1 and f"{40 - lost} of 40 frames decoded, {lost} unreadable, from frame" in warning[0]
    assert f"{lost} unreadable" in captured.out


def test_truncated_video_says_how_many_frames_it_claimed(files, tmp_path, capfd):
    source = VideoFileSource(files["truncated"])
    decoded = sum(1 for _ in source)
    assert 0 < decoded < 40 and source.damage_report() == (
        f"{decoded} of 40 frames decoded, {40 - decoded} unreadable, from frame {decoded}")
    rc = track(files, "--no-video", "--boxes", str(tmp_path / "b.txt"), source=files["truncated"])
    captured = capfd.readouterr()
    assert rc == 0 and f"{decoded} of 40 frames decoded" in captured.err
    assert len(rows_of(tmp_path / "b.txt")) == decoded


# ------------------------------------------------------------------ misleading writer errors
def test_writer_failures_say_what_they_mean(files, tmp_path, capfd):
    (tmp_path / "a_file").write_text("x")
    cases = {
        "folder": ([str(tmp_path)], "is a folder; give a file name"),
        "parent is a file": ([str(tmp_path / "a_file" / "o.mp4")], "a_file is a file, not a folder"),
        "extension": ([str(tmp_path / "o.xyz")], "unknown video extension '.xyz'"),
    }
    for name, (out, message) in cases.items():
        boxes = tmp_path / f"{name}.txt"
        rc = track(files, "--output", out[0], "--boxes", str(boxes))
        err = capfd.readouterr().err
        assert rc == 2 and message in err and "codec" not in err, (name, err)
        assert not boxes.exists(), name  # no 1-row boxes file left behind
    with pytest.raises(OSError, match="no encoder for ZZZZ"):
        AnnotatedVideoWriter(tmp_path / "o.mp4", fourcc="ZZZZ").open(64, 48)
    assert no_leftovers(tmp_path) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root may write anywhere")
def test_read_only_folder_is_named(files, tmp_path, capfd):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc = track(files, "--output", str(folder / "o.mp4"), "--boxes", str(tmp_path / "b.txt"))
    finally:
        folder.chmod(0o755)
    assert rc == 2 and "no permission to write in folder" in capfd.readouterr().err


# ------------------------------------------------------------------ --overwrite, --no-video, corners
def test_existing_outputs_need_overwrite_and_no_video_writes_boxes_only(files, tmp_path, capfd):
    boxes = tmp_path / "b.txt"
    assert track(files, "--no-video", "--boxes", str(boxes)) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.txt"]
    assert "video" not in capfd.readouterr().out.split(";")[-1]
    boxes.write_text("keep me\n")
    assert track(files, "--no-video", "--boxes", str(boxes)) == 2
    assert "exists; pass --overwrite" in capfd.readouterr().err and boxes.read_text() == "keep me\n"
    assert track(files, "--no-video", "--boxes", str(boxes), "--overwrite") == 0
    assert rows_of(boxes).shape == (12, 5)
    assert cli.main(["track", str(files["video"]), "--box", BOX, "--no-video", "--output", "x.mp4"]) == 2


def test_corner_box_warning(files, tmp_path, capfd):
    # corners 100,48 -> 130,72 given as x1,y1,x2,y2: w=130 runs past the 160 px frame from x=100
    rc = cli.main(["track", str(files["video"]), "--box", "100,48,130,72", "--weights", str(files["weights"]),
                   "--device", "cpu", "--no-video", "--boxes", str(tmp_path / "b.txt"), "--max-frames", "2"])
    err = capfd.readouterr().err
    assert rc == 0 and "siamtrack: warning: --box 100,48,130,72 runs past the 160x120 frame" in err
    assert "pass --box 100,48,30,24" in err
    assert cli.main(["track", str(files["video"]), "--box", BOX, "--weights", str(files["weights"]),
                     "--no-video", "--boxes", str(tmp_path / "c.txt"), "--max-frames", "2"]) == 0
    assert "warning" not in capfd.readouterr().err


def test_demo_twice_into_the_same_folder(files, tmp_path, monkeypatch, capfd):
    args = ["demo", "--weights", str(files["weights"]), "--device", "cpu", "--frames", "3",
            "--output", str(tmp_path / "d")]
    assert cli.main(args) == 0 and cli.main(args) == 0, capfd.readouterr().err


# ------------------------------------------------------------------ benchmark input
def _bench(root: Path, dataset: str, files: dict, tmp_path: Path, *extra: str) -> int:
    return cli.main(["benchmark", "--dataset", dataset, "--root", str(root), "--trackers",
                     str(files["weights"]), "--report-dir", str(tmp_path / "report"), "--no-progress",
                     "--device", "cpu", *extra])


@pytest.fixture
def short_gt(files, tmp_path) -> Path:
    seq = files["seq"]
    from siamtrack.data import SyntheticSequence

    seqs = [SyntheticSequence(n, seq.frames[:6], seq.boxes[:6]) for n in ("A", "B")]
    folder = write_got10k_folder(tmp_path / "got", seqs, "val")
    gt = folder / "B" / "groundtruth.txt"
    gt.write_text("".join(gt.read_text().splitlines(keepends=True)[:4]))  # 4 rows for 6 frames
    return folder


@pytest.mark.parametrize("dataset", ["got10k", "folder"])
def test_benchmark_frame_and_row_counts_must_match(dataset, short_gt, files, tmp_path, capfd):
    root = short_gt.parent if dataset == "got10k" else short_gt
    rc = _bench(root, dataset, files, tmp_path)
    err = capfd.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "sequence B: 6 frames but 4 ground-truth rows" in err and "--skip-bad" in err
    assert not (tmp_path / "report" / "results").exists() or not any((tmp_path / "report" / "results").rglob("*.txt"))
    assert _bench(root, dataset, files, tmp_path, "--skip-bad") == 0
    assert "skipping sequence B: 6 frames but 4 ground-truth rows" in capfd.readouterr().out


def test_benchmark_sequence_missing_from_list(short_gt, files, tmp_path, capfd):
    (short_gt / "list.txt").write_text("A\nGone\n")
    for dataset, root in (("folder", short_gt), ("got10k", short_gt.parent)):
        assert _bench(root, dataset, files, tmp_path) == 2
        err = capfd.readouterr().err
        assert "sequence Gone:" in err and "missing" in err, (dataset, err)


# ------------------------------------------------------------------ threads
def test_one_tracker_in_two_threads_raises_two_trackers_work(files):
    seq = files["seq"]
    trackers = [SiamFCTracker.from_pretrained(str(files["weights"]), device="cpu") for _ in range(2)]

    def follow(tracker: SiamFCTracker) -> np.ndarray:
        tracker.init(seq.frames[0], seq.boxes[0])
        return np.array([tracker.update(f) for f in seq.frames[1:8]])

    expected = follow(trackers[0])
    results: list[object] = [None, None]

    def run(k: int) -> None:
        results[k] = follow(trackers[k])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for boxes in results:
        np.testing.assert_allclose(boxes, expected)

    shared = trackers[0]
    shared.init(seq.frames[0], seq.boxes[0])
    inside, release = threading.Event(), threading.Event()
    real_respond = shared.engine.respond_features

    def slow_respond(*args):  # hold the first thread inside update
        inside.set()
        release.wait(10)
        return real_respond(*args)

    shared.engine.respond_features = slow_respond  # type: ignore[method-assign]
    worker = threading.Thread(target=shared.update, args=(seq.frames[1],))
    worker.start()
    assert inside.wait(10)
    try:
        with pytest.raises(RuntimeError, match="not thread-safe"):
            shared.update(seq.frames[2])
    finally:
        release.set()
        worker.join()
    shared.engine.respond_features = real_respond  # type: ignore[method-assign]
    shared.update(seq.frames[2])  # usable again once the other call is done


# ------------------------------------------------------------------ issue 26: whole or absent, every error
def _folder(files, tmp_path: Path, broken: tuple[int, ...], n: int = 8) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for k, frame in enumerate(files["seq"].frames[:n]):
        path = folder / f"{k:04d}.png"
        if k in broken:
            path.write_bytes(b"\x89PNG\r\n\x1a\n not an image")  # a truncated download
        else:
            cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    return folder


def test_unreadable_folder_images_get_nan_rows_and_a_warning(files, tmp_path, capfd):
    folder = _folder(files, tmp_path, broken=(3, 7))
    out, boxes = tmp_path / "f.mp4", tmp_path / "f.txt"
    assert track(files, "--output", str(out), "--boxes", str(boxes), source=folder) == 0
    err = capfd.readouterr().err
    assert "6 of 8 frames decoded, 2 unreadable, from frame 3" in err and "NaN row" in err
    rows = rows_of(boxes)
    assert rows.shape == (8, 5) and frames_in(out) == 8  # row k is image k, the last one too
    assert np.isnan(rows[[3, 7]]).all() and np.isfinite(np.delete(rows, [3, 7], axis=0)).all()
    assert no_leftovers(tmp_path) == []


def test_unreadable_first_folder_image_is_a_one_line_error(files, tmp_path, capfd):
    folder = _folder(files, tmp_path, broken=(0,), n=3)
    assert track(files, "--boxes", str(tmp_path / "f.txt"), "--output", str(tmp_path / "f.mp4"),
                 source=folder) == 2
    assert "cannot read image" in capfd.readouterr().err and not (tmp_path / "f.txt").exists()


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_any_exception_keeps_the_rows_so_far_and_removes_temporaries(error, files, tmp_path, monkeypatch, capfd):
    real = SiamFCTracker.update
    calls = {"n": 0}

    def failing(self, image):
        calls["n"] += 1
        if calls["n"] == 5:
            raise error("the network fell over")
        return real(self, image)

    monkeypatch.setattr(SiamFCTracker, "update", failing)
    out, boxes = tmp_path / "e.mp4", tmp_path / "e.txt"
    if error is RuntimeError:  # not a user error: it propagates, after the outputs are settled
        with pytest.raises(RuntimeError, match="fell over"):
            track(files, "--output", str(out), "--boxes", str(boxes))
    else:
        assert track(files, "--output", str(out), "--boxes", str(boxes)) == 2
        assert "the network fell over; stopped with 5 whole rows kept" in capfd.readouterr().err
    assert rows_of(boxes).shape == (5, 5) and not out.exists() and no_leftovers(tmp_path) == []


def test_temporaries_of_a_killed_run_are_swept_by_the_next_run_on_that_path(files, tmp_path):
    out, boxes = tmp_path / "k.mp4", tmp_path / "k.txt"
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "siamtrack", "track", str(files["long"]), "--box", BOX,
                             "--weights", str(files["weights"]), "--device", "cpu", "--output", str(out),
                             "--boxes", str(boxes)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if [p for p in tmp_path.glob(".k.partial-*.txt") if p.stat().st_size > 100]:
            break
        time.sleep(0.05)
    proc.kill()  # SIGKILL: none of its clean-up runs
    proc.wait()
    left = sorted(p.name for p in tmp_path.iterdir() if ".partial-" in p.name)
    assert left == [f".k.partial-{proc.pid}.mp4", f".k.partial-{proc.pid}.txt"], left
    live = tmp_path / f".k.partial-{os.getppid()}.txt"  # a live process's file: left alone
    live.write_text("x")
    assert track(files, "--output", str(out), "--boxes", str(boxes), "--max-frames", "3") == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [live.name]


def test_a_second_signal_between_the_video_and_the_row_write_keeps_them_in_step(files, tmp_path, monkeypatch):
    real = AnnotatedVideoWriter.write

    def write_then_signals(self, frame, *args, **kwargs):
        real(self, frame, *args, **kwargs)
        if self.frames_written == 5:  # the worst moment: video frame 5 written, its row not yet
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # the impatient second one raises KeyboardInterrupt

    monkeypatch.setattr(AnnotatedVideoWriter, "write", write_then_signals)
    out, boxes = tmp_path / "s.mp4", tmp_path / "s.txt"
    assert track(files, "--output", str(out), "--boxes", str(boxes), source=files["long"]) == 143
    assert len(rows_of(boxes)) == frames_in(out) == 5 and no_leftovers(tmp_path) == []
