"""The box head (SiamFC++ style): cell-to-pixel mapping, training targets and losses against hand
computations, the per-frame box choice, the tracking loop following a growing and shrinking target,
and ONNX parity."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from siamtrack.config import TrackerConfig
from siamtrack.models import build_model, geometry, model_spec, named_spec
from siamtrack.models.heads import BOX_OUTPUTS, BoxHead, depthwise_xcorr
from siamtrack.models.profile import count_macs
from siamtrack.geometry import cell_offsets
from siamtrack.tracking.boxhead import pick_box
from siamtrack.tracking.tracker import SiamFCTracker
from siamtrack.training.losses import box_head_loss, box_targets, cell_centres, giou


def _box_spec(name: str = "student") -> dict:
    return named_spec(name, head="box")


# ---------------------------------------------------------------------------- the network


@pytest.mark.parametrize("name, side", [("student", 17), ("efficientnet_lite0", 25)])
def test_box_head_output_and_spec_round_trip(name: str, side: int) -> None:
    spec = _box_spec(name)
    net = build_model(spec).eval()
    assert isinstance(net.head, BoxHead) and spec["name"].endswith("_box")
    out = net(torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255)
    assert out.shape == (2, len(BOX_OUTPUTS), side, side)
    assert (out[:, 2:] > 0).all(), "edge distances are exp(.) * stride, always positive"
    assert model_spec(net) == spec
    assert geometry(net) == geometry(spec) and geometry(net).response_sz == side
    # untrained, the box tower starts at 4 strides to every edge (a 64 x 64 px box at stride 8)
    assert torch.allclose(out[:, 2:], torch.full_like(out[:, 2:], 32.0), rtol=0.05)


def test_depthwise_xcorr_matches_per_channel_correlation() -> None:
    z, x = torch.randn(1, 3, 4, 4), torch.randn(2, 3, 9, 9)
    out = depthwise_xcorr(z, x)
    assert out.shape == (2, 3, 6, 6)
    i, j, c = 2, 5, 1
    expected = (x[1, c, i:i + 4, j:j + 4] * z[0, c]).sum()
    assert torch.isclose(out[1, c, i, j], expected, atol=1e-5)
    # a batch of exemplars pairs with the batch of search maps, one for one
    zb = torch.randn(2, 3, 4, 4)
    assert torch.allclose(depthwise_xcorr(zb, x)[1], depthwise_xcorr(zb[1:], x[1:])[0], atol=1e-5)
    with pytest.raises(ValueError, match="channel mismatch"):
        depthwise_xcorr(torch.randn(1, 4, 4, 4), x)


def test_box_head_macs_count_one_crop_and_the_towers() -> None:
    net = build_model(_box_spec("efficientnet_lite0")).eval()
    macs = count_macs(net, scale_num=3)
    assert macs["scale_num"] == 1, "the box head searches one crop per frame"
    r, c = 25, 128
    xcorr = r * r * c * 8 * 8
    # two towers of 2 separable blocks (3x3 depthwise + 1x1) plus the 1- and 5-channel outputs
    towers = 2 * 2 * (r * r * c * 9 + r * r * c * c) + r * r * c * (1 + 5)
    assert macs["per_frame"] - macs["search_backbone"] == xcorr + towers
    xcorr_net = build_model(named_spec("efficientnet_lite0")).eval()
    assert macs["per_frame"] < 0.5 * count_macs(xcorr_net, scale_num=3)["per_frame"]


def test_box_head_tower_width_apart_from_the_embedding() -> None:
    """A pruned box head: towers of ``width`` pointwise channels on a narrower or wider embedding;
    the spec records the width (only then) and rebuilds it; MACs follow both widths."""
    spec = _box_spec("student")
    spec["head"]["width"] = 32
    net = build_model(spec).eval()
    assert (net.head.channels, net.head.width) == (96, 32) and model_spec(net) == spec
    assert net(torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255).shape == (2, 6, 17, 17)
    r, c, w = 17, 96, 32
    towers = 2 * (r * r * c * 9 + r * r * c * w) + r * r * w * (1 + 5)   # one separable block per tower
    macs = count_macs(net)
    assert macs["per_frame"] - macs["search_backbone"] == r * r * c * 6 * 6 + towers
    spec["head"]["width"] = 96                       # equal to the embedding: not recorded
    assert "width" not in model_spec(build_model(spec))["head"]


# ---------------------------------------------------------------------------- targets and losses


def test_cell_centres_hand_computed() -> None:
    grid = cell_centres(25, 8, 0.0)
    assert grid[0] == -96 and grid[12] == 0 and grid[24] == 96
    assert cell_centres(5, 8, 4.0).tolist() == [-12.0, -4.0, 4.0, 12.0, 20.0]
    # the tracker maps cells to pixels the same way the training targets do
    np.testing.assert_allclose(cell_offsets(25, 8, 4.0), cell_centres(25, 8, 4.0).numpy())


def test_box_targets_hand_computed() -> None:
    # target centre (4, 0) from the crop centre, 20 x 12: x in [-6, 14], y in [-6, 6]; cells at -16..16
    pos, ltrb, ctr = box_targets(5, torch.tensor([[4.0, 0.0, 20.0, 12.0]]), stride=8)
    assert pos[0].nonzero().tolist() == [[2, 2], [2, 3]]          # (row, col): cells at x = 0 and 8, y = 0
    assert ltrb[0, :, 2, 2].tolist() == [6.0, 6.0, 14.0, 6.0]       # l, t, r, b of the cell at (0, 0)
    assert ltrb[0, :, 2, 3].tolist() == [14.0, 6.0, 6.0, 6.0]
    assert math.isclose(float(ctr[0, 2, 2]), math.sqrt(6 / 14), rel_tol=1e-6)
    assert float(ctr[0, 0, 0]) == 0.0
    # a target smaller than a cell, between cell centres, still has its nearest cell as positive
    pos, _, _ = box_targets(5, torch.tensor([[1.0, 1.0, 2.0, 2.0]]), stride=8)
    assert pos[0].nonzero().tolist() == [[2, 2]]


def test_giou_hand_computed() -> None:
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [2.0, 3.0, 4.0, 5.0]])
    target = torch.tensor([[1.0, 1.0, 3.0, 3.0],      # inside: IoU 4/16, hull = union
                           [-3.0, 1.0, 5.0, 1.0],     # disjoint: x in [3, 5] vs [-1, 1]; hull 6 x 2
                           [2.0, 3.0, 4.0, 5.0]])     # identical
    np.testing.assert_allclose(giou(pred, target).numpy(), [0.25, -(12 - 8) / 12, 1.0], rtol=1e-6)


def _reference_box_loss(out: np.ndarray, targets: np.ndarray, stride: int) -> float:
    """Plain-Python loops over cells and samples: an independent statement of the same losses."""
    b, _, r, _ = out.shape
    total = 0.0
    iou_num = iou_den = q_sum = 0.0
    q_n = 0
    for k in range(b):
        dx, dy, w, h = targets[k]
        x1, y1, x2, y2 = dx - w / 2, dy - h / 2, dx + w / 2, dy + h / 2
        cells = [(i, j) for i in range(r) for j in range(r)]
        centre = lambda i: (i - (r - 1) / 2) * stride  # noqa: E731
        pos = {(i, j) for i, j in cells
               if min(centre(j) - x1, centre(i) - y1, x2 - centre(j), y2 - centre(i)) > 0
               or (abs(centre(j) - dx) <= stride / 2 and abs(centre(i) - dy) <= stride / 2)}
        bce = lambda z, y: max(z, 0) - z * y + math.log1p(math.exp(-abs(z)))  # noqa: E731
        cls = sum(bce(out[k, 0, i, j], 1.0) for i, j in pos) / len(pos) * 0.5
        cls += sum(bce(out[k, 0, i, j], 0.0) for i, j in cells if (i, j) not in pos) / (r * r - len(pos)) * 0.5
        total += cls / b
        for i, j in pos:
            gx, gy = centre(j), centre(i)
            d = [max(0.0, v) for v in (gx - x1, gy - y1, x2 - gx, y2 - gy)]
            c = math.sqrt(min(d[0], d[2]) / max(d[0], d[2], 1e-6) * min(d[1], d[3]) / max(d[1], d[3], 1e-6))
            q_sum += bce(out[k, 1, i, j], c)
            q_n += 1
            pl, pt, pr, pb = out[k, 2:, i, j]
            px1, py1, px2, py2 = gx - pl, gy - pt, gx + pr, gy + pb
            inter = max(0, min(px2, x2) - max(px1, x1)) * max(0, min(py2, y2) - max(py1, y1))
            union = (px2 - px1) * (py2 - py1) + w * h - inter
            hull = (max(px2, x2) - min(px1, x1)) * (max(py2, y2) - min(py1, y1))
            g = inter / union - (hull - union) / hull
            iou_num += (1 - g) * (c + 1e-3)
            iou_den += c + 1e-3
    return total + q_sum / q_n + iou_num / iou_den


def test_box_head_loss_matches_a_loop_reference_on_known_inputs() -> None:
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(2, 6, 7, 7, generator=gen)
    out[:, 2:] = torch.rand(2, 4, 7, 7, generator=gen) * 30 + 1
    targets = torch.tensor([[3.0, -5.0, 30.0, 18.0], [-10.0, 8.0, 4.0, 4.0]])
    loss, parts = box_head_loss(out, targets, stride=8)
    assert math.isclose(float(loss), _reference_box_loss(out.numpy(), targets.numpy(), 8), rel_tol=1e-5)
    assert math.isclose(parts["loss"], parts["cls"] + parts["quality"] + parts["iou"], rel_tol=1e-5)


def test_box_head_loss_zero_logits_and_exact_boxes() -> None:
    """Logits 0 cost log 2 for classification and quality whatever the labels; exact boxes cost 0."""
    targets = torch.tensor([[6.0, -2.0, 40.0, 24.0]])
    pos, ltrb, _ = box_targets(9, targets, stride=8)
    out = torch.zeros(1, 6, 9, 9)
    out[:, 2:] = ltrb.clamp_min(0.5)
    loss, parts = box_head_loss(out, targets, stride=8)
    assert math.isclose(parts["cls"], math.log(2), rel_tol=1e-6)
    assert math.isclose(parts["quality"], math.log(2), rel_tol=1e-6)
    assert parts["iou"] < 1e-6


def test_box_training_steps_lower_the_loss() -> None:
    """A few SGD steps on one batch fit it: the losses and the head are wired to the parameters."""
    torch.manual_seed(0)
    net = build_model(_box_spec("student")).train()
    z, x = torch.rand(4, 3, 127, 127) * 255, torch.rand(4, 3, 255, 255) * 255
    targets = torch.tensor([[0.0, 0.0, 64.0, 48.0], [16.0, -8.0, 30.0, 60.0],
                            [-40.0, 24.0, 20.0, 20.0], [8.0, 8.0, 100.0, 80.0]])
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(30):
        loss, _ = box_head_loss(net(z, x), targets, stride=8)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


# ---------------------------------------------------------------------------- the tracking loop


def test_pick_box_hand_made_maps() -> None:
    r, stride = 5, 8
    out = np.full((6, r, r), -10.0)
    out[2:] = 20.0
    out[0, 1, 3] = out[1, 1, 3] = 10.0
    out[2:, 1, 3] = [10.0, 20.0, 30.0, 40.0]               # l, t, r, b at row 1, col 3
    pick = pick_box(out, (40.0, 60.0), stride, 0.0, np.zeros((r, r)), penalty_k=0.04, window_influence=0.0)
    # cell (row 1, col 3) sits at x = +8, y = -8; the box centre is (r - l) / 2, (b - t) / 2 from it
    assert (pick.dx, pick.dy, pick.w, pick.h) == (8 + 10.0, -8 + 10.0, 40.0, 60.0)
    assert pick.penalty == 1.0 and math.isclose(pick.score, (1 / (1 + math.exp(-10))) ** 2)
    # a box that changes size is penalised: the same maps, a target half the size
    smaller = pick_box(out, (20.0, 30.0), stride, 0.0, np.zeros((r, r)), 0.04, 0.0)
    assert smaller.cell == pick.cell and smaller.penalty < 0.97
    # non-finite outputs keep the box and score 0
    broken = pick_box(np.full((6, r, r), np.nan), (20.0, 30.0), stride, 0.0, np.zeros((r, r)), 0.04, 0.2)
    assert (broken.dx, broken.dy, broken.w, broken.h, broken.score) == (0.0, 0.0, 20.0, 30.0, 0.0)


class _OracleBoxEngine:
    """An engine that sees the red target in each search crop and answers as a perfect box head
    would: classification and quality high at the cells inside the target, exact edge distances.
    It tests the loop around the network (crop geometry, cell mapping, penalty, damping)."""

    backend = "oracle"
    device = torch.device("cpu")

    def __init__(self, spec: dict, cfg: TrackerConfig) -> None:
        self.geo = geometry(spec, cfg.exemplar_sz, cfg.instance_sz)
        self.instance_sz = cfg.instance_sz

    def embed_exemplar(self, z: np.ndarray) -> np.ndarray:
        return z

    def respond(self, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
        r = self.geo.response_sz
        outs = []
        for crop in x:
            red = (crop[0] > 200) & (crop[1] < 60) & (crop[2] < 60)
            ys, xs = np.nonzero(red)
            half = self.instance_sz / 2
            x1, x2, y1, y2 = xs.min() - half, xs.max() + 1 - half, ys.min() - half, ys.max() + 1 - half
            grid = cell_offsets(r, self.geo.stride, self.geo.offset)
            gx, gy = np.meshgrid(grid, grid)
            ltrb = np.stack([gx - x1, gy - y1, x2 - gx, y2 - gy])
            inside = ltrb.min(0) > 0
            out = np.empty((6, r, r), dtype=np.float32)
            out[0] = out[1] = np.where(inside, 8.0, -8.0)
            out[2:] = ltrb
            outs.append(out)
        return np.stack(outs)

    def respond_features(self, kernel: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.respond(kernel, x), x.astype(np.float32)  # the "embedding" is the crop itself


def _growing_clip(frames: int = 60) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    from siamtrack.data.synthetic import textured_image

    background = textured_image(rng, 240, 320)
    background[..., 0] = np.minimum(background[..., 0], 180)      # no red in the background
    images, boxes = [], []
    for t in range(frames):
        s = 1.0 + 0.6 * math.sin(2 * math.pi * t / frames)        # 1 -> 1.6 -> 0.4 -> 1
        w, h = 50 * s, 36 * s
        cx, cy = 160 + 30 * math.sin(2 * math.pi * t / frames), 120 + 10 * math.cos(2 * math.pi * t / frames)
        img = background.copy()
        x1, y1 = int(round(cx - w / 2)), int(round(cy - h / 2))
        x2, y2 = int(round(cx + w / 2)), int(round(cy + h / 2))
        img[y1:y2, x1:x2] = (255, 0, 0)
        images.append(img)
        boxes.append([x1, y1, x2 - x1, y2 - y1])
    return images, np.array(boxes, dtype=np.float64)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def test_box_loop_follows_a_target_that_grows_and_shrinks() -> None:
    """One crop per frame, the box regressed: the box keeps IoU > 0.7 through a 4x size swing,
    where the fixed-step 3-scale search cannot (it changes the size by at most 2.2% a frame)."""
    spec, cfg = _box_spec("efficientnet_lite0"), TrackerConfig()
    tracker = SiamFCTracker(_OracleBoxEngine(spec, cfg), cfg, arch=spec)
    assert tracker.head_kind == "box"
    images, boxes = _growing_clip()
    tracker.init(images[0], boxes[0])
    ious = [_iou(tracker.update(img), gt) for img, gt in zip(images[1:], boxes[1:])]
    assert min(ious) > 0.7, f"lowest IoU {min(ious):.3f} at frame {int(np.argmin(ious)) + 1}"
    assert 0.0 <= tracker.score <= 1.0


def test_box_head_score_is_the_calibrated_confidence_not_cls_times_quality() -> None:
    """Issue 25: the box head's ``score`` was ``sigmoid(cls) * sigmoid(quality)``, uncalibrated, while
    re-detection applied the xcorr calibration: two scales in one tracker. Now every head's score is
    the one logistic confidence of the frame's features."""
    from siamtrack.tracking.confidence import calibrated_score

    spec, cfg = _box_spec("efficientnet_lite0"), TrackerConfig(conf_smoothing=0.0)
    tracker = SiamFCTracker(_OracleBoxEngine(spec, cfg), cfg, arch=spec)
    images, boxes = _growing_clip(8)
    tracker.init(images[0], boxes[0])
    for img in images[1:]:
        tracker.update(img)
        expected = float(calibrated_score(tracker.features, cfg.conf_weights)[0])
        assert tracker.score == pytest.approx(expected)
    # the oracle's cls and quality logits are 8 on the target, so sigmoid(cls) * sigmoid(quality)
    # reads 0.999 whatever the calibration; the calibrated score follows the checkpoint's weights
    tracker.cfg = TrackerConfig(conf_weights=[-50.0] + [0.0] * (len(cfg.conf_weights) - 1))
    tracker.update(images[-1])
    assert tracker.score < 1e-6


# ---------------------------------------------------------------------------- export


# the box head regresses the size, so scale_mode "exemplar" leaves it one kernel against one crop
# (HeadType.pyramid), in the export's parity check too (it once batched 3 exemplars against 1 crop)
@pytest.mark.parametrize("scale_mode", ["search", "exemplar"])
def test_box_head_onnx_parity_three_outputs(tmp_path, scale_mode) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import onnx

    from siamtrack.deploy.crops import Crops
    from siamtrack.deploy.export import export_onnx
    from siamtrack.deploy.runtime import load_exported

    torch.manual_seed(0)
    net = build_model(_box_spec("student")).eval()
    for m in net.modules():  # non-trivial BN statistics, so folding is exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():
        net.head.cls_out.weight.normal_(std=0.5)
        net.head.box_out.weight.normal_(std=0.05)
    rng = np.random.default_rng(0)
    crops = Crops(z=rng.integers(0, 256, (2, 3, 127, 127), dtype=np.uint8),
                  x=rng.integers(0, 256, (3, 3, 255, 255), dtype=np.uint8), data="random crops")
    manifest = export_onnx(net, TrackerConfig(scale_mode=scale_mode), tmp_path, crops)
    check = manifest["models"]["fp32"]["check"]
    assert check["response_max_abs_diff"] < 1e-4 and check["response_max_abs"] > 1.0
    graph = onnx.load(str(tmp_path / "search.onnx")).graph
    assert [o.name for o in graph.output] == ["cls", "quality", "box", "features"]
    assert check["features_max_abs_diff"] < 1e-3
    engine, _ = load_exported(tmp_path)
    kernel = engine.embed_exemplar(crops.z[:1])
    out = engine.respond(kernel, crops.x[:2])
    assert out.shape == (2, 6, 17, 17)
    again, features = engine.respond_features(kernel, crops.x[:2])
    np.testing.assert_array_equal(again, out)
    assert features.shape[:2] == (2, kernel.shape[1]) and features.shape[-1] == 17 + kernel.shape[-1] - 1
    assert manifest["stats"]["scale_num"] == 1


# ------------------------------------------------------------------ the head registry (issue 26)
def test_every_registered_head_is_complete():
    from siamtrack.models.heads import HEAD_TYPES
    from siamtrack.training.trainer import LOSSES

    assert set(HEAD_TYPES) >= {"xcorr", "box"}
    for kind in HEAD_TYPES.values():
        assert callable(getattr(SiamFCTracker, SiamFCTracker.STEPS[kind.step])), kind.name
        assert kind.loss in LOSSES and kind.outputs, kind.name


@pytest.fixture
def bias_head():
    """A new head kind, added in one place: a registry entry (it steps and trains like xcorr)."""
    from siamtrack.models.heads import HEAD_TYPES, HeadType, XCorrHead, register_head

    class BiasedXCorr(XCorrHead):
        kind = "biased_xcorr"

        def spec(self) -> dict:
            return {"type": self.kind, "out_scale": self.out_scale}

    register_head(HeadType(name="biased_xcorr", build=lambda spec, c, s: BiasedXCorr(spec["out_scale"]),
                           spec_entry=lambda o, e, t: {"type": "biased_xcorr", "out_scale": o},
                           spec_of=lambda head: head.spec(), step="scales", loss="logistic",
                           outputs=(("response", 0),)))
    yield BiasedXCorr
    HEAD_TYPES.pop("biased_xcorr")


def test_a_head_added_to_the_registry_builds_tracks_trains_exports_and_profiles(bias_head):
    from siamtrack.compress.prune_head import head_units
    from siamtrack.config import TrainConfig
    from siamtrack.deploy.export import search_outputs
    from siamtrack.training.trainer import default_loss

    torch.manual_seed(0)
    spec = named_spec("student", width=0.25)
    spec["head"] = {"type": "biased_xcorr", "out_scale": 0.001}
    net = build_model(spec)
    assert isinstance(net.head, bias_head) and model_spec(net)["head"]["type"] == "biased_xcorr"
    tracker = SiamFCTracker(net, TrackerConfig())
    frame = np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    tracker.init(frame, [60, 40, 30, 24])
    assert np.isfinite(tracker.update(frame)).all() and tracker.head_kind == "biased_xcorr"
    z, x = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    r = geometry(net, 127, 255).response_sz
    loss, _ = default_loss(net, TrainConfig(), TrackerConfig())(net, z, x, torch.tensor([[0., 0, 40, 30]] * 2))
    assert torch.isfinite(loss) and r == 17
    assert search_outputs(net.head) == ["response", "features"] and head_units(net.head) == []
    assert count_macs(net)["scale_num"] == 3
