"""Reliability: the tracker's input contract (examples and a hypothesis property test), checkpoints
that cannot run code or load half-written, stale save temporaries, and the long-run benchmark's core.

tests/test_tracker.py already covers the first set of bad inputs (float32, RGBA, an empty
``(0, W, 3)`` frame, a non-array, NaN / zero-size / 3-number / outside boxes, ``update`` before
``init``, NaN network outputs, a smaller frame after ``init``); the cases here are the rest.
"""
from __future__ import annotations

import importlib.util
import math
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from siamtrack import SiamFCTracker
from siamtrack.checkpoint import (CheckpointError, atomic_save, load_model, make_checkpoint,
                                  read_checkpoint, remove_stale_temporaries, save_checkpoint)
from siamtrack.models import build_model, named_spec

REPO = Path(__file__).resolve().parents[1]


@lru_cache(maxsize=1)
def tiny_tracker() -> SiamFCTracker:
    """One random quarter-width student for the whole module: fast, and its outputs are arbitrary,
    which is the point (the invariants must hold whatever the network says)."""
    torch.manual_seed(0)
    return SiamFCTracker(build_model(named_spec("student", 0.25)), device="cpu")


def frame(height: int = 120, width: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def assert_invariants(box: np.ndarray, height: int, width: int, score: float) -> None:
    """The output contract: finite, at least 1x1, at most the frame, centre inside the frame."""
    assert box.shape == (4,) and box.dtype == np.float64
    assert np.all(np.isfinite(box)), box
    x, y, w, h = box
    assert 1.0 <= w <= width and 1.0 <= h <= height, box
    assert 0.0 <= x + w / 2 <= width and 0.0 <= y + h / 2 <= height, box
    assert 0.0 <= score <= 1.0


# ------------------------------------------------------------------------------ bad frames
BAD_FRAMES = {
    "uint16": (frame().astype(np.uint16) * 257, r"uint8 image.*got dtype uint16"),
    "float64 0..255": (frame().astype(np.float64), r"uint8 image.*got dtype float64"),
    "bool mask": (frame() > 127, r"uint8 image.*got dtype bool"),
    "2 channels": (frame()[:, :, :2], r"shape \(H, W, 3\).*got shape \(120, 160, 2\)"),
    "no channels": (np.zeros((120, 160, 0), np.uint8), r"shape \(H, W, 3\).*got shape \(120, 160, 0\)"),
    "1-D": (np.zeros(30, np.uint8), r"shape \(H, W, 3\).*got shape \(30,\)"),
    "batch of one": (frame()[None], r"shape \(H, W, 3\).*got shape \(1, 120, 160, 3\)"),
    "zero-width gray": (np.zeros((10, 0), np.uint8), r"empty image.*\(10, 0, 3\).*at least 1x1"),
    "None": (None, r"numpy array \(H, W, 3\) or a PIL image, got NoneType"),
}


@pytest.mark.parametrize("case", list(BAD_FRAMES))
def test_bad_frames_raise_value_errors_saying_what_is_expected(case: str) -> None:
    image, message = BAD_FRAMES[case]
    tracker = tiny_tracker()
    with pytest.raises(ValueError, match=message):
        tracker.init(image, [10, 10, 20, 20])
    tracker.init(frame(), [10, 10, 20, 20])
    with pytest.raises(ValueError, match=message):
        tracker.update(image)
    assert_invariants(tracker.update(frame()), 120, 160, tracker.score)  # still usable afterwards


# ------------------------------------------------------------------------------ bad boxes
BAD_BOXES = {
    "+inf width": ([10, 10, math.inf, 20], r"finite, got \[10.0, 10.0, inf, 20.0\]"),
    "-inf x": ([-math.inf, 10, 20, 20], r"finite"),
    "NaN everywhere": ([math.nan] * 4, r"finite"),
    "negative height": ([10, 10, 20, -5], r"positive, got w=20, h=-5"),
    "None": (None, r"4 numbers \[x, y, w, h\], got None"),
    "string": ("10,10,20,20", r"4 numbers \[x, y, w, h\], got '10,10,20,20'"),
    "5 numbers": ([10, 10, 20, 20, 1], r"4 numbers.*shape \(5,\)"),
    "corners as 2x2": ([[10, 10], [30, 30]], r"4 numbers.*shape \(2, 2\)"),
    "below the frame": ([10, 120, 20, 20], r"outside the 160x120 frame; it must overlap"),
    "above the frame": ([10, -20, 20, 20], r"outside the 160x120 frame"),
}


@pytest.mark.parametrize("case", list(BAD_BOXES))
def test_bad_boxes_raise_value_errors_saying_what_is_expected(case: str) -> None:
    box, message = BAD_BOXES[case]
    with pytest.raises(ValueError, match=message):
        tiny_tracker().init(frame(), box)


# ------------------------------------------------------------------------------ handled inputs
HANDLED_BOXES = {
    "1 pixel": [40, 30, 1, 1],
    "sub-pixel": [40, 30, 0.25, 0.5],
    "whole frame": [0, 0, 160, 120],
    "larger than the frame": [-100, -100, 400, 400],
    "over the top-left corner": [-15, -10, 30, 20],
    "over the bottom-right corner": [150, 110, 30, 20],
    "one row (1, 4)": [[40, 30, 20, 20]],
}


@pytest.mark.parametrize("case", list(HANDLED_BOXES))
def test_edge_boxes_are_handled_and_keep_the_invariants(case: str) -> None:
    tracker = tiny_tracker()
    tracker.init(frame(), HANDLED_BOXES[case])
    assert_invariants(tracker.box, 120, 160, tracker.score)
    for seed in range(3):
        assert_invariants(tracker.update(frame(seed=seed)), 120, 160, tracker.score)


def test_frames_may_change_size_and_channels_between_calls() -> None:
    tracker = tiny_tracker()
    tracker.init(frame(), [140, 100, 20, 20])
    stream = [frame(480, 640), frame(40, 30)[:, :, 0], frame(1, 1), frame(2, 200), frame(120, 160)]
    for image in stream:
        box = tracker.update(image)
        assert_invariants(box, image.shape[0], image.shape[1], tracker.score)
    tracker.init(frame(1, 1), [0, 0, 1, 1])  # a 1x1 frame is a valid (if useless) input
    assert_invariants(tracker.update(frame(1, 1)), 1, 1, tracker.score)


def test_update_before_init_on_a_fresh_tracker_after_an_init_that_failed() -> None:
    torch.manual_seed(1)
    tracker = SiamFCTracker(build_model(named_spec("student", 0.25)), device="cpu")
    with pytest.raises(ValueError, match="finite"):
        tracker.init(frame(), [math.nan, 0, 10, 10])
    with pytest.raises(ValueError, match=r"call init\(image, box\) before update"):
        tracker.update(frame())  # the failed init left nothing half-initialised


# ------------------------------------------------------------------------------ property test
def _box_is_valid(box: list[float], height: int, width: int) -> bool:
    x, y, w, h = box
    return (all(math.isfinite(v) for v in box) and w > 0 and h > 0
            and x < width and y < height and x + w > 0 and y + h > 0)


coords = st.floats(min_value=-400, max_value=400, allow_nan=False)
sizes = st.one_of(st.floats(min_value=1e-3, max_value=600), st.sampled_from([0.0, -3.0, 1.0]))
specials = st.sampled_from([math.nan, math.inf, -math.inf])
boxes = st.lists(st.one_of(coords, coords, coords, specials), min_size=2, max_size=2).flatmap(
    lambda xy: st.tuples(st.just(xy), st.lists(sizes, min_size=2, max_size=2))).map(
    lambda parts: [*parts[0], *parts[1]])
frame_sides = st.tuples(st.integers(1, 96), st.integers(1, 96))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=frame_sides, box=boxes, later=st.lists(frame_sides, min_size=1, max_size=3),
       seed=st.integers(0, 2**16))
def test_property_init_update_keep_the_invariants(first, box, later, seed) -> None:
    """Random frame sizes (1..96 px, changing between calls) and random boxes (partly outside,
    tiny, huge, zero, negative, NaN, infinite): init raises ValueError exactly for the invalid
    boxes, and every update is finite, at least 1x1, at most the frame, centred inside it."""
    tracker = tiny_tracker()
    h0, w0 = first
    if not _box_is_valid(box, h0, w0):
        with pytest.raises(ValueError, match="box"):
            tracker.init(frame(h0, w0, seed), box)
        return
    tracker.init(frame(h0, w0, seed), box)
    assert_invariants(tracker.box, h0, w0, tracker.score)
    for k, (h, w) in enumerate(later):
        out = tracker.update(frame(h, w, seed + k + 1))
        assert_invariants(out, h, w, tracker.score)


# ------------------------------------------------------------------------------ checkpoints
class Payload:
    """Pickles into a call of ``exec``: what a malicious ``.pth`` would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def test_a_pickle_carrying_a_payload_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned.txt"
    ckpt = make_checkpoint(build_model(named_spec("student", 0.25)))
    ckpt["meta"]["note"] = Payload(marker)  # hidden inside an otherwise valid checkpoint
    path = tmp_path / "evil.pth"
    torch.save(ckpt, path)
    with pytest.raises(CheckpointError, match=r"evil\.pth: refused to load.*weights_only"):
        read_checkpoint(path)
    with pytest.raises(CheckpointError, match="refused"):
        SiamFCTracker.from_pretrained(path, device="cpu")
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the payload is real: unrestricted loading runs it
    assert marker.read_text() == "pwned"


def _damaged_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    torch.manual_seed(0)
    good = tmp_path / "good.pth"
    save_checkpoint(good, build_model(named_spec("student", 0.25)))
    data = good.read_bytes()
    cases: dict[str, tuple[bytes | dict, str]] = {
        "empty file": (b"", "corrupt or truncated"),
        "first 100 bytes": (data[:100], "corrupt or truncated"),
        "first half": (data[: len(data) // 2], "corrupt or truncated"),
        "last byte missing": (data[:-1], "corrupt or truncated"),
        "a text file": (b"hello, I am not a checkpoint\n", "corrupt or truncated"),
        "a bare tensor": ({"tensor": torch.zeros(3)}, "not a siamtrack checkpoint"),
        "no state_dict": ({k: v for k, v in make_checkpoint(build_model(named_spec("student", 0.25))).items()
                           if k != "state_dict"}, "lacks 'state_dict'"),
        "another architecture": (dict(make_checkpoint(build_model(named_spec("alexnet", 0.25))),
                                      arch=named_spec("student", 0.25)), "do not match"),
        "bad architecture spec": (dict(make_checkpoint(build_model(named_spec("student", 0.25))),
                                       arch={"backbone": "nonsense"}), "invalid architecture"),
    }
    out = {}
    for name, (content, message) in cases.items():
        path = tmp_path / (name.replace(" ", "_") + ".pth")
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif "tensor" in content:
            torch.save(content["tensor"], path)
        else:
            atomic_save(content, path)
        out[name] = (path, message)
    return out


def test_damaged_or_foreign_checkpoints_name_the_file(tmp_path) -> None:
    for name, (path, message) in _damaged_files(tmp_path).items():
        with pytest.raises(CheckpointError) as info:
            load_model(path)
        text = str(info.value)
        assert str(path) in text and message in text and "\n" not in text, (name, text)


def test_stale_save_temporaries_are_removed(tmp_path) -> None:
    last = tmp_path / "last.pth"
    atomic_save({"x": 1}, last)
    stale = [tmp_path / f".last.pth.k{i}.tmp" for i in range(2)]  # what a SIGKILL mid-save leaves
    for p in stale:
        p.write_bytes(b"partial")
    keep = tmp_path / ".other.pth.k0.tmp"
    keep.write_bytes(b"someone else's")
    assert remove_stale_temporaries(last) == stale
    assert not any(p.exists() for p in stale) and keep.exists()
    assert torch.load(last, weights_only=True) == {"x": 1}


# ------------------------------------------------------------------------------ long runs
def _long_run_module():
    spec = importlib.util.spec_from_file_location("long_run", REPO / "experiments" / "long_run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their annotations through it
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_long_run_core_reports_windows_and_rss_growth() -> None:
    long_run = _long_run_module()
    report = long_run.track_stream(tiny_tracker(), frames=150, window=50, warmup=50, seed=1)
    assert [w.end for w in report.windows] == [50, 100, 150]
    assert all(w.ms_per_frame > 0 and w.rss_mib > 0 for w in report.windows)
    warm, last = report.windows[0].rss_mib, report.windows[-1].rss_mib
    assert report.rss_growth_pct == pytest.approx(100 * (last - warm) / warm)
    assert report.passed == (report.rss_growth_pct < 5.0)
    assert report.frames == 150 and 0.0 <= report.mean_score <= 1.0
    assert "RSS growth after warm-up" in long_run.format_report(report)
    with pytest.raises(ValueError, match="warm-up"):
        long_run.track_stream(tiny_tracker(), frames=100, window=50, warmup=100)



def test_checkpoints_get_the_umask_mode_not_owner_only(tmp_path) -> None:
    """atomic_save writes through mkstemp, which creates 0o600 files; a checkpoint must be as
    readable as a plain ``torch.save`` would leave it (0o666 less the umask)."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        atomic_save({"x": 1}, tmp_path / "a.pth")
        os.umask(0o077)
        atomic_save({"x": 2}, tmp_path / "b.pth")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.pth").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.pth").stat().st_mode) == 0o600
