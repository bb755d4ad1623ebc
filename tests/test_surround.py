"""The confidence's surround terms (``siamtrack.tracking.surround``): a discriminant of this target
against its own surroundings, read on the chosen box's window of the search features."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from siamtrack.tracking import surround
from siamtrack.tracking.surround import SurroundModel, core_vectors, window_boxes_iou

K = 8          # kernel side in cells, as the shipped networks' (8 x 8 exemplar embeddings)
SIDE = 21      # response side: search features are SIDE + K - 1 cells a side
STRIDE = 8
CROP_PX = 223.0
INSTANCE_SZ = 223
CROP = (np.array([100.0, 100.0]), CROP_PX)                # the search crop: centre, side in frame pixels
BOX = (np.array([100.0, 100.0]), np.array([64.0, 64.0]))  # the target: centre, size


def view(center: np.ndarray, size: np.ndarray = np.array([64.0, 64.0])) -> dict:
    """The crop at (100, 100) and a box at ``center``; one cell is 8 frame pixels."""
    return dict(stride=STRIDE, offset=0.0, crop_center=np.array([100.0, 100.0]), crop_px=CROP_PX,
                instance_sz=INSTANCE_SZ, center=center, size=size)


def started(features: np.ndarray, center: np.ndarray = np.array([100.0, 100.0]),
            size: np.ndarray = np.array([64.0, 64.0])) -> SurroundModel:
    """A model started on ``features``: the crop at (100, 100), the box at ``center``."""
    model = SurroundModel()
    model.start(features, K, STRIDE, 0.0, INSTANCE_SZ, CROP, (center, size))
    return model


def planted(seed: int = 0, channels: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Search features of background pattern ``b`` (channels 3-5 and noise) with a target of pattern
    ``a`` (channels 0-2) planted where the centre cell's window has its core; returns (features, a, b)."""
    rng = np.random.default_rng(seed)
    n = SIDE + K - 1
    a, b = np.r_[1.0, 1.0, 1.0, 0, 0, 0][:channels], np.r_[0, 0, 0, 1.0, 1.0, 1.0][:channels]
    features = b[:, None, None] * np.ones((channels, n, n)) + 0.2 * rng.random((channels, n, n))
    centre = (SIDE - 1) // 2
    core = slice(centre + K // 4, centre + K - K // 4)
    features[:, core, core] = a[:, None, None] + 0.2 * rng.random((channels, K // 2, K // 2))
    return features, a, b


def test_core_vectors_pool_the_central_half_into_unit_vectors() -> None:
    windows = np.zeros((2, 3, K, K))
    windows[0, :, 2:4, 2:6] = 1.0          # top half of the core: channel values 1
    windows[0, 0, 0, 0] = 100.0            # outside the core: ignored
    windows[1, 1, 2:6, 2:6] = 5.0
    vectors = core_vectors(windows, pool=2)
    assert vectors.shape == (2, 3 * 4)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0])
    # window 0: per channel the 2 x 2 pooled core is [[1, 1], [0, 0]]
    assert vectors[0].reshape(3, 2, 2)[:, 0] == pytest.approx(np.full((3, 2), 1 / np.sqrt(6)))
    assert vectors[0].reshape(3, 2, 2)[:, 1] == pytest.approx(np.zeros((3, 2)))
    assert vectors[1].reshape(3, 4)[1] == pytest.approx([0.5, 0.5, 0.5, 0.5])
    assert core_vectors(np.zeros((0, 3, K, K))).shape == (0, 3 * surround.POOL ** 2)


def test_window_boxes_iou_is_one_at_the_box_and_zero_far_from_it() -> None:
    centre = (SIDE - 1) // 2
    cell_px = STRIDE * CROP_PX / INSTANCE_SZ
    iou = window_boxes_iou(SIDE, **view(np.array([100.0, 100.0])))
    assert iou.shape == (SIDE, SIDE) and iou[centre, centre] == pytest.approx(1.0)
    assert iou[0, 0] == 0.0 and iou[centre, 0] == 0.0
    assert iou[centre, centre + 1] == pytest.approx((64 - cell_px) / (64 + cell_px))
    # a box three cells to the right: its own cell is the one with IoU 1
    moved = window_boxes_iou(SIDE, **view(np.array([100.0 + 3 * cell_px, 100.0])))
    assert moved[centre, centre + 3] == pytest.approx(1.0)


def test_the_target_scores_high_and_its_surroundings_low() -> None:
    features, a, b = planted()
    assert SurroundModel().terms(features[:, :K, :K]) == (0.0, 0.0)          # before start: no terms
    model = started(features)
    centre = (SIDE - 1) // 2
    on_target = model.terms(features[:, centre:centre + K, centre:centre + K])[0]
    on_background = model.terms(features[:, 2:2 + K, 3:3 + K])[0]
    assert on_target > 0.5 and on_background < -0.5
    # a window that is the target's pattern elsewhere (the target moved) is still the target
    moved = np.broadcast_to(a[:, None, None], (len(a), K, K)).copy()
    assert model.terms(moved)[0] > 0.5


def test_lookalike_is_the_closest_surroundings_windows_likeness() -> None:
    """A window cut from the surroundings themselves matches them (cosine ~1); the target's window
    matches them less; the value is the mean of the LOOKALIKES best cosines."""
    features, a, b = planted()
    model = started(features)
    centre = (SIDE - 1) // 2
    background_window = features[:, 2:2 + K, 3:3 + K]
    _, alike = model.terms(background_window)
    v = core_vectors(background_window[None])[0].astype(np.float32)
    best = np.sort(model.background @ v)[-surround.LOOKALIKES:]
    assert alike == pytest.approx(float(best.mean()), abs=1e-6) and alike > 0.95
    assert model.terms(features[:, centre:centre + K, centre:centre + K])[1] < alike - 0.2
    assert len(model.background) == model.first.neg_count


def test_refits_every_few_found_frames_and_keeps_the_latest() -> None:
    features, a, b = planted()
    model = started(features)
    first = model.weights.copy()
    for _ in range(surround.EVERY - 1):
        model.observe(True, features, CROP, BOX)
    assert np.array_equal(model.weights, first) and model.recent == []
    model.observe(False, features, CROP, BOX)   # the tenth, not found: no refit
    assert model.recent == []
    for _ in range(surround.EVERY * (surround.KEEP + 2)):
        model.observe(True, features, CROP, BOX)
    assert len(model.recent) == surround.KEEP and not np.array_equal(model.weights, first)
    # the same crop again: more of the same windows (the ridge weighs less), the same answers
    centre = (SIDE - 1) // 2
    assert model.terms(features[:, centre:centre + K, centre:centre + K])[0] > 0.5
    assert model.terms(features[:, 2:2 + K, 3:3 + K])[0] < -0.5


def test_background_that_comes_into_view_is_learned_from_found_frames() -> None:
    """The lawn the dog runs off: a pattern absent from the first frame scores neither way at
    first; after found frames that show it around the target it scores as surroundings."""
    features, a, _ = planted(channels=6)
    lawn = np.zeros(6)
    lawn[[0, 3]] = 1.0                      # half target-like, half background-like
    model = started(features)
    patch = np.broadcast_to(lawn[:, None, None], (6, K, K)).copy()
    before = model.terms(patch)[0]
    later = features.copy()
    centre = (SIDE - 1) // 2
    outside = np.ones(later.shape[1:], bool)
    outside[centre:centre + K, centre:centre + K] = False
    later[:, outside] = lawn[:, None] + 0.2 * np.random.default_rng(1).random((6, int(outside.sum())))
    for _ in range(surround.EVERY * surround.KEEP):
        model.observe(True, later, CROP, BOX)
    assert model.terms(patch)[0] < before - 0.5
    assert model.terms(np.broadcast_to(a[:, None, None], (6, K, K)).copy())[0] > 0.5


def test_a_box_as_large_as_the_crop_has_no_surroundings_and_no_term() -> None:
    features, _, _ = planted()
    model = started(features, size=np.array([5000.0, 5000.0]))
    assert model.weights is None and model.terms(features[:, :K, :K]) == (0.0, 0.0)


def test_tracker_reads_the_surround_term_each_frame() -> None:
    """In the tracking loop with the shipped student on a generated clip it loses at frame 6 (its
    box slides onto the background): the term is read every frame, well above 0 while the box
    holds the target and below 0 once it holds only background (before the first refit, frame 10)."""
    from siamtrack.data.synthetic import make_sequence
    from siamtrack.evaluation.calibrate import iou
    from siamtrack.tracking.confidence import FEATURES
    from siamtrack.tracking.tracker import SiamFCTracker

    if not (Path(__file__).resolve().parents[1] / "weights" / "siamfc_student.pth").is_file():
        pytest.skip("no shipped student in this checkout")
    seq = make_sequence(num_frames=surround.EVERY, frame_size=(320, 240), target_size=(48, 40), seed=3,
                        name="surround")
    tracker = SiamFCTracker.from_pretrained("student", threads=1)
    tracker.init(seq.frames[0], seq.boxes[0])
    column = FEATURES.index("surround")
    terms, overlaps = [], []
    for frame, truth in zip(seq.frames[1:], seq.boxes[1:]):
        box = tracker.update(frame)
        terms.append(tracker.features[column])
        overlaps.append(float(iou(box[None], truth[None])[0]))
    terms, overlaps = np.array(terms), np.array(overlaps)
    on, off = overlaps >= 0.5, overlaps < 0.1
    assert on.sum() >= 3 and off.sum() >= 2, overlaps        # the clip shows both
    assert terms[on].min() > 0.3 and terms[off].max() < 0.0
