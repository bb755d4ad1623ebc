"""The confidence's scene terms (``siamtrack.tracking.scene``): a box stuck to the background moves
with it and nothing changes inside it; a target moves against the background or changes its pixels."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from siamtrack.tracking.scene import SIDE, SceneProbe, grey_square

FILL = np.array([127.0, 127.0, 127.0])
SIZE = np.array([40.0, 40.0])   # the box; the search side is 4 boxes, as the tracker's is about
SEARCH = 160.0


def textured(shift: tuple[int, int] = (0, 0), seed: int = 0) -> np.ndarray:
    """A 360 x 480 RGB frame of smooth random texture, moved by ``shift`` (dx, dy) pixels."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    frame = cv2.GaussianBlur(cv2.resize(noise, (480, 360), interpolation=cv2.INTER_LINEAR), (0, 0), 2.0)
    return np.roll(frame, shift=(shift[1], shift[0]), axis=(0, 1))


def probe_at(frame: np.ndarray, center: np.ndarray) -> SceneProbe:
    probe = SceneProbe()
    probe.remember(frame, center, SIZE, SEARCH, FILL)
    return probe


def test_grey_square_is_the_frame_in_grey_with_the_fill_outside() -> None:
    frame = np.zeros((100, 100, 3), np.uint8)
    frame[..., 0] = 200                               # pure red: grey 0.299 * 200 ~ 60
    inside = grey_square(frame, np.array([50.0, 50.0]), 40.0, FILL)
    assert inside.shape == (SIDE, SIDE) and inside.dtype == np.float32
    assert np.allclose(inside, 60.0, atol=1.0)
    corner = grey_square(frame, np.array([0.0, 0.0]), 40.0, FILL)   # three quarters outside
    assert np.allclose(corner[:SIDE // 2 - 1, :SIDE // 2 - 1], 127.0, atol=1.0)
    assert np.allclose(corner[SIDE // 2 + 1:, SIDE // 2 + 1:], 60.0, atol=1.0)


def test_a_box_moving_with_the_background_scores_no_relative_motion_and_no_change() -> None:
    """The teacher on OTB_Human3's kerb: the camera pans, the box moves exactly as the background."""
    center = np.array([240.0, 180.0])
    probe = probe_at(textured(), center)
    shift = np.array([8, -5])
    bg, rel, change = probe.step(textured(tuple(shift)), center + shift, SIZE, SEARCH, FILL)
    assert bg == pytest.approx(math.hypot(*shift) / 40.0, abs=0.02)
    assert rel < 0.02
    assert change < 5.0 / 30.0   # resampling and the sub-pixel error of the shift: a few grey levels


def test_a_box_held_still_while_the_background_pans_moves_against_it() -> None:
    """A target the camera follows stays put in the frame while the background slides by."""
    center = np.array([240.0, 180.0])
    probe = probe_at(textured(), center)
    bg, rel, _ = probe.step(textured((10, 0)), center, SIZE, SEARCH, FILL)
    assert bg == pytest.approx(0.25, abs=0.02) and rel == pytest.approx(0.25, abs=0.02)


def test_change_inside_the_box_shows_and_a_still_scene_does_not() -> None:
    center = np.array([240.0, 180.0])
    still = textured()
    probe = probe_at(still, center)
    assert probe.step(still, center, SIZE, SEARCH, FILL) == pytest.approx((0.0, 0.0, 0.0), abs=1e-6)
    moving = still.copy()
    moving[165:195, 225:255] = 255 - moving[165:195, 225:255]   # something changes inside the box
    bg, _, change = probe.step(moving, center, SIZE, SEARCH, FILL)
    assert bg < 0.05 and change > 20.0 / 30.0


def test_the_probe_remembers_each_frame_for_the_next() -> None:
    """``step`` compares with the frame before, not with the first: two equal pans read the same."""
    center = np.array([240.0, 180.0])
    probe = probe_at(textured(), center)
    first = probe.step(textured((6, 0)), center + (6, 0), SIZE, SEARCH, FILL)
    second = probe.step(textured((12, 0)), center + (12, 0), SIZE, SEARCH, FILL)
    # 2.4 pixels of the square: phase correlation's sub-pixel estimate reads ~2.0 on this texture
    assert second == pytest.approx(first, abs=0.02) and first[0] == pytest.approx(0.15, abs=0.03)
    assert SceneProbe().step(textured(), center, SIZE, SEARCH, FILL) == (0.0, 0.0, 0.0)  # nothing remembered


def test_tracker_reads_the_scene_terms_each_frame() -> None:
    """In the tracking loop: on a generated clip whose target moves over a still background the box
    moves against the background and its pixels change; once the clip freezes (the same frame
    again) the background has not moved and nothing in the box changes."""
    from siamtrack.data.synthetic import make_sequence
    from siamtrack.tracking.confidence import FEATURES
    from siamtrack.tracking.tracker import SiamFCTracker

    if not (Path(__file__).resolve().parents[1] / "weights" / "siamfc_student.pth").is_file():
        pytest.skip("no shipped student in this checkout")
    seq = make_sequence(num_frames=10, frame_size=(320, 240), target_size=(48, 40), seed=3, name="scene")
    tracker = SiamFCTracker.from_pretrained("student", threads=1)
    tracker.init(seq.frames[0], seq.boxes[0])
    bg, rel, change = (FEATURES.index(name) for name in ("bg_shift", "box_vs_bg", "box_change"))
    moving = []
    for frame in seq.frames[1:]:
        tracker.update(frame)
        moving.append(tracker.features[[bg, rel, change]])
    moving = np.array(moving)
    assert np.median(moving[:, 0]) < 0.05           # the generated background stands still
    assert moving[:, 2].mean() > 0.1                  # the target moves through the box
    tracker.update(seq.frames[-1])
    assert tracker.features[[bg, change]] == pytest.approx([0.0, 0.0], abs=1e-6)


def test_a_redetected_candidate_takes_the_scene_terms_of_the_last_found_frame() -> None:
    from siamtrack.config import TrackerConfig
    from siamtrack.tracking.redetect import LostSearch

    cfg = TrackerConfig(lost_threshold=0.3, lost_frames=1, found_threshold=0.6)
    search, here = LostSearch(), np.zeros(2)
    assert search.anchor_scene.tolist() == [0.0, 0.0, 0.0]
    search.observe(0.9, here, np.ones(2), cfg, np.array([0.1, 0.2, 0.5]))    # found: kept
    search.observe(0.1, here, np.ones(2), cfg, np.array([0.4, 0.0, 0.01]))   # lost: not the target's
    assert search.lost and search.anchor_scene.tolist() == [0.1, 0.2, 0.5]
