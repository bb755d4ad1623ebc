"""Issue 25: a confidence and a lost flag you can act on, for every weights file.

Each failure the issue lists has a test here (or in test_app_api / test_box_head / test_cli): the
flag's hysteresis, the re-detection guard for a reference peak <= 0 and its geometry offset, the
OpenCV wrapper's rect while lost, the out-of-sample fit, the fit written into a checkpoint without
touching the weights, the shipped files each carrying their own fit, and the pipeline's refit.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from siamtrack.checkpoint import read_checkpoint, save_checkpoint
from siamtrack.config import DEFAULT_CONF_WEIGHTS, OLDER_CONF_WEIGHT_LENGTHS, TrackerConfig, from_dict
from siamtrack.evaluation import calibrate
from siamtrack.geometry import peak_displacement
from siamtrack.models import build_model, named_spec
from siamtrack.tracking.confidence import FEATURES, appearance_terms, roc_auc
from siamtrack.tracking.opencv_api import TrackerSiamFC
from siamtrack.tracking.redetect import LostSearch, peak_guard
from siamtrack.tracking.tracker import SiamFCTracker

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
ALWAYS = [50.0] + [0.0] * len(FEATURES)    # conf_weights scoring every frame ~1
NEVER = [-50.0] + [0.0] * len(FEATURES)    # ... and ~0


# ------------------------------------------------------------------ the flag's hysteresis
def test_lost_flag_enters_and_leaves_with_hysteresis() -> None:
    """Issue 25: the student's flag fired from frame 28 while on target and cleared on single good
    frames after the loss. Lost needs ``lost_frames`` low frames in a row; found needs
    ``found_frames`` frames at ``found_threshold``, and a score between the two thresholds keeps it."""
    cfg = TrackerConfig(lost_threshold=0.3, lost_frames=3, found_threshold=0.6, found_frames=2)
    search = LostSearch()
    c, s = np.zeros(2), np.ones(2)
    flags = [search.observe(v, c, s, cfg) or search.lost for v in
             [0.9, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1,   # two low frames do not flag; three do
              0.7, 0.1, 0.5, 0.5, 0.5,             # one good frame, then in-band scores: still lost
              0.7, 0.7, 0.4]]                      # two good frames clear it; 0.4 alone does not flag
    assert flags == [False, False, False, False, False, False, True,
                     True, True, True, True, True,
                     True, False, False]
    # an older checkpoint's lost_threshold above the default found_threshold loads: the band is empty
    assert TrackerConfig(lost_threshold=0.5, found_threshold=0.4).found_threshold == 0.5


def test_flag_simulation_matches_the_tracker_bookkeeping() -> None:
    """The fit chooses thresholds by simulating the flag; the simulation must be the tracker's flag."""
    rng = np.random.default_rng(0)
    scores = rng.random(200)
    seq = np.repeat([0, 1], 100)
    cfg = TrackerConfig(lost_threshold=0.4, lost_frames=2, found_threshold=0.6, found_frames=2)
    expected = []
    for k, v in enumerate(scores):
        if k in (0, 100):
            search = LostSearch()
        search.observe(v, np.zeros(2), np.ones(2), cfg)
        expected.append(search.lost)
    assert calibrate.flag_sequence(scores, seq, cfg).tolist() == expected


# ------------------------------------------------------------------ re-detection
class _MapEngine:
    """Every crop answers the same ``(r, r)`` map: a test of the loop's geometry and guards."""

    backend = "fake"
    device = torch.device("cpu")

    def __init__(self, response: np.ndarray) -> None:
        self.response = response.astype(np.float32)

    def embed_exemplar(self, z: np.ndarray) -> np.ndarray:
        return np.ones((1, 4, 6, 6), dtype=np.float32)

    def respond(self, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
        return np.repeat(self.response[None], len(x), axis=0)

    def respond_features(self, kernel: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        side = self.response.shape[-1] + 5  # the search embedding a 6x6 kernel gives this map from
        return self.respond(kernel, x), np.ones((len(x), 4, side, side), dtype=np.float32)


def _lost(cfg: TrackerConfig) -> LostSearch:
    search = LostSearch()
    search.reset(np.array([100.0, 80.0]), np.array([30.0, 20.0]))
    for _ in range(cfg.lost_frames):
        search.observe(0.0, np.array([100.0, 80.0]), np.array([30.0, 20.0]), cfg)
    assert search.lost
    return search


def test_peak_guard_stays_on_when_the_reference_peak_is_not_positive() -> None:
    """Issue 25: ``ratio * ref`` switched itself off for ref <= 0 (the student's is 0.23 on one val
    sequence and negative on others), so any background tile could be 'found'."""
    assert peak_guard(2.0, 0.6) == pytest.approx(1.2)
    assert peak_guard(-1.0, 0.6) == pytest.approx(-1.4)
    assert peak_guard(float("-inf"), 0.6) == float("-inf")
    cfg = TrackerConfig(conf_weights=ALWAYS, redetect=True)
    response = np.full((17, 17), -6.0)
    response[5, 9] = -5.0                              # far below the reference of -1
    img = np.zeros((200, 240, 3), np.uint8)
    search = _lost(cfg)
    score, found = search.search(img, _MapEngine(response), None, 60.0, cfg, np.zeros(3), 8, 0.0, -1.0,
                                 lambda features, tile, c: ((1.0, 1.0), (1.0, 0.5)), lambda c: 1.0)
    assert found is None and search.lost
    response[5, 9] = -0.5                              # close to the reference: found
    score, found = search.search(img, _MapEngine(response), None, 60.0, cfg, np.zeros(3), 8, 0.0, -1.0,
                                 lambda features, tile, c: ((1.0, 1.0), (1.0, 0.5)), lambda c: 1.0)
    assert found is not None and search.lost           # the caller decides whether to take it
    search.recover()
    assert not search.lost


@pytest.mark.parametrize("offset", [0.0, 4.0])
def test_redetected_centre_uses_the_same_geometry_as_tracking(offset: float) -> None:
    """Issue 25: redetect.py dropped the ``geometry.offset`` term the tracking step adds."""
    cfg = TrackerConfig(conf_weights=ALWAYS, redetect=True, response_up=4)
    response = np.zeros((17, 17))
    response[3, 12] = 5.0
    search = _lost(cfg)
    x_sz = 120.0
    _, found = search.search(np.zeros((200, 240, 3), np.uint8), _MapEngine(response), None, x_sz, cfg,
                             np.zeros(3), 8, offset, 5.0, lambda features, tile, c: ((1.0, 1.0), (1.0, 0.5)), lambda c: 1.0)
    import cv2
    up = 17 * cfg.response_up
    r = cv2.resize(response.astype(np.float32), (up, up), interpolation=cv2.INTER_CUBIC)
    row, col = divmod(int(r.argmax()), up)
    expected = np.array([100.0, 80.0]) + peak_displacement(row, col, up, 8, cfg.response_up, offset, x_sz,
                                                           cfg.instance_sz)
    np.testing.assert_allclose(found, expected)


# ------------------------------------------------------------------ the wrapper's rect while lost
def _drifting_tracker(redetect: bool) -> TrackerSiamFC:
    response = np.zeros((17, 17))
    response[8, 12] = 5.0                               # the peak right of centre: the box moves right
    cfg = TrackerConfig(conf_weights=NEVER, redetect=redetect, lost_frames=2, scale_num=1)
    tracker = SiamFCTracker(_MapEngine(response), cfg, arch=named_spec("alexnet"))
    wrapper = TrackerSiamFC(tracker)
    wrapper.init(np.zeros((240, 640, 3), np.uint8), (40, 100, 30, 20))
    return wrapper


def test_opencv_rect_while_lost_follows_the_best_match() -> None:
    """Issue 25: ``TrackerSiamFC.update`` said the rect is the frozen last-confident box while lost;
    it kept moving. The docstring now says it follows the best local match, with or without
    re-detection (a frozen box lost targets a false alarm had given up), and this holds it to it."""
    frame = np.zeros((240, 640, 3), np.uint8)
    for redetect in (False, True):
        wrapper = _drifting_tracker(redetect=redetect)
        answers = [wrapper.update(frame) for _ in range(6)]
        assert [ok for ok, _ in answers] == [True, False, False, False, False, False]
        xs = [rect[0] for _, rect in answers[1:]]
        assert all(b > a for a, b in zip(xs, xs[1:])), (redetect, xs)  # lost, still following


@pytest.mark.parametrize("tile_score, local_score, jumps", [(0.9, 0.0, True), (0.6, 0.0, False), (0.75, 0.8, False)])
def test_redetection_jumps_only_to_a_confident_tile_better_than_the_local_match(tile_score: float, local_score: float,
                                                                                jumps: bool) -> None:
    """While lost, a re-detected tile replaces the local match only at ``redetect_found`` or more
    and above the local match's confidence; taking it clears the flag."""
    wrapper = _drifting_tracker(redetect=True)
    tracker = wrapper.tracker
    tracker.cfg = dataclasses.replace(tracker.cfg, redetect_found=0.7)
    frame = np.zeros((240, 640, 3), np.uint8)
    for _ in range(3):
        wrapper.update(frame)
    assert tracker.lost
    local = tracker.center.copy()
    target = np.array([500.0, 60.0])
    found = target if tile_score >= tracker.cfg.redetect_found else None
    tracker._lost_search.search = lambda *args: (tile_score, found)  # type: ignore[method-assign]
    tracker.score = local_score                          # the local match's confidence this frame
    tracker._redetect(frame)
    if jumps:
        np.testing.assert_allclose(tracker.center, target)
        assert not tracker.lost and tracker.score == tile_score
        np.testing.assert_allclose(tracker.target_sz, tracker._lost_search.anchor[1])
    else:
        np.testing.assert_allclose(tracker.center, local)
        assert tracker.lost


@pytest.mark.parametrize("peak_at", [(10, 10), (0, 0), (20, 1), (1, 19)])
def test_response_stats_match_their_definition_with_a_mask(peak_at: tuple[int, int]) -> None:
    """peak, PSR (sidelobe: the map outside the square of PSR_EXCLUDE cells around the peak, cut at
    the map's edge) and z-score, against a straightforward masked computation."""
    from siamtrack.tracking.confidence import PSR_EXCLUDE, map_stats, response_stats

    rng = np.random.default_rng(sum(peak_at))
    response = rng.normal(0, 1, (21, 21)).astype(np.float32)
    response[peak_at] = 6.0
    peak = float(response.max())
    side = np.ones(response.shape, bool)
    r, c = peak_at
    side[max(r - PSR_EXCLUDE, 0):r + PSR_EXCLUDE + 1, max(c - PSR_EXCLUDE, 0):c + PSR_EXCLUDE + 1] = False
    lobe = response[side].astype(np.float64)
    expected = (peak, (peak - lobe.mean()) / (lobe.std() + 1e-6),
                (peak - response.mean(dtype=np.float64)) / (response.std(dtype=np.float64) + 1e-6))
    assert map_stats(response) == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(response_stats(np.stack([response, -response]))[0], expected, rtol=1e-6)
    broken = response.copy()
    broken[3, 3] = np.nan
    assert np.isfinite(map_stats(broken)).all()


def test_colour_term_compares_the_box_colours_with_the_first_frame() -> None:
    """Same colours score 1, disjoint ones 0, whatever the box size; dark and grey pixels get bins
    of their own (their hue is noise); a box outside the frame has no histogram and scores 0."""
    from siamtrack.tracking.confidence import COLOUR_BINS, colour_histogram, colour_similarity

    frame = np.zeros((120, 160, 3), np.uint8)
    frame[:, :80] = (200, 30, 30)       # red
    frame[:, 80:] = (30, 30, 200)       # blue
    red = colour_histogram(frame, (40, 60), (60, 100))
    assert red is not None and red.shape == (COLOUR_BINS,) and red.sum() == pytest.approx(1.0)
    assert colour_similarity(colour_histogram(frame, (30, 50), (10, 12)), red) == pytest.approx(1.0)
    assert colour_similarity(colour_histogram(frame, (120, 60), (60, 100)), red) == pytest.approx(0.0)
    half = colour_similarity(colour_histogram(frame, (80, 60), (60, 100)), red)   # half red, half blue
    assert half == pytest.approx(np.sqrt(0.5), abs=0.05)
    dark, grey = np.full((40, 40, 3), 10, np.uint8), np.full((40, 40, 3), 150, np.uint8)
    h_dark, h_grey = colour_histogram(dark, (20, 20), (40, 40)), colour_histogram(grey, (20, 20), (40, 40))
    assert h_dark.argmax() != h_grey.argmax() and colour_similarity(h_dark, h_grey) == 0.0
    assert colour_histogram(frame, (500, 60), (20, 20)) is None
    assert colour_similarity(None, red) == 0.0


# ------------------------------------------------------------------ the fit
def test_appearance_terms_whole_and_core() -> None:
    k = np.random.default_rng(0).normal(size=(1, 8, 8, 8))
    e = k.copy()
    e[..., :2, :] = -e[..., :2, :]                      # the context differs, the core does not
    whole, core = appearance_terms(e, k)
    assert core == pytest.approx(1.0) and whole < 0.9
    assert appearance_terms(k, k) == pytest.approx((1.0, 1.0))


def _frames(rng: np.random.Generator, sequences: int = 20, per: int = 50) -> dict[str, np.ndarray]:
    """Per sequence either on target or lost throughout; one informative feature (noisy) and one
    feature constant within a sequence, random across them: a sequence fingerprint to overfit on."""
    seq = np.repeat(np.arange(sequences), per)
    lost = np.repeat(rng.random(sequences) < 0.5, per)
    lost[:per] = False
    lost[per:2 * per] = True
    features = np.zeros((len(seq), len(FEATURES)))
    features[:, 1] = np.where(lost, 0.0, 1.0) + rng.normal(0, 1.2, len(seq))
    features[:, 4] = np.repeat(rng.normal(size=sequences), per) * 30
    return {"features": features, "iou": np.where(lost, 0.0, 0.8), "absent": np.zeros(len(seq), bool),
            "seq": seq}


def test_fit_reports_out_of_sample_by_sequence() -> None:
    """Issue 25: the old calibration was fitted and scored on the same sequences (0.892 in sample,
    0.79 on val). A per-sequence fingerprint lifts the in-sample AUC; grouped folds do not see it."""
    data = _frames(np.random.default_rng(1))
    cfg, report = calibrate.fit(data, None, TrackerConfig())
    assert report["auc_in_sample"] > report["auc_out_of_sample"] + 0.02, report
    assert report["auc_out_of_sample"] > 0.65 and report["train_sequences"] == 20
    for held in calibrate.group_folds(data["seq"], 5):  # whole sequences in or out
        assert all(held[data["seq"] == s].all() or not held[data["seq"] == s].any() for s in range(20))
    assert cfg.lost_threshold <= cfg.found_threshold and len(cfg.conf_weights) == len(FEATURES) + 1


def test_smoothing_choice_takes_the_most_smoothing_within_one_standard_error() -> None:
    scores = {w: np.full(3, w) for w in (0.0, 0.5, 0.7, 0.85)}
    rows = [(0.0, scores[0.0], 0.964, 0.009), (0.5, scores[0.5], 0.963, 0.009),
            (0.7, scores[0.7], 0.962, 0.009), (0.85, scores[0.85], 0.959, 0.009)]
    weight, oof = calibrate.smoothing_choice(rows)
    assert weight == 0.85 and oof is scores[0.85]
    rows[3] = (0.85, scores[0.85], 0.950, 0.009)           # more than one error below the best: not taken
    assert calibrate.smoothing_choice(rows)[0] == 0.7
    assert calibrate.smoothing_choice([(w, o, a, 0.0) for w, o, a, _ in rows])[0] == 0.0   # no error: the best
    data = _frames(np.random.default_rng(1))
    _, report = calibrate.fit(data, None, TrackerConfig())
    assert set(report["smoothing_tried"]) == {str(w) for w in calibrate.SMOOTHING}


def test_fit_written_into_a_checkpoint_keeps_the_weights(tmp_path) -> None:
    torch.manual_seed(0)
    net = build_model(named_spec("student", width=0.5))
    src, dst = tmp_path / "a.pth", tmp_path / "b.pth"
    save_checkpoint(src, net, TrackerConfig(), meta={"note": "kept"})
    cfg = dataclasses.replace(TrackerConfig(), conf_weights=[float(v) for v in range(len(FEATURES) + 1)],
                              lost_threshold=0.2, found_threshold=0.4)
    calibrate.write_fitted(src, dst, cfg, {"auc_out_of_sample": 0.9})
    before, after = read_checkpoint(src), torch.load(dst, map_location="cpu", weights_only=True)
    assert before["state_dict"].keys() == after["state_dict"].keys()
    assert all(torch.equal(before["state_dict"][k], after["state_dict"][k]) for k in before["state_dict"])
    assert after["meta"]["note"] == "kept" and after["meta"]["confidence_fit"]["auc_out_of_sample"] == 0.9
    loaded = SiamFCTracker.from_pretrained(str(dst), device="cpu")
    assert loaded.cfg.conf_weights == cfg.conf_weights and loaded.cfg.found_threshold == 0.4
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, nothing left behind


@pytest.mark.parametrize("length", OLDER_CONF_WEIGHT_LENGTHS)
def test_weights_fitted_before_later_features_score_as_they_did(length: int) -> None:
    """A file fitted on the first ``length - 1`` features loads with weight 0 for the rest, so the
    colour and scene terms, whatever they read, leave its score as it was when it was fitted."""
    from siamtrack.tracking.confidence import calibrated_score

    old = [float(v) for v in np.linspace(-1.0, 1.0, length)]
    cfg = TrackerConfig(conf_weights=old)
    assert len(cfg.conf_weights) == len(FEATURES) + 1
    assert cfg.conf_weights[:length] == old and not any(cfg.conf_weights[length:])
    x = np.random.default_rng(length).normal(size=(5, len(FEATURES)))
    assert np.allclose(calibrated_score(x, cfg.conf_weights), calibrated_score(x[:, :length - 1], old))
    with pytest.raises(ValueError, match="conf_weights needs"):
        TrackerConfig(conf_weights=old[:-2])  # no length a file was ever fitted with


@pytest.mark.parametrize("name", ["teacher", "student", "student_v3", "student_v4", "student_v1", "alexnet"])
def test_every_shipped_checkpoint_carries_its_own_out_of_sample_fit(name: str) -> None:
    """Issue 25: student and alexnet carried no calibration and fell back to the defaults."""
    path = WEIGHTS / f"siamfc_{name}.pth"
    if not path.is_file():
        pytest.skip(f"{path} not shipped in this checkout")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    fit = ckpt["meta"]["confidence_fit"]
    features = list(FEATURES) if name in ("student", "teacher") else fit["features"]
    # the others keep fits made before the colour term or the scene terms (weights/MODEL_CARD.md):
    # those weights are 0 when they load, so they score as they did
    older = [list(FEATURES[:n - 1]) for n in OLDER_CONF_WEIGHT_LENGTHS]
    assert features in [list(FEATURES), *older] and fit["features"] == features
    assert len(ckpt["tracker"]["conf_weights"]) == len(features) + 1
    assert len(from_dict(TrackerConfig, ckpt["tracker"]).conf_weights) == len(FEATURES) + 1
    assert fit["auc_out_of_sample"] > 0.8 and fit["folds"] >= 2
    if name != "student":  # the defaults are the student's fit
        assert ckpt["tracker"]["conf_weights"] != list(DEFAULT_CONF_WEIGHTS)


@pytest.mark.parametrize("head", ["xcorr", "box"])
def test_appearance_window_is_what_the_response_cell_correlated(head: str) -> None:
    """The appearance term reads the chosen box's embedding from the search features the engine
    returns with the maps (no second backbone pass): for the xcorr head the window of response cell
    (r, c) is exactly what the map's value at (r, c) is the correlation of."""
    from siamtrack.tracking.confidence import feature_window

    def window_terms(features: np.ndarray, kernel: np.ndarray, cell: tuple[float, float]) -> tuple[float, float]:
        """The tracker's appearance terms for the box at ``cell`` (``SiamFCTracker._appearance``)."""
        return appearance_terms(feature_window(features, kernel.shape[-2:], cell), kernel)

    torch.manual_seed(0)
    net = build_model(named_spec("student", head=head)).eval()
    engine = SiamFCTracker(net, TrackerConfig()).engine
    rng = np.random.default_rng(0)
    kernel = engine.embed_exemplar(rng.integers(0, 256, (1, 3, 127, 127), dtype=np.uint8))
    out, features = engine.respond_features(kernel, rng.integers(0, 256, (2, 3, 255, 255), dtype=np.uint8))
    k = np.asarray(kernel)[0]
    side = features.shape[-1] - k.shape[-1] + 1
    assert side == out.shape[-1]
    if head == "xcorr":
        for row, col in [(0, 0), (5, 11), (side - 1, side - 1)]:
            window = features[1, :, row:row + k.shape[-2], col:col + k.shape[-1]]
            expected = net.head.out_scale * float((window * k).sum()) + float(net.head.bias.detach())
            assert out[1, row, col] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    whole, core = window_terms(features[1], k, (3, 4))
    assert -1.0 <= whole <= 1.0 and -1.0 <= core <= 1.0
    # the kernel's own window scores 1: plant it at a cell and read it back
    planted = features[1].copy()
    planted[:, 6:6 + k.shape[-2], 2:2 + k.shape[-1]] = k
    assert window_terms(planted, k, (6, 2)) == pytest.approx((1.0, 1.0))
    assert window_terms(planted, k, (60, -9))[0] < 1.0  # clipped into the map, not an IndexError
    # between cells: the bilinear blend of the four windows around the position
    r0, c0, fr, fc = 4, 9, 0.25, 0.5
    at = lambda r, c: features[1, :, r:r + k.shape[-2], c:c + k.shape[-1]]  # noqa: E731
    blend = (1 - fr) * ((1 - fc) * at(r0, c0) + fc * at(r0, c0 + 1)) + fr * ((1 - fc) * at(r0 + 1, c0) + fc * at(r0 + 1, c0 + 1))
    assert window_terms(features[1], blend, (r0 + fr, c0 + fc)) == pytest.approx((1.0, 1.0))
    assert window_terms(features[1], blend, (r0, c0))[0] < 0.999
    assert SiamFCTracker(net, TrackerConfig()).head_kind == head


def test_appearance_drops_when_the_target_leaves() -> None:
    """On a generated clip the tracked box's appearance (read from the search features) stays high;
    a frame without the target (the background alone) scores lower."""
    from siamtrack.data.synthetic import make_sequence

    seq = make_sequence(num_frames=12, frame_size=(320, 240), target_size=(48, 40), seed=3, name="app")
    if not (WEIGHTS / "siamfc_student.pth").is_file():
        pytest.skip("no shipped student in this checkout")
    tracker = SiamFCTracker.from_pretrained("student", threads=1)
    tracker.init(seq.frames[0], seq.boxes[0])
    on = []
    for frame in seq.frames[1:]:
        tracker.update(frame)
        on.append(tracker.features[FEATURES.index("appearance")])
    empty = np.full_like(seq.frames[0], 128)
    tracker.update(empty)
    off = tracker.features[FEATURES.index("appearance")]
    assert min(on) > off + 0.2


# ------------------------------------------------------------------ the pipeline refits
def test_pipeline_refits_the_confidence_of_every_stage_it_writes(tmp_path) -> None:
    from dataset_writers import write_got10k_folder
    from siamtrack.config import load_experiment
    from siamtrack.data.synthetic import make_sequence
    from siamtrack.pipeline import Pipeline

    seqs = []
    for k in range(4):  # 8 visible frames, then the target gone: lost frames are certain
        seq = make_sequence(num_frames=14, frame_size=(128, 96), target_size=(24, 20), seed=k,
                            name=f"seq{k}")
        seq.boxes[8:] = np.nan
        seqs.append(seq)
    write_got10k_folder(tmp_path / "data", seqs, subset="train")
    root = Path(__file__).resolve().parents[1]
    cfg = load_experiment(root / "experiments" / "tiny.yaml",
                          [f"out_dir={tmp_path / 'runs'}", f"confidence_roots=[{tmp_path / 'data'}]",
                           "confidence_frames=14"])
    Pipeline(cfg, show_progress=False).run()
    ckpt = read_checkpoint(tmp_path / "runs" / "tiny" / "teacher" / "final.pth")
    fit = ckpt["meta"]["confidence_fit"]
    if "skipped" in fit:  # a random tiny net may never be on target: then it says so
        assert "on-target" in fit["skipped"]
    else:
        assert fit["train_sequences"] == 4 and fit["auc_out_of_sample"] is not None
        assert ckpt["tracker"]["conf_weights"] != list(DEFAULT_CONF_WEIGHTS)
    skipped = load_experiment(root / "experiments" / "tiny.yaml", [f"out_dir={tmp_path / 'runs2'}"])
    Pipeline(skipped, show_progress=False).run()
    meta = read_checkpoint(tmp_path / "runs2" / "tiny" / "teacher" / "final.pth")["meta"]
    assert meta["confidence_fit"] == {"skipped": "no GOT-10k-layout training roots"}


def test_pipeline_without_the_toolkit_keeps_the_weights_and_says_why(tmp_path, monkeypatch) -> None:
    """A GPU machine has torch but not the got10k toolkit: the stage must end with its weights
    written and the fit marked skipped (it used to raise ModuleNotFoundError after training)."""
    import sys

    from dataset_writers import write_got10k_folder
    from siamtrack.config import load_experiment
    from siamtrack.data.synthetic import make_sequence
    from siamtrack.pipeline import Pipeline

    write_got10k_folder(tmp_path / "data", [make_sequence(num_frames=6, frame_size=(96, 80), seed=0,
                                                          name="seq0")], subset="train")
    for name in [m for m in sys.modules if m == "got10k" or m.startswith("got10k.")
                 or m.startswith("siamtrack.evaluation.calibrate")
                 or m.startswith("siamtrack.evaluation.experiments")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "got10k", None)  # import got10k -> ImportError
    root = Path(__file__).resolve().parents[1]
    cfg = load_experiment(root / "experiments" / "tiny.yaml",
                          [f"out_dir={tmp_path / 'runs'}", f"confidence_roots=[{tmp_path / 'data'}]",
                           "confidence_frames=6"])
    Pipeline(cfg, show_progress=False).run()
    meta = read_checkpoint(tmp_path / "runs" / "tiny" / "teacher" / "final.pth")["meta"]
    assert "got10k" in meta["confidence_fit"]["skipped"]
    assert "confidence_fit.py" in meta["confidence_fit"]["skipped"]


def test_confidence_fit_script_reads_every_root_it_is_given(tmp_path) -> None:
    """experiments/confidence_fit.py --roots: the fit collects from each named GOT-10k-layout root
    (relative to --data, or absolute) and names them in the report; a missing root is an error
    before anything is tracked."""
    import importlib.util

    from dataset_writers import write_got10k_folder
    from siamtrack.data.synthetic import make_sequence

    for r, root in enumerate(("a", "b")):
        seqs = []
        for k in range(3):  # visible, then gone: both classes for the fit
            seq = make_sequence(num_frames=10, frame_size=(128, 96), target_size=(24, 20), seed=10 * r + k,
                                name=f"{root}{k}")
            seq.boxes[6:] = np.nan
            seqs.append(seq)
        write_got10k_folder(tmp_path / root, seqs, subset="train")
    ckpt = WEIGHTS / "siamfc_student.pth"  # a trained net: on target while the target is there
    script = Path(__file__).resolve().parents[1] / "experiments" / "confidence_fit.py"
    spec = importlib.util.spec_from_file_location("confidence_fit", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit):
        module.main(["--weights", str(ckpt), "--data", str(tmp_path), "--roots", "a/train,missing", "--no-val"])
    assert module.main(["--weights", str(ckpt), "--data", str(tmp_path), "--no-val", "--folds", "2",
                        "--roots", f"a/train,{tmp_path / 'b' / 'train'}", "--output", str(tmp_path / "fitted.pth")]) == 0
    fit = read_checkpoint(tmp_path / "fitted.pth")["meta"]["confidence_fit"]
    assert fit["train_sequences"] == 6
    assert fit["roots"] == [str(tmp_path / "a" / "train"), str(tmp_path / "b" / "train")]


def test_fit_smooths_the_features_as_the_tracker_does() -> None:
    """The fit scores moving averages of the features; the tracker must average them the same way
    (restarted at init), or the fitted weights would not mean what they were fitted for."""
    rng = np.random.default_rng(2)
    feats, seq = rng.normal(size=(30, len(FEATURES))), np.repeat([0, 1, 2], 10)
    offline = calibrate.smoothed(feats, seq, 0.7)
    from siamtrack.tracking.confidence import smooth
    online, prev = [], None
    for k in range(30):
        prev = smooth(None if k % 10 == 0 else prev, feats[k], 0.7)
        online.append(prev)
    np.testing.assert_allclose(offline, online)
    np.testing.assert_allclose(calibrate.smoothed(feats, seq, 0.0), feats)


def test_flag_choice_falls_back_to_the_fewest_on_target_flags() -> None:
    """A network whose on-target frames score low for long stretches leaves no setting within the
    budget; the flag must then flag the fewest on-target frames, not keep the checkpoint's old ones."""
    seq = np.zeros(40, int)
    ious = np.r_[np.full(30, 0.8), np.zeros(10)]
    scores = np.r_[np.full(9, 0.001), np.full(21, 0.9), np.full(10, 0.001)]  # 9 low on-target frames
    data = {"seq": seq, "iou": ious, "absent": np.zeros(40, bool)}
    base = TrackerConfig(lost_threshold=0.6, lost_frames=1, found_threshold=0.6)
    cfg = calibrate.choose_flag(scores, data, base)
    rates = calibrate.flag_rates(calibrate.flag_sequence(scores, seq, cfg), ious, data["absent"])
    # the fewest any setting can flag: 8 low frames to enter (frames 8 and 9 flagged) and 2 good ones
    # to leave (the first good frame still flagged): 3 of 30, above the 2.5 % budget
    assert cfg != base and rates["on_target_flagged"] == pytest.approx(3 / 30) and rates["lost_flagged"] > 0


def test_clip_check_labels_losses_and_flag_delays() -> None:
    """experiments/clip_check.py, which gives the README clips' flag figures: a frame is on target
    only where both references agree with the box, a loss is a long enough off-target run after an
    on-target frame, out-of-view frames count as off target, and the report gives the flag's delay."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("clip_check", WEIGHTS.parent / "experiments" / "clip_check.py")
    clip_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(clip_check)
    n = 30
    ref = np.tile([100.0, 100.0, 40.0, 40.0], (n, 1))
    other = ref.copy()
    other[20:24, 0] += 200                                     # the references disagree on 20-23
    boxes = ref.copy()
    boxes[8:16, 0] += 100                                      # off target on 8-15
    boxes[26:, 0] += 10                                        # still within half a size: on target
    label = clip_check.labels("clip", boxes, [ref, other])
    assert label[:8].tolist() == [1] * 8 and label[8:16].tolist() == [0] * 8
    assert label[20:24].tolist() == [-1] * 4 and label[26:].tolist() == [1] * 4
    assert clip_check.losses(label, 5) == [(8, 15)] and clip_check.losses(label, 9) == []
    lost = np.zeros(n, bool)
    lost[11:17] = True                                         # 3 frames late, 1 on-target frame flagged
    lines = clip_check.report("clip", label, lost, 5)
    assert "on target 18 frames, flagged on 1 (5.6%): frames 16" in lines[0] and "loss at 8-15 (8 frames): flag after 3 frames" in lines[1]
    clip_check.ABSENT["clip"] = [(2, 3)]
    try:
        assert clip_check.labels("clip", boxes, [ref, other])[2:4].tolist() == [0, 0]
    finally:
        del clip_check.ABSENT["clip"]
    assert clip_check.runs_text(np.array([3, 4, 5, 9])) == "3-5, 9"


def test_collect_hands_every_frame_to_an_experiment_cue(tmp_path) -> None:
    """calibrate.collect's ``cue`` (experiments/colour_cues.py, verifier_cue.py): started once per
    sequence after init, called once per updated frame with that frame and the tracker, its values
    returned row for row beside the features."""
    from dataset_writers import write_got10k_folder
    from siamtrack.data.synthetic import make_sequence
    from siamtrack.tracking.tracker import SiamFCTracker

    seqs = [make_sequence(num_frames=n, frame_size=(128, 96), target_size=(24, 20), seed=n, name=f"s{n}")
            for n in (6, 9)]
    write_got10k_folder(tmp_path, seqs, subset="train")

    class Recorder:
        def __init__(self) -> None:
            self.starts: list[int] = []
            self.frame = 0

        def start(self, image: np.ndarray, tracker: SiamFCTracker) -> None:
            self.starts.append(self.frame)
            self.frame = 0

        def __call__(self, image: np.ndarray, tracker: SiamFCTracker) -> tuple[float, float]:
            self.frame += 1
            return float(self.frame), float(tracker.center[0])

    tracker = SiamFCTracker.from_pretrained("student", device="cpu")
    recorder = Recorder()
    data = calibrate.collect(tracker, [tmp_path / "train"], cue=recorder)
    assert data["cue"].shape == (5 + 8, 2) and data["features"].shape == (13, len(FEATURES))
    assert data["cue"][:, 0].tolist() == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5, 6, 7, 8]
    assert recorder.starts == [0, 5]
    assert "cue" not in calibrate.collect(tracker, [tmp_path / "train"], max_frames=2)
