"""siamtrack.models: the SiamFC shape contract, parameter counts and the architecture-spec round trip."""
from __future__ import annotations

import copy

import pytest
import torch

from siamtrack.models import (SiamNet, XCorrHead, build_model, count_parameters, model_spec,
                              named_spec, output_size, validate_spec)


@pytest.fixture(scope="module")
def teacher() -> SiamNet:
    torch.manual_seed(0)
    return build_model(named_spec("alexnet")).eval()


def test_full_alexnet_backbone_has_siamfc_parameter_count(teacher: SiamNet) -> None:
    assert count_parameters(teacher.backbone) == 2_336_320
    assert count_parameters(teacher.head) == 1  # the learned bias


def test_feature_and_response_shapes(teacher: SiamNet) -> None:
    z = torch.rand(1, 3, 127, 127) * 255
    x = torch.rand(1, 3, 255, 255) * 255
    with torch.inference_mode():
        fz, fx = teacher.backbone(z), teacher.backbone(x)
        response = teacher.head(fz, fx)
    assert fz.shape == (1, 256, 6, 6)
    assert fx.shape == (1, 256, 22, 22)
    assert response.shape == (1, 1, 17, 17)
    spec = named_spec("alexnet")
    assert output_size(spec["backbone"], 127) == 6 and output_size(spec["backbone"], 255) == 22


@pytest.mark.parametrize("name,width", [("alexnet", 1.0), ("alexnet", 0.5), ("student", 1.0),
                                        ("student", 0.5)])
def test_spec_round_trip_rebuilds_same_network(name: str, width: float) -> None:
    net = build_model(named_spec(name, width=width))
    rebuilt = build_model(model_spec(net))
    assert list(rebuilt.state_dict()) == list(net.state_dict())
    for key, value in net.state_dict().items():
        assert rebuilt.state_dict()[key].shape == value.shape, key
    assert model_spec(rebuilt) == model_spec(net)


def test_rebuilt_network_computes_the_same_response() -> None:
    net = build_model(named_spec("student", width=0.5)).eval()
    rebuilt = build_model(model_spec(net)).eval()
    rebuilt.load_state_dict(net.state_dict(), strict=True)
    z, x = torch.rand(1, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    with torch.inference_mode():
        assert torch.allclose(net(z, x), rebuilt(z, x), atol=1e-5)


def test_thinner_widths_build_and_keep_the_contract() -> None:
    full = count_parameters(build_model(named_spec("alexnet")).backbone)
    previous = full
    for width in (0.75, 0.5, 0.25):
        net = build_model(named_spec("alexnet", width=width))
        assert count_parameters(net.backbone) < previous
        previous = count_parameters(net.backbone)
    with torch.inference_mode():  # the thinnest one is cheap enough to run
        out = net.eval()(torch.zeros(1, 3, 127, 127), torch.zeros(1, 3, 255, 255))
    assert out.shape == (1, 1, 17, 17)


def test_spec_with_wrong_stride_is_rejected() -> None:
    spec = copy.deepcopy(named_spec("alexnet"))
    spec["backbone"][0]["s"] = 4  # total stride 16
    with pytest.raises(ValueError, match="stride must be 8"):
        validate_spec(spec)
    with pytest.raises(ValueError, match="stride must be 8"):
        build_model(spec)
    with pytest.raises(ValueError):
        build_model({"name": "no backbone"})


def test_head_grouped_batch_matches_single_exemplar_path() -> None:
    torch.manual_seed(1)
    head = XCorrHead(out_scale=0.01)
    with torch.no_grad():
        head.bias.fill_(0.3)
    z = torch.randn(3, 8, 6, 6)
    x = torch.randn(3, 8, 22, 22)
    grouped = head(z, x)  # one grouped conv: pair i = (z[i], x[i])
    single = torch.cat([head(z[i:i + 1], x[i:i + 1]) for i in range(3)])
    assert grouped.shape == single.shape == (3, 1, 17, 17)
    assert torch.allclose(grouped, single, atol=1e-5)
    # one exemplar against several search images (the tracking case) broadcasts the filter
    multi = head(z[:1], x)
    assert torch.allclose(multi[0], single[0], atol=1e-5)
    with pytest.raises(ValueError, match="channel mismatch"):
        head(z[:, :4], x)
    with pytest.raises(ValueError, match="batch mismatch"):
        head(z[:2], x)


@pytest.mark.parametrize("name, side", [("alexnet", 17), ("student", 17), ("efficientnet_lite0", 25)])
def test_geometry_agrees_with_the_network_and_its_spec(name: str, side: int) -> None:
    """One source for stride and response size: what the spec says, what the built network says and
    what a forward pass gives must agree (AlexNet 6x6/22x22 -> 17, padded Lite0 16->8 / 32 -> 25)."""
    from siamtrack.config import TrackerConfig
    from siamtrack.models import geometry

    spec = named_spec(name)
    net = build_model(spec).eval()
    cfg = TrackerConfig()
    with torch.no_grad():
        out = net(torch.zeros(1, 3, cfg.exemplar_sz, cfg.exemplar_sz),
                  torch.zeros(1, 3, cfg.instance_sz, cfg.instance_sz))
    assert geometry(spec) == geometry(net) == (8, side, 0.0)
    assert out.shape[-1] == side


def test_retired_settings_still_load() -> None:
    """Old checkpoints and YAML files carry response_sz / total_stride / data crop sizes: dropped."""
    from siamtrack.config import DataConfig, TrackerConfig, from_dict

    cfg = from_dict(TrackerConfig, {"response_sz": 17, "total_stride": 8, "scale_num": 5})
    assert cfg.scale_num == 5 and not hasattr(cfg, "total_stride")
    assert from_dict(DataConfig, {"exemplar_sz": 127, "val_pairs": 0}) == DataConfig()
