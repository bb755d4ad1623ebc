"""siamtrack.tracking.tracker: the SiamFC loop's geometry, its output contract and its input checks.

The key tests need no training: a fixed, non-learned stride-8 embedding (:class:`PixelEmbedding`)
plugged into the real :class:`SiamNet` / :class:`XCorrHead` makes the response peak where the
pixels match, so crops, the displacement mapping, the scale search and the scale update can be
checked against known ground truth.
"""
from __future__ import annotations

import copy
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from siamtrack import SiamFCTracker, TrackerConfig, load_model
from siamtrack.checkpoint import CheckpointError, save_checkpoint
from siamtrack.data.synthetic import make_sequence, textured_image
from siamtrack.models import SiamNet, XCorrHead, build_model, model_spec, named_spec
from siamtrack import weights as weights_module
from siamtrack.tracking import tracker as tracker_module
from siamtrack.geometry import iou


class PixelEmbedding(nn.Module):
    """Fixed stride-8 embedding of raw pixels (nothing learned).

    4x4 average pooling, then each 8x8 cell's 2x2 pooled RGB values become 12 channels
    (``pixel_unshuffle``): 127 -> 15x15, 255 -> 31x31, so the response is 17x17 as with AlexNet.
    Features are zero-mean per image and each cell vector is scaled to about unit length, which
    makes the cross-correlation close to a normalised one (bright regions do not win by brightness).

    With ``center_only``, exemplar-sized inputs keep only their central half of cells: SiamFC's
    exemplar is the target plus a context margin, and a trained network learns to weigh the target;
    a fixed embedding has to be told, otherwise the static background in the margin votes for
    "no motion".
    """

    def __init__(self, center_only: bool = True, exemplar_sz: int = 127) -> None:
        super().__init__()
        self.center_only = center_only
        self.exemplar_sz = exemplar_sz
        self.calls: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(tuple(x.shape))
        h, w = x.shape[-2:]
        x = x[:, :, : h // 8 * 8, : w // 8 * 8]
        x = x - x.mean(dim=(1, 2, 3), keepdim=True)
        f = F.pixel_unshuffle(F.avg_pool2d(x, 4), 2)
        f = f / (f.norm(dim=1, keepdim=True) + 1.0)
        if self.center_only and h == self.exemplar_sz:
            k = f.shape[-1]
            a = int(round(k / 4))
            mask = torch.zeros(k, k, dtype=f.dtype, device=f.device)
            mask[a:k - a, a:k - a] = 1.0
            f = f * mask
        return f


def pixel_tracker(config: TrackerConfig | None = None, center_only: bool = True) -> SiamFCTracker:
    net = SiamNet(PixelEmbedding(center_only), XCorrHead(out_scale=0.05))
    return SiamFCTracker(net, config, device="cpu")


def run(tracker: SiamFCTracker, frames: list[np.ndarray], box: np.ndarray) -> np.ndarray:
    tracker.init(frames[0], box)
    return np.array([np.asarray(box, float)] + [tracker.update(f) for f in frames[1:]])


@pytest.fixture(scope="module")
def clip():
    return make_sequence(num_frames=12, frame_size=(160, 120), target_size=(30, 24), growth=1.2, seed=5)


@pytest.fixture(scope="module")
def student_net() -> SiamNet:
    torch.manual_seed(0)
    return build_model(named_spec("student", width=0.5)).eval()


# ------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("seed", [0, 1])
def test_tracks_a_moving_growing_patch(seed: int) -> None:
    seq = make_sequence(num_frames=60, seed=seed)  # 40x30 patch, grows 1.5x, moves ~9 px per frame
    boxes = run(pixel_tracker(), seq.frames, seq.boxes[0])
    overlap = iou(boxes, seq.boxes)
    print(f"seed {seed}: mean IoU {overlap.mean():.3f}, final size {boxes[-1, 2:]} "
          f"(truth {seq.boxes[-1, 2:]})")
    assert overlap.mean() > 0.7
    assert overlap.min() > 0.3  # never lost
    assert boxes[-1, 2] > boxes[0, 2] * 1.1 and boxes[-1, 3] > boxes[0, 3] * 1.1  # it grew


@pytest.mark.parametrize("shift", [(6, 0), (-5, 4), (9, -7), (0, 0)])
def test_displacement_mapping_is_subpixel_accurate(shift: tuple[int, int]) -> None:
    # the whole frame translates: every pixel votes for the same shift, so the error is the
    # mapping's own (response -> upsampled map -> search crop -> image), without window or scales
    big = textured_image(np.random.default_rng(0), 300, 360, cells=16, detail=0.25)
    dx, dy = shift
    frame0, frame1 = big[40:240, 40:320], big[40 - dy:240 - dy, 40 - dx:320 - dx]
    tracker = pixel_tracker(TrackerConfig(window_influence=0.0, scale_num=1), center_only=False)
    tracker.init(frame0, [120, 80, 40, 30])
    box = tracker.update(frame1)
    assert abs(box[0] - (120 + dx)) < 1.0 and abs(box[1] - (80 + dy)) < 1.0
    np.testing.assert_allclose(box[2:], [40, 30])


def test_update_is_one_batched_pass_and_exemplar_is_embedded_once(clip) -> None:
    tracker = pixel_tracker(TrackerConfig(scale_num=5))
    embedding = tracker.inference_net.backbone  # the copy the per-frame path runs
    run(tracker, clip.frames[:4], clip.boxes[0])
    # init: the exemplar once, plus one search crop for the reference peak re-detection compares with;
    # then per frame one batch of the 5 scales and nothing else: the confidence's appearance term
    # reads the chosen box's embedding from that batch's features, never the exemplar again
    assert embedding.calls == [(1, 3, 127, 127), (1, 3, 255, 255)] + [(5, 3, 255, 255)] * 3


def siamfc_locate(maps: np.ndarray, cfg: TrackerConfig) -> tuple[int, int]:
    """SiamFC's post-processing as published (siamfc-pytorch): upsample every map with OpenCV,
    penalise, pick the scale, min-shift, normalise, blend the window, argmax."""
    side = maps.shape[-1] * cfg.response_up
    up = np.stack([cv2.resize(m, (side, side), interpolation=cv2.INTER_CUBIC) for m in maps])
    penalty = np.full(len(maps), cfg.scale_penalty)
    penalty[len(maps) // 2] = 1.0
    best = int((up.reshape(len(maps), -1).max(1) * penalty).argmax())
    r = up[best] - up[best].min()
    r = r / (r.sum() + 1e-16)
    h = np.hanning(side)
    window = np.outer(h, h) / np.outer(h, h).sum()
    return best, int(((1 - cfg.window_influence) * r + cfg.window_influence * window).argmax())


@pytest.mark.parametrize("window_influence", [0.176, 0.0, 0.6])
def test_locate_matches_published_post_processing(window_influence: float) -> None:
    cfg = TrackerConfig(window_influence=window_influence)
    tracker = pixel_tracker(cfg)
    rng = np.random.default_rng(3)
    agree = 0
    for _ in range(40):
        # a smooth random response with one clear scale, like a network's
        maps = cv2.GaussianBlur(rng.standard_normal((17, 17 * 3)).astype(np.float32) * 4, (0, 0), 2)
        maps = np.ascontiguousarray(maps.reshape(17, 3, 17).transpose(1, 0, 2)) + rng.normal(0, 1, (3, 1, 1))
        maps = maps.astype(np.float32)
        best, loc, side = tracker._locate(maps, tracker._scale_table()[1])
        ref_best, ref_loc = siamfc_locate(maps, cfg)
        assert side == 17 * cfg.response_up and np.isfinite(tracker.stats).all()
        if best == ref_best:  # scales may differ only when two peaks are within upsampling noise
            agree += 1
            row, col = divmod(loc, side)
            ref_row, ref_col = divmod(ref_loc, side)
            assert abs(row - ref_row) <= 1 and abs(col - ref_col) <= 1
    assert agree >= 38


def test_flat_response_stays_at_the_centre() -> None:
    # no evidence anywhere: the cosine window decides, as in SiamFC (the map normalises to zero)
    tracker = pixel_tracker()
    best, loc, side = tracker._locate(np.full((3, 17, 17), 2.5, np.float32), tracker._scale_table()[1])
    assert best == 1 and divmod(loc, side) in {(side // 2 - 1, side // 2 - 1), (side // 2, side // 2),
                                               (side // 2 - 1, side // 2), (side // 2, side // 2 - 1)}


# ------------------------------------------------------------------------------ output contract
def test_update_contract(clip, student_net) -> None:
    tracker = SiamFCTracker(student_net, device="cpu")
    tracker.init(clip.frames[0], clip.boxes[0])
    assert tracker.score == 1.0
    for frame in clip.frames[1:4]:
        box = tracker.update(frame)
        assert isinstance(box, np.ndarray) and box.dtype == np.float64 and box.shape == (4,)
        assert np.all(np.isfinite(box)) and box[2] >= 1 and box[3] >= 1
        assert 0.0 <= tracker.score <= 1.0
    assert tracker.is_deterministic and tracker.name == "SiamFC"


class NaNBackbone(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full((x.shape[0], 4, (x.shape[-1] - 87) // 8 + 1, (x.shape[-1] - 87) // 8 + 1),
                          float("nan"))


def test_state_stays_finite_and_inside_the_frame() -> None:
    # a network gone wrong (NaN logits) must not turn the box into NaN
    tracker = SiamFCTracker(SiamNet(NaNBackbone(), XCorrHead()), device="cpu")
    frame = np.zeros((60, 80, 3), np.uint8)
    tracker.init(frame, [70, 50, 20, 20])
    for _ in range(3):
        box = tracker.update(frame)
        assert np.all(np.isfinite(box)) and tracker.score == 0.0
    # a box hanging over the border, then a smaller frame: centre clamped, size within [1, side]
    tracker = pixel_tracker()
    big = textured_image(np.random.default_rng(3), 100, 120)
    tracker.init(big, [-30, -20, 200, 150])
    box = tracker.update(big[:40, :50])
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    assert 0 <= cx <= 50 and 0 <= cy <= 40
    assert 1 <= box[2] <= 50 and 1 <= box[3] <= 40


# ------------------------------------------------------------------------------ inputs
def test_grayscale_and_pil_inputs_track_like_rgb(clip) -> None:
    gray = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in clip.frames[:4]]
    rgb = [np.repeat(g[:, :, None], 3, axis=2) for g in gray]
    expected = run(pixel_tracker(), rgb, clip.boxes[0])
    np.testing.assert_array_equal(run(pixel_tracker(), gray, clip.boxes[0]), expected)
    np.testing.assert_array_equal(run(pixel_tracker(), [g[:, :, None] for g in gray], clip.boxes[0]),
                                  expected)
    pil = [Image.fromarray(f) for f in clip.frames[:4]]
    np.testing.assert_array_equal(run(pixel_tracker(), pil, clip.boxes[0]),
                                  run(pixel_tracker(), clip.frames[:4], clip.boxes[0]))


def test_bad_inputs_raise_helpful_value_errors(clip) -> None:
    frame = clip.frames[0]
    tracker = pixel_tracker()
    with pytest.raises(ValueError, match=r"call init\(image, box\) before update"):
        tracker.update(frame)
    with pytest.raises(ValueError, match="uint8"):
        tracker.init(frame.astype(np.float32) / 255, [10, 10, 20, 20])
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        tracker.init(np.zeros((20, 20, 4), np.uint8), [1, 1, 5, 5])
    with pytest.raises(ValueError, match="empty"):
        tracker.init(np.zeros((0, 20, 3), np.uint8), [1, 1, 5, 5])
    with pytest.raises(ValueError, match="numpy array"):
        tracker.init([[1, 2, 3]], [1, 1, 5, 5])
    bad_boxes = {"outside": [500, 10, 20, 20], "positive": [10, 10, 0, 20],
                 "finite": [10, math.nan, 20, 20], "4 numbers": [10, 10, 20]}
    for message, box in bad_boxes.items():
        with pytest.raises(ValueError, match=message):
            tracker.init(frame, box)
    with pytest.raises(ValueError, match="outside"):
        tracker.init(frame, [-40, 10, 40, 20])  # ends exactly at the left edge
    tracker.init(frame, clip.boxes[0])
    with pytest.raises(ValueError, match="uint8"):
        tracker.update(frame.astype(np.int32))
    with pytest.raises(TypeError, match="backbone"):
        SiamFCTracker(nn.Identity())


# ------------------------------------------------------------------------------ checkpoints
def test_from_pretrained_round_trip(tmp_path, monkeypatch, clip, student_net) -> None:
    config = TrackerConfig(scale_num=5, window_influence=0.3)
    path = tmp_path / "siamfc_student.pth"
    save_checkpoint(path, student_net, config, meta={"note": "random"})
    direct = run(SiamFCTracker(student_net, config, device="cpu"), clip.frames[:4], clip.boxes[0])
    loaded = SiamFCTracker.from_pretrained(path, device="cpu")
    assert loaded.cfg == config and loaded.meta == {"note": "random"}
    assert loaded.arch == model_spec(student_net)
    np.testing.assert_array_equal(run(loaded, clip.frames[:4], clip.boxes[0]), direct)
    assert loaded.name == "SiamFC-siamfc_student" and loaded.weights_path == path
    net, cfg, meta = load_model(path)
    assert cfg == config and meta == {"note": "random"}

    monkeypatch.setenv("SIAMTRACK_WEIGHTS", str(tmp_path))
    by_name = SiamFCTracker.from_pretrained("student", device="cpu")
    assert by_name.name == "SiamFC-student" and by_name.weights_path == path
    with pytest.raises(CheckpointError, match="not found"):
        SiamFCTracker.from_pretrained(tmp_path / "missing.pth")


def test_missing_named_weights_say_what_to_do(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(weights_module, "search_dirs", lambda: [tmp_path])
    with pytest.raises(CheckpointError, match=r"no teacher weights found.*train.*pass a checkpoint path"):
        SiamFCTracker.from_pretrained("teacher", device="cpu")


def test_got10k_track_on_image_files(tmp_path, clip) -> None:
    files = []
    for i, frame in enumerate(clip.frames[:5]):
        files.append(str(tmp_path / f"{i + 1:08d}.png"))
        cv2.imwrite(files[-1], cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    boxes, times = pixel_tracker().track(files, clip.boxes[0])
    assert boxes.shape == (5, 4) and times.shape == (5,)
    np.testing.assert_allclose(boxes[0], clip.boxes[0])
    assert iou(boxes, clip.boxes[:5]).mean() > 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(clip, student_net) -> None:
    cpu = run(SiamFCTracker(student_net, device="cpu"), clip.frames[:6], clip.boxes[0])
    gpu = run(SiamFCTracker(copy.deepcopy(student_net), device="cuda"), clip.frames[:6], clip.boxes[0])
    np.testing.assert_allclose(gpu, cpu, atol=0.5)


def test_changed_scale_settings_take_effect_at_the_next_frame():
    """``tracker.cfg`` replaced between frames (a settings search does this) changes the scales."""
    import dataclasses

    from siamtrack.config import TrackerConfig
    from siamtrack.models import build_model, named_spec
    from siamtrack.tracking.tracker import SiamFCTracker

    tracker = SiamFCTracker(build_model(named_spec("student")).eval(), TrackerConfig())
    np.testing.assert_allclose(tracker.scale_factors, 1.0375 ** np.array([-1.0, 0.0, 1.0]))
    tracker.cfg = dataclasses.replace(tracker.cfg, scale_step=1.1, scale_num=5)
    np.testing.assert_allclose(tracker.scale_factors, 1.1 ** np.arange(-2.0, 3.0))
    img = np.full((120, 160, 3), 90, np.uint8)
    tracker.init(img, [60, 40, 30, 30])
    tracker.update(img)  # five crops now; the penalty vector matches
    assert len(tracker._scale_table()[1]) == 5
