"""Issue 15, for the application developer: the calibrated confidence, the lost flag, re-detection,
the OpenCV-style wrapper, ``--threads`` and the score's ROC AUC."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from siamtrack.cli import build_parser
from siamtrack.data.synthetic import SyntheticClip, make_clip
from siamtrack.tracking.confidence import calibrated_score, response_stats, roc_auc, separation_labels
from siamtrack.geometry import iou
from siamtrack.tracking.opencv_api import TrackerSiamFC
from siamtrack.tracking.tracker import SiamFCTracker


# ------------------------------------------------------------------ ROC AUC by hand
def test_roc_auc_matches_hand_computed_values():
    # positives 0.35, 0.8 vs negatives 0.1, 0.4: of the 4 pairs, 3 ranked right -> 0.75
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    assert roc_auc([0.9, 0.8, 0.1], [1, 1, 0]) == pytest.approx(1.0)
    assert roc_auc([0.9, 0.8, 0.1], [0, 0, 1]) == pytest.approx(0.0)
    # a tie between a positive and a negative counts one half: pairs (0.5+, 0.5-) 0.5, (0.5+, 0.2-) 1,
    # (0.9+, 0.5-) 1, (0.9+, 0.2-) 1 -> 3.5 / 4
    assert roc_auc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)
    assert roc_auc([0.3, 0.3], [1, 0]) == pytest.approx(0.5)
    assert roc_auc([0.1, 0.2], [1, 1]) is None and roc_auc([], []) is None


def test_separation_labels_leave_out_the_middle_and_count_absent_as_lost():
    used, pos = separation_labels(np.array([0.9, 0.3, 0.05, np.nan]), np.array([0, 0, 0, 1]))
    assert used.tolist() == [True, False, True, True] and pos.tolist() == [True, False, False, False]


def test_response_stats_sharp_peak_beats_flat_map():
    sharp = np.zeros((17, 17))
    sharp[8, 8] = 5.0
    flat = np.random.default_rng(0).normal(0, 1, (17, 17))
    stats = response_stats(np.stack([sharp, flat, np.full((17, 17), np.nan)]))
    assert stats.shape == (3, 3) and np.isfinite(stats).all()
    assert stats[0, 1] > 10 * stats[1, 1]   # psr
    assert stats[0, 2] > stats[1, 2]        # zscore


# ------------------------------------------------------------------ tracker on generated clips
@pytest.fixture(scope="module")
def loaded_student() -> SiamFCTracker:
    return SiamFCTracker.from_pretrained("student", device="cpu")


@pytest.fixture
def student(loaded_student) -> SiamFCTracker:
    """A fresh tracker per test on the one loaded engine: tests rewrite ``cfg``, and a shared tracker
    would hand the next test whatever settings the previous one left."""
    return SiamFCTracker(loaded_student.engine, loaded_student.cfg)


def _clip(seed: int = 3) -> SyntheticClip:
    return make_clip(num_frames=20, frame_size=(480, 270), target_size=(48, 36), growth=1.0, seed=seed,
                     style="object")


def test_confidence_high_while_tracking_and_drops_when_the_target_is_removed(student, loaded_student):
    student.cfg = dataclasses.replace(student.cfg, redetect=False)
    clip = _clip()
    student.init(clip.frame(0), clip.boxes[0])
    on = []
    for k in range(1, 12):
        box = student.update(clip.frame(k))
        assert iou(box[None], clip.boxes[k][None])[0] > 0.5
        on.append(student.score)
    off = []
    for _ in range(12):  # the target is gone: background only
        student.update(clip.background)
        off.append(student.score)
    # the shipped thresholds, whatever an earlier test set on its own tracker
    assert student.cfg == dataclasses.replace(loaded_student.cfg, redetect=False)
    # on target the score stays high; off it falls frame after frame as the features' moving
    # average (conf_smoothing) forgets the target (until it is all but zero, where rounding may
    # jitter), to a fraction of every on-target frame's (the flag's thresholds are fitted on real
    # video, not on this generated background)
    falling = all(b < a or max(a, b) < 0.01 for a, b in zip(off[2:], off[3:]))
    assert min(on) > 0.5 and falling and off[-1] < min(on) / 3, (on, off)
    # the score is the calibrated fit of the frame's smoothed features, not any number in [0, 1]
    assert student.score == pytest.approx(float(calibrated_score(student._smoothed, student.cfg.conf_weights)[0]))


def _lost_run(student, redetect: bool):
    # thresholds for this clip's smooth background (the defaults are fitted on real video)
    cfg = dataclasses.replace(student.cfg, redetect=redetect, lost_frames=3, lost_threshold=0.45,
                              found_threshold=0.55, conf_smoothing=0.0)  # frame counts exact
    student.cfg = cfg
    clip = _clip()
    student.init(clip.frame(0), clip.boxes[0])
    for k in range(1, 6):
        student.update(clip.frame(k))
    assert not student.lost
    confident = student.box
    flags, boxes = [], []
    for _ in range(8):
        boxes.append(student.update(clip.background))
        flags.append(student.lost)
    return cfg, confident, flags, boxes


def test_lost_after_k_low_frames_on_an_empty_scene(student):
    cfg, _, flags, _ = _lost_run(student, redetect=False)
    # the first background frame may still score high (the target's edge is in the crop): lost
    # comes after k low frames in a row, i.e. on background frame k or k + 1, and stays
    first = flags.index(True) if True in flags else len(flags)
    assert cfg.lost_frames - 1 <= first <= cfg.lost_frames, flags
    assert all(flags[first:]), flags


def test_lost_with_redetection_on_an_empty_scene_never_jumps_to_the_background(student):
    """With re-detection on, the flag comes as without it, and no background tile is taken: the box
    is the one the normal step gives, frame for frame (a frozen box was the first design; it lost
    targets the flag had given up too early)."""
    cfg, _, flags, boxes = _lost_run(student, redetect=True)
    first = flags.index(True) if True in flags else len(flags)
    assert cfg.lost_frames - 1 <= first <= cfg.lost_frames, flags
    assert all(flags[first:]), flags
    _, _, flags_off, boxes_off = _lost_run(student, redetect=False)
    assert flags == flags_off
    np.testing.assert_allclose(np.array(boxes), np.array(boxes_off))


def test_redetection_finds_a_target_that_jumped_across_the_frame(student):
    clip = _clip(seed=5)
    w, h = clip.boxes[0, 2:]
    left = np.array([20.0, 20.0, w, h])
    right = np.array([480 - 20 - w, 270 - 20 - h, w, h])
    boxes = np.array([left] * 6 + [left] * 6 + [right] * 30)  # 6 visible, 6 absent, then far away
    jumped = SyntheticClip("jump", clip.background, clip.patch, boxes)
    frames = [jumped.frame(k) if not 6 <= k < 12 else clip.background for k in range(len(boxes))]
    results = {}
    for redetect in (False, True):
        student.cfg = dataclasses.replace(student.cfg, redetect=redetect, lost_frames=3, lost_threshold=0.5,
                                          found_threshold=0.6)
        student.init(frames[0], boxes[0])
        out = [student.update(f) for f in frames[1:]]
        results[redetect] = iou(np.array(out[-5:]), boxes[-5:]).min()
    assert results[True] > 0.5, results          # found again, and tracked
    assert results[False] < 0.1, results         # plain SiamFC never gets there


# ------------------------------------------------------------------ OpenCV-style wrapper
def test_opencv_wrapper_takes_bgr_and_matches_the_rgb_tracker(student):
    clip = _clip()
    student.cfg = dataclasses.replace(student.cfg, redetect=False)
    rgb = SiamFCTracker(student.engine, student.cfg)
    cvt = TrackerSiamFC(SiamFCTracker(student.engine, student.cfg))
    first = clip.frame(0)
    x, y, w, h = clip.boxes[0]
    rgb.init(first, clip.boxes[0])
    cvt.init(cv2.cvtColor(first, cv2.COLOR_RGB2BGR), (x, y, w, h))
    for k in range(1, 6):
        frame = clip.frame(k)
        box = rgb.update(frame)
        ok, rect = cvt.update(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        assert ok is True and all(isinstance(v, int) for v in rect)
        assert rect == tuple(int(round(v)) for v in box)
        np.testing.assert_allclose(cvt.box, box)
        assert cvt.score == rgb.score


# ------------------------------------------------------------------ --threads
@pytest.mark.parametrize("argv", [
    ["track", "video.mp4", "--box", "1,2,3,4", "--threads", "2"],
    ["demo", "--threads", "2"],
    ["benchmark", "--dataset", "got10k", "--root", "x", "--trackers", "student", "--threads", "2"],
])
def test_threads_option_is_accepted(argv):
    assert build_parser().parse_args(argv).threads == 2


def test_threads_option_must_be_positive(tmp_path):
    from siamtrack.cli import main

    assert main(["demo", "--threads", "0", "--output", str(tmp_path)]) == 2


# ------------------------------------------------------------------ threads in force after a run
@pytest.fixture
def restore_threads():
    import torch

    saved = torch.get_num_threads(), cv2.getNumThreads()
    yield
    torch.set_num_threads(saved[0])
    cv2.setNumThreads(saved[1])


def _run(tracker, frames: int = 3) -> None:
    clip = _clip()
    tracker.init(clip.frame(0), clip.boxes[0])
    for k in range(1, frames):
        tracker.update(clip.frame(k))


def test_python_api_applies_the_cli_thread_policy(restore_threads):
    import torch

    from siamtrack import apply_threads
    from siamtrack.tracking.threads import DEFAULT_THREADS

    apply_threads(3)  # what torch would pick on a many-core machine
    _run(SiamFCTracker.from_pretrained("student", device="cpu"))
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (DEFAULT_THREADS, DEFAULT_THREADS)
    apply_threads(3)
    _run(TrackerSiamFC.create("student", device="cpu").tracker)
    assert torch.get_num_threads() == DEFAULT_THREADS
    _run(TrackerSiamFC.create("student", device="cpu", threads=2).tracker)
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (2, 2)
    apply_threads(3)
    _run(SiamFCTracker.from_pretrained("student", device="cpu", threads=None))  # the app decides
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("threads", [None, 2])
def test_cli_run_leaves_its_threads_in_force(threads, tmp_path, restore_threads):
    import torch

    from siamtrack.cli import main
    from siamtrack.tracking.threads import DEFAULT_THREADS, apply_threads

    apply_threads(3)
    extra = [] if threads is None else ["--threads", str(threads)]
    assert main(["demo", "--frames", "3", "--weights", "student", "--device", "cpu",
                 "--output", str(tmp_path), *extra]) == 0
    expected = DEFAULT_THREADS if threads is None else threads
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (expected, expected)
