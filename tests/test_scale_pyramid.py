"""Scale search by an exemplar pyramid (``TrackerConfig.scale_mode = "exemplar"``): one search crop per
frame against ``scale_num`` exemplar embeddings, in the head, the tracker, the MAC count and ONNX."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from siamtrack import SiamFCTracker
from siamtrack.config import ModelConfig, TrackerConfig
from siamtrack.data.synthetic import make_sequence
from siamtrack.models import build_configured
from siamtrack.models.heads import XCorrHead
from siamtrack.models.profile import count_macs
from siamtrack.tracking.tracker import equal_norms


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter)


def test_xcorr_head_correlates_several_exemplars_with_one_search_map():
    head = XCorrHead(out_scale=0.5, exemplar_crop=0)
    head.bias.data.fill_(0.25)
    z, x = torch.randn(3, 4, 5, 5), torch.randn(1, 4, 12, 12)
    out = head(z, x)
    assert out.shape == (3, 1, 8, 8)
    for i in range(3):
        expected = F.conv2d(x, z[i:i + 1])[0] * 0.5 + 0.25
        torch.testing.assert_close(out[i], expected)


def test_equal_norms_scales_each_kernel_to_the_reference_norm():
    k = torch.randn(3, 2, 4, 4) * torch.tensor([1.0, 2.0, 5.0]).view(3, 1, 1, 1)
    for kernels in (k, k.numpy()):
        out = equal_norms(kernels, 1)
        norms = (out.reshape(3, -1) ** 2).sum(1) ** 0.5
        np.testing.assert_allclose(np.asarray(norms), float(np.linalg.norm(np.asarray(k[1]))), rtol=1e-5)
        # direction kept: each kernel only multiplied by a positive factor
        ratio = np.asarray(out[2]).ravel() / np.asarray(k[2]).ravel()
        np.testing.assert_allclose(ratio, ratio[0], rtol=1e-4)
        assert ratio[0] > 0


def test_macs_count_one_search_crop_and_every_exemplar_correlation():
    net = build_configured(ModelConfig(name="efficientnet_lite0", options={"stages": 3, "adjust": 32,
                                                                             "exemplar_crop": 8}))
    search = count_macs(net, scale_num=3)
    pyramid = count_macs(net, scale_num=3, scale_mode="exemplar")
    assert pyramid["per_frame"] == search["search_backbone"] + 3 * search["xcorr"]
    assert pyramid["exemplar"] == 3 * search["exemplar"]
    assert pyramid["scale_num"] == 1 and search["per_frame"] == 3 * search["per_crop"]


def test_unknown_scale_mode_is_refused():
    with pytest.raises(ValueError, match="scale_mode must be one of"):
        TrackerConfig(scale_mode="pyramid")


@pytest.fixture(scope="module")
def growing():
    return make_sequence(num_frames=24, frame_size=(240, 180), target_size=(40, 30), growth=1.6, seed=3)


def _track(tracker: SiamFCTracker, seq) -> np.ndarray:
    tracker.init(seq.frames[0], seq.boxes[0])
    return np.array([seq.boxes[0]] + [tracker.update(f) for f in seq.frames[1:]])


@pytest.mark.parametrize("weights", ["teacher", "student"])
def test_exemplar_pyramid_follows_a_growing_target(weights, growing):
    tracker = SiamFCTracker.from_pretrained(weights)
    tracker.cfg = dataclasses.replace(tracker.cfg, scale_mode="exemplar")
    boxes = _track(tracker, growing)
    assert tracker._kernels.shape[0] == 3      # one embedding per scale, cut at init
    iou = _iou(boxes, growing.boxes)
    assert iou.mean() > 0.6, iou.round(2)
    # the size followed the growth (1.6x in area over the clip) instead of staying at the first box
    area = boxes[-1, 2] * boxes[-1, 3] / (boxes[0, 2] * boxes[0, 3])
    assert area > 1.25, area


def test_exemplar_pyramid_runs_the_same_on_onnxruntime(growing):
    pytest.importorskip("onnxruntime")
    torch_tracker = SiamFCTracker.from_pretrained("student")
    ort_tracker = SiamFCTracker.from_pretrained("student@onnx")
    for t in (torch_tracker, ort_tracker):
        t.cfg = dataclasses.replace(t.cfg, scale_mode="exemplar")
    a, b = _track(torch_tracker, growing), _track(ort_tracker, growing)
    np.testing.assert_allclose(a, b, atol=0.5)
