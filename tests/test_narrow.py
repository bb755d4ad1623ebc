"""Narrow EfficientNet-Lite students: widths in the spec, channel selection from a source network
(compress.narrow) and the distill stage starting from it (compress.student_init)."""
from __future__ import annotations

import pytest
import torch

from siamtrack.checkpoint import load_model, save_checkpoint
from siamtrack.compress.narrow import narrow_from
from siamtrack.config import ModelConfig
from siamtrack.models import build_configured, build_model, model_spec
from siamtrack.models.profile import count_macs

WIDTHS = {"stem": 8, "stages": [{"out": 8, "hidden": [8]}, {"out": 16, "hidden": [16]},
                                {"out": 32, "hidden": [48]}]}


def _lite(widths=None, adjust=64, **extra) -> torch.nn.Module:
    options = {"stages": 3, "adjust": adjust, "exemplar_crop": 8, **extra}
    if widths is not None:
        options["widths"] = widths
    return build_configured(ModelConfig(name="efficientnet_lite0", options=options))


@pytest.fixture(scope="module")
def source():
    torch.manual_seed(0)
    net = _lite(adjust=128)
    with torch.no_grad():  # distinct BN scales, so the selection is well defined
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand_like(m.weight) + 0.05)
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
        net.head.bias.fill_(-1.5)
    return net.eval()


def test_widths_build_a_narrow_network_whose_spec_round_trips(tmp_path):
    net = _lite(WIDTHS, frozen_stages=-1, freeze_bn=False)
    assert net.backbone.stem[0].out_channels == 8
    assert [len(stage) for stage in net.backbone.stages] == [1, 1, 1]
    assert count_macs(net)["per_frame"] == 60_321_792   # the student_v3 budget figure (<= 62 M)
    save_checkpoint(tmp_path / "n.pth", net)
    again, _, _ = load_model(tmp_path / "n.pth")
    assert model_spec(again)["backbone"]["widths"] == WIDTHS
    for a, b in zip(net.state_dict().values(), again.state_dict().values()):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("widths, message", [
    ({"stem": 8}, "widths must be"),
    ({"stem": 8, "stages": WIDTHS["stages"][:2]}, "lists 2 stages, the backbone has 3"),
    ({"stem": 8, "stages": [WIDTHS["stages"][0], {"out": 16, "hidden": [16, 16, 16]}, WIDTHS["stages"][2]]},
     "stage 2 keeps 3 blocks; it has 1 to 2"),
    ({"stem": 8, "stages": [{"out": 8, "hidden": [4]}, *WIDTHS["stages"][1:]]}, "hidden width = input width"),
])
def test_bad_widths_are_refused_with_the_reason(widths, message):
    with pytest.raises(ValueError, match=message):
        build_model({"backbone": {"type": "efficientnet_lite", "variant": "lite0", "stages": 3, "adjust": 32,
                                  "widths": widths}, "head": {"out_scale": 0.001}})


def test_full_widths_copy_is_the_source_network(source):
    copy = narrow_from(source, _lite(adjust=128)).eval()
    z, x = torch.rand(1, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    with torch.no_grad():
        torch.testing.assert_close(copy.head(copy.backbone(z), copy.backbone(x)),
                                   source.head(source.backbone(z), source.backbone(x)))


def test_narrow_copy_keeps_the_channels_with_the_largest_bn_scale(source):
    student = narrow_from(source, _lite(WIDTHS, frozen_stages=-1, freeze_bn=False))
    src, dst = source.backbone, student.backbone
    stem = torch.sort(torch.topk(src.stem[1].weight.abs(), 8).indices).values
    torch.testing.assert_close(dst.stem[0].weight, src.stem[0].weight[stem])
    torch.testing.assert_close(dst.stem[1].running_mean, src.stem[1].running_mean[stem])
    # stage 3: outputs by the summed projection BN scales of BOTH source blocks (one residual stream)
    s3 = src.stages[2]
    out = torch.sort(torch.topk(s3[0].project[1].weight.abs() + s3[1].project[1].weight.abs(), 32).indices).values
    torch.testing.assert_close(dst.stages[2][0].project[1].weight, s3[0].project[1].weight[out])
    adj = torch.sort(torch.topk(src.adjust[1].weight.abs(), 64).indices).values
    torch.testing.assert_close(dst.adjust[0].weight, src.adjust[0].weight[adj][:, out])
    assert float(student.head.bias.detach()) == pytest.approx(-1.5)


def test_narrow_copy_into_a_stride4_stem_centres_the_source_stem(source):
    student = narrow_from(source, _lite(WIDTHS, frozen_stages=-1, freeze_bn=False, stem_stride=4))
    reference = narrow_from(source, _lite(WIDTHS, frozen_stages=-1, freeze_bn=False))
    stem = student.backbone.stem[0].weight
    assert stem.shape[-2:] == (5, 5)
    torch.testing.assert_close(stem[..., 1:4, 1:4], reference.backbone.stem[0].weight)
    assert float(stem.detach()[..., 0, :].abs().sum() + stem.detach()[..., :, 0].abs().sum()) == 0.0
    for (name, a), b in zip(student.state_dict().items(), reference.state_dict().values()):
        if not name.startswith("backbone.stem.0."):  # every other tensor is the same selection
            torch.testing.assert_close(a, b)


def test_narrow_from_refuses_other_backbones(source):
    alexnet = build_configured(ModelConfig(name="alexnet"))
    with pytest.raises(TypeError, match="EfficientNet-Lite backbones"):
        narrow_from(alexnet, _lite(WIDTHS))
    with pytest.raises(ValueError, match="cannot keep 256 of 128"):
        narrow_from(source, _lite(adjust=256))
