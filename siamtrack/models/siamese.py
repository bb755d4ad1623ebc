"""The Siamese network and its plain-dict architecture spec.

``model_spec(net)`` gives the dict a checkpoint stores; ``build_model(spec)`` rebuilds exactly that
network (channel widths after pruning included), so a checkpoint never depends on code defaults.
"""
from __future__ import annotations

import copy
import functools
from typing import Any, Callable, NamedTuple

import torch
from torch import nn

from .backbones import ALEXNET_GROUPS, ALEXNET_WIDTHS, ConvStack, LayerSpec, alexnet_layers, output_size
from .efficientnet import EfficientLiteBackbone
from .heads import HEAD_TYPES, build_head, head_type
from ..config import EXEMPLAR_SZ, INSTANCE_SZ, OUT_SCALE, ModelConfig

ArchSpec = dict[str, Any]
SPEC_VERSION = 1


class SiamNet(nn.Module):
    """Shared backbone + correlation head.

    ``forward(z, x)``: exemplar crops ``(B, 3, 127, 127)`` and search crops ``(B, 3, 255, 255)``, float
    RGB 0..255, give response logits ``(B, 1, r, r)`` with the xcorr head (r = 17 for AlexNet), or
    ``(B, 6, r, r)`` with the box head (``siamtrack.models.heads.BOX_OUTPUTS``).
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, name: str = "custom") -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.name = name

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(z), self.backbone(x))


def exemplar_embedding(net: nn.Module, z: torch.Tensor) -> torch.Tensor:
    """What the tracker caches at ``init``: the backbone's exemplar map, centre-cropped when the
    head crops it (padded backbones), so the crop is paid once and not at every frame."""
    kernel = net.backbone(z)
    crop = getattr(net.head, "crop_exemplar", None)
    return crop(kernel) if crop is not None else kernel


def head_spec(head: str = "xcorr", out_scale: float = OUT_SCALE, exemplar_crop: int = 0,
              tower: int = 2) -> dict[str, Any]:
    """The ``head`` entry of a spec: SiamFC's xcorr (``"xcorr"``) or the SiamFC++-style box head
    (``"box"``, ``tower`` separable blocks per branch)."""
    if head not in HEAD_TYPES:
        raise ValueError(f"unknown head {head!r}; choose from {sorted(HEAD_TYPES)}")
    return HEAD_TYPES[head].spec_entry(out_scale, exemplar_crop, tower)


def _with_head(spec: ArchSpec, head: str) -> ArchSpec:
    """Box-head specs get a ``_box`` name suffix, so tables and file names tell the two apart."""
    if head != "xcorr":
        spec["name"] = f"{spec['name']}_{head}"
    return spec


def _scaled(widths: tuple[int, ...], groups: tuple[int, ...], width: float) -> list[int]:
    # keep every width divisible by its layer's groups and by the next layer's groups
    out = []
    for i, w in enumerate(widths):
        div = max(groups[i], groups[i + 1] if i + 1 < len(groups) else 1)
        out.append(max(div, int(round(w * width / div)) * div))
    return out


def alexnet_spec(width: float = 1.0, out_scale: float = OUT_SCALE, head: str = "xcorr", tower: int = 2) -> ArchSpec:
    """The SiamFC teacher (``width=1``: 2,336,320 backbone parameters) or a uniformly thinner copy."""
    widths = _scaled(ALEXNET_WIDTHS, ALEXNET_GROUPS, width)
    return _with_head({"version": SPEC_VERSION, "name": "alexnet" if width == 1.0 else f"alexnet_x{width:g}",
                       "in_channels": 3, "backbone": alexnet_layers(widths, ALEXNET_GROUPS),
                       "head": head_spec(head, out_scale, tower=tower)}, head)


#: stem, then the pointwise widths of the five depthwise-separable blocks (the last one is linear)
STUDENT_WIDTHS = (32, 64, 128, 128, 128, 96)


def student_spec(width: float = 1.0, out_scale: float = OUT_SCALE, head: str = "xcorr", tower: int = 1) -> ArchSpec:
    """Compact student with the SiamFC contract (stride 8, 6x6 / 22x22 feature maps at 127 / 255).

    Chosen by measurement on 2 CPU cores (see docs/ARCHITECTURE.md, "Student"):

    * a 4x4 stride-4 patchify stem instead of AlexNet's 11x11 stride-2 conv and first max-pool, so
      no layer works at 127x127 (conv1 and its pooling cost more than the rest of a small network);
    * five depthwise-separable blocks (3x3 depthwise + 1x1 pointwise, BN, ReLU), a 3x3 max-pool
      after the first; the last pointwise conv is linear, like AlexNet's conv5.

    At ``width=1``: 64,129 parameters and 153 MMAC per tracked frame (3 scales); footprint 88 px.
    """
    w = [max(8, int(round(c * width / 8)) * 8) for c in STUDENT_WIDTHS]

    def separable(c_in: int, c_out: int, linear: bool = False) -> list[LayerSpec]:
        return [{"type": "conv", "out": c_in, "k": 3, "s": 1, "groups": "dw", "bn": True, "relu": True},
                {"type": "conv", "out": c_out, "k": 1, "s": 1, "groups": 1, "bn": not linear,
                 "relu": not linear}]

    layers = [{"type": "conv", "out": w[0], "k": 4, "s": 4, "groups": 1, "bn": True, "relu": True}]
    layers += separable(w[0], w[1]) + [{"type": "pool", "k": 3, "s": 2}]
    for i in range(2, len(w)):
        layers += separable(w[i - 1], w[i], linear=i == len(w) - 1)
    return _with_head({"version": SPEC_VERSION, "name": "student" if width == 1.0 else f"student_x{width:g}",
                       "in_channels": 3, "backbone": layers, "head": head_spec(head, out_scale, tower=tower)},
                      head)


def efficientnet_lite_spec(variant: str = "lite0", width: float = 1.0, out_scale: float = OUT_SCALE,
                           stages: int = 3, adjust: int = 128, exemplar_crop: int = 8, frozen_stages: int = 2,
                           freeze_bn: bool = True, head: str = "xcorr", tower: int = 2,
                           widths: dict[str, Any] | None = None, stem_stride: int = 2) -> ArchSpec:
    """EfficientNet-Lite ``variant`` (lite0/1/2) up to ``stages`` (3: 40 channels at stride 8 for
    Lite0/1, 48 for Lite2; 4-5 dilated) + a 1x1 adjust to ``adjust`` channels; the head correlates the
    centred ``exemplar_crop`` x ``exemplar_crop`` window of the 16x16 exemplar map with the 32x32
    search map (a 25x25 response). ``frozen_stages`` leading stages (0 = stem) get no gradient.
    Initialise with ImageNet weights through :func:`siamtrack.models.efficientnet.load_imagenet`
    (``model.pretrained: imagenet``). ``head="box"`` swaps the xcorr head for the SiamFC++-style box
    head (:class:`~.heads.BoxHead`). ``widths`` narrows it (a compact student whose channels
    :mod:`siamtrack.compress.narrow` selects from a trained or ImageNet network, not ImageNet's);
    ``stem_stride=4`` moves stage 2's stride into a 5x5 stem (a fast student: no layer at half resolution)."""
    if width != 1.0:
        raise ValueError(f"efficientnet_{variant} has no width multiplier (the ImageNet weights fix it)")
    backbone = {"type": "efficientnet_lite", "variant": variant, "stages": stages, "adjust": adjust,
                "frozen_stages": frozen_stages}
    if not freeze_bn:
        backbone["freeze_bn"] = False
    name = f"efficientnet_{variant}_s{stages}"
    if stem_stride != 2:
        backbone["stem_stride"] = stem_stride
        name += f"_stem{stem_stride}"
    if widths is not None:
        backbone["widths"] = widths
        name += "_narrow"
    return _with_head({"version": SPEC_VERSION, "name": name, "in_channels": 3,
                       "backbone": backbone, "head": head_spec(head, out_scale, exemplar_crop, tower)}, head)


ARCHITECTURES: dict[str, Callable[..., ArchSpec]] = {
    "alexnet": alexnet_spec, "student": student_spec,
    **{f"efficientnet_lite{i}": functools.partial(efficientnet_lite_spec, f"lite{i}") for i in range(3)}}


def named_spec(name: str, width: float = 1.0, out_scale: float = OUT_SCALE, **options: Any) -> ArchSpec:
    """Spec of a registered architecture (``alexnet`` = the classic teacher, ``student``,
    ``efficientnet_lite0``/``1``/``2``); ``options`` are the builder's own keywords (e.g. ``stages=4``)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(ARCHITECTURES)}")
    try:
        return ARCHITECTURES[name](width=width, out_scale=out_scale, **options)
    except TypeError as exc:
        raise ValueError(f"architecture {name!r}: {exc}") from None


def validate_spec(spec: ArchSpec, exemplar_sz: int = EXEMPLAR_SZ, instance_sz: int = INSTANCE_SZ) -> None:
    """Raise ``ValueError`` unless ``spec`` is a buildable stride-8 SiamFC backbone."""
    if not isinstance(spec, dict) or "backbone" not in spec:
        raise ValueError("architecture spec must be a dict with a 'backbone' layer list")
    layers = spec["backbone"]
    if isinstance(layers, dict):  # a registered backbone type, checked by its constructor
        if layers.get("type") not in BACKBONE_TYPES:
            raise ValueError(f"unknown backbone type {layers.get('type')!r}; known: "
                             f"{sorted(BACKBONE_TYPES)} or a list of layer dicts")
        return
    if not isinstance(layers, list) or not all(isinstance(layer, dict) for layer in layers):
        raise ValueError(f"architecture spec 'backbone' must be a list of layer dicts, "
                         f"got {type(layers).__name__}")
    stride = 1
    for layer in layers:
        stride *= int(layer.get("s", 1))
    if stride != 8:
        raise ValueError(f"backbone total stride must be 8, got {stride}")
    zs, xs = output_size(layers, exemplar_sz), output_size(layers, instance_sz)
    if xs - zs + 1 <= 0:
        raise ValueError("search feature map smaller than exemplar feature map")


def build_model(spec: ArchSpec) -> SiamNet:
    """Rebuild the network described by ``spec`` (weights freshly initialised)."""
    validate_spec(spec)
    layers = spec["backbone"]
    backbone: nn.Module
    if isinstance(layers, dict):
        options = {k: v for k, v in layers.items() if k != "type"}
        try:
            backbone = BACKBONE_TYPES[layers["type"]](**options)
        except TypeError as exc:
            raise ValueError(f"backbone {layers['type']!r}: {exc}") from None
    else:
        backbone = ConvStack(layers, in_channels=int(spec.get("in_channels", 3)))
    stride = getattr(backbone, "stride", 8)
    head = build_head(spec.get("head", {}), int(backbone.out_channels), int(stride))
    net = SiamNet(backbone, head, name=str(spec.get("name", "custom")))
    init_weights(net)
    if hasattr(head, "reset_output_layers"):
        head.reset_output_layers()
    return net


def build_configured(model: ModelConfig) -> SiamNet:
    """The freshly initialised network a :class:`~siamtrack.config.ModelConfig` names (registered
    architecture, width, head scale and the builder's options); ImageNet weights are the pipeline's."""
    return build_model(named_spec(model.name, model.width, model.out_scale, **model.options))


def model_spec(net: SiamNet) -> ArchSpec:
    """The plain-dict spec that rebuilds ``net`` (reads the live widths, so pruned nets round-trip)."""
    if isinstance(net.backbone, EfficientLiteBackbone):
        return {"version": SPEC_VERSION, "name": net.name, "in_channels": 3,
                "backbone": net.backbone.spec(), "head": net.head.spec()}
    if not isinstance(net.backbone, ConvStack):
        raise TypeError("only ConvStack and registered backbones have a spec")
    layers = copy.deepcopy(net.backbone.layer_specs)
    blocks = iter(net.backbone.conv_blocks())
    for layer in layers:
        if layer["type"] == "conv":
            layer["out"] = next(blocks).out_channels
    return {"version": SPEC_VERSION, "name": net.name, "in_channels": net.backbone.in_channels,
            "backbone": layers, "head": head_type(net).spec_of(net.head)}


#: ``spec["backbone"]["type"]`` -> constructor (a list of layer dicts builds a :class:`ConvStack`)
BACKBONE_TYPES: dict[str, Callable[..., nn.Module]] = {"efficientnet_lite": EfficientLiteBackbone}


class Geometry(NamedTuple):
    """Where the response map sits in the search crop: properties of the network, not settings.

    ``stride``: search pixels per response cell; ``response_sz``: side of the response map;
    ``offset``: the target centre's displacement (search pixels, both axes) from the search-crop
    centre when the peak is the response map's centre cell (0 for the shipped networks).
    """

    stride: int
    response_sz: int
    offset: float


def _feature_size(backbone: Any, size: int, in_channels: int) -> int:
    """Backbone output side for a ``size`` input: its ``feature_size`` if it has one, else a probe."""
    if hasattr(backbone, "feature_size"):
        return int(backbone.feature_size(size))
    param = next(backbone.parameters(), None)
    probe = torch.zeros(1, in_channels, size, size, device=param.device if param is not None else "cpu")
    with torch.no_grad():
        return int(backbone(probe).shape[-1])


def geometry(net_or_spec: nn.Module | ArchSpec, exemplar_sz: int = EXEMPLAR_SZ, instance_sz: int = INSTANCE_SZ) -> Geometry:
    """Stride, response side and offset of a network (a :class:`SiamNet`-like module or its spec)
    for ``exemplar_sz`` / ``instance_sz`` crops.

    The exemplar map, centre-cropped to the head's ``exemplar_crop`` (padded backbones), slides over
    the search map: ``response_sz = search side - kernel side + 1`` (AlexNet: 6x6 / 22x22 -> 17;
    EfficientNet-Lite0: 16x16 cropped to 8, 32x32 -> 25). The tracker, the training labels and the
    export read these numbers here, so a new backbone cannot disagree with a stored setting.
    """
    if isinstance(net_or_spec, dict):
        layers = net_or_spec["backbone"]
        if isinstance(layers, dict):
            cls = BACKBONE_TYPES[layers["type"]]
            stride, size = int(cls.stride), cls.feature_size
        else:
            stride = 1
            for layer in layers:
                stride *= int(layer.get("s", 1))
            size = lambda n: output_size(layers, n)  # noqa: E731
        crop = int(net_or_spec.get("head", {}).get("exemplar_crop", 0))
    else:
        backbone = net_or_spec.backbone
        in_ch = int(getattr(backbone, "in_channels", 3))
        size = lambda n: _feature_size(backbone, n, in_ch)  # noqa: E731
        stride = getattr(backbone, "stride", None)
        crop = int(getattr(net_or_spec.head, "exemplar_crop", 0))
    zs, xs = size(exemplar_sz), size(instance_sz)
    if stride is None or not isinstance(stride, int):  # a custom backbone: what its maps say
        stride = round((instance_sz - exemplar_sz) / max(1, xs - zs))
    kernel = crop if 0 < crop < zs else zs
    response = xs - kernel + 1
    if response <= 0:
        raise ValueError(f"search feature map ({xs}) smaller than the exemplar kernel ({kernel})")
    first = (zs - kernel) // 2  # first exemplar cell the head keeps
    offset = ((response - 1) / 2 - first) * stride + (exemplar_sz - instance_sz) / 2
    return Geometry(stride, response, float(offset))


def init_weights(net: nn.Module) -> None:
    """Xavier-uniform convs, unit BN (SiamFC)."""
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
