"""Correlation heads: the exemplar embedding is the filter slid over the search embedding.

* :class:`XCorrHead` (``type: xcorr``, SiamFC): one response map; scale comes from a 3-scale search.
* :class:`BoxHead` (``type: box``, SiamFC++ style): depthwise correlation, two small towers, and per
  response cell a classification logit, a quality (centre-ness) logit and the distances to the four
  box edges, so one search crop per frame gives position and size.

Both crop the exemplar map the same way (:func:`centre_crop`). :data:`HEAD_TYPES` maps a spec's
``head.type`` to its :class:`HeadType`, the one declaration of what the tracker loop, the loss,
export, profiling and pruning need of that head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from ..config import OUT_SCALE


def centre_crop(z: torch.Tensor, crop: int) -> torch.Tensor:
    """The centred ``crop`` x ``crop`` window of ``z`` (``z`` itself when ``crop`` is 0 or not smaller).

    The crop is exactly centred, so an even map needs an even crop (16 -> 8); an odd crop of an even
    map would sit half a cell off the target centre."""
    h, w = z.shape[-2:]
    if crop <= 0 or (h <= crop and w <= crop):
        return z
    if (h - crop) % 2 or (w - crop) % 2:
        raise ValueError(f"exemplar map {h}x{w} has no centred {crop}x{crop} crop (parities differ)")
    top, left = (h - crop) // 2, (w - crop) // 2
    return z[..., top:top + crop, left:left + crop]


class XCorrHead(nn.Module):
    """``response = out_scale * (z ⋆ x) + bias``.

    Shapes: ``z (B, C, hz, wz)`` and ``x (B, C, hx, wx)`` give ``(B, 1, hx-hz+1, wx-wz+1)``, all pairs
    as one grouped convolution; ``z (1, C, hz, wz)`` against ``x (S, C, hx, wx)`` (one exemplar, S
    scales, the tracking case) is one plain convolution, and so is ``z (S, ...)`` against
    ``x (1, ...)`` (S exemplar scales against one search crop: ``scale_mode: exemplar``). ``out_scale`` (0.001 in SiamFC) keeps logits
    in a range where the logistic loss trains; the learned ``bias`` makes ``sigmoid(response)`` a
    usable confidence.

    ``exemplar_crop`` (0: off) centre-crops a larger exemplar map to that side before correlating,
    as SiamRPN++ does for padded backbones: the border cells of a padded network's exemplar map see
    the zero padding, not the target's context (:func:`centre_crop`).
    """

    kind = "xcorr"
    outputs = 1

    def __init__(self, out_scale: float = OUT_SCALE, exemplar_crop: int = 0) -> None:
        super().__init__()
        self.out_scale = float(out_scale)
        self.exemplar_crop = int(exemplar_crop)
        self.bias = nn.Parameter(torch.zeros(1))

    def crop_exemplar(self, z: torch.Tensor) -> torch.Tensor:
        """The centred ``exemplar_crop`` x ``exemplar_crop`` window of ``z`` (``z`` itself when off or smaller)."""
        return centre_crop(z, self.exemplar_crop)

    def spec(self) -> dict:
        return {"type": "xcorr", "out_scale": self.out_scale, "exemplar_crop": self.exemplar_crop}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = self.crop_exemplar(z)
        if z.shape[1] != x.shape[1]:
            raise ValueError(f"channel mismatch: exemplar {tuple(z.shape)} vs search {tuple(x.shape)}")
        if z.shape[0] == 1:
            out = F.conv2d(x, z)
        elif x.shape[0] == 1:  # S exemplars (a scale pyramid) against one search image: S maps
            out = F.conv2d(x, z).transpose(0, 1)
        elif z.shape[0] == x.shape[0]:
            b, c, h, w = x.shape
            out = F.conv2d(x.reshape(1, b * c, h, w), z, groups=b).reshape(b, 1, h - z.shape[2] + 1,
                                                                          w - z.shape[3] + 1)
        else:
            raise ValueError(f"batch mismatch: {z.shape[0]} exemplars vs {x.shape[0]} search images")
        return out * self.out_scale + self.bias


def depthwise_xcorr(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-channel correlation (SiamRPN++'s depthwise xcorr): ``z (1 or B, C, hz, wz)`` over
    ``x (B, C, hx, wx)`` gives ``(B, C, hx - hz + 1, wx - wz + 1)`` as one grouped convolution."""
    b, c, h, w = x.shape
    if z.shape[1] != c:
        raise ValueError(f"channel mismatch: exemplar {tuple(z.shape)} vs search {tuple(x.shape)}")
    hz, wz = z.shape[-2:]
    if z.shape[0] == 1:
        return F.conv2d(x, z.reshape(c, 1, hz, wz), groups=c)
    if z.shape[0] != b:
        raise ValueError(f"batch mismatch: {z.shape[0]} exemplars vs {b} search images")
    out = F.conv2d(x.reshape(1, b * c, h, w), z.reshape(b * c, 1, hz, wz), groups=b * c)
    return out.reshape(b, c, out.shape[-2], out.shape[-1])


#: modules per separable block of a tower: depthwise conv, BN, ReLU, pointwise conv, BN, ReLU
TOWER_BLOCK = 6


def _separable_tower(channels: int, depth: int, width: int | None = None) -> nn.Sequential:
    """``depth`` x (3x3 depthwise + 1x1 pointwise, BN, ReLU): the cheap conv tower of a head
    (a dense 3x3 conv at 128 channels on a 25x25 map costs 92 M MACs, this 11 M per block).
    The first depthwise conv works on the ``channels`` of the correlation, the pointwise convs
    output ``width`` (default ``channels``): they differ once pruning has narrowed one of them.
    Block ``k`` is modules ``TOWER_BLOCK * k`` to ``TOWER_BLOCK * (k + 1) - 1``."""
    width = channels if width is None else width
    layers: list[nn.Module] = []
    c_in = channels
    for _ in range(depth):
        layers += [nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False),
                   nn.BatchNorm2d(c_in), nn.ReLU(inplace=True),
                   nn.Conv2d(c_in, width, 1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
        c_in = width
    return nn.Sequential(*layers)


#: output channels of :class:`BoxHead`, in order
BOX_OUTPUTS = ("cls", "quality", "left", "top", "right", "bottom")


class BoxHead(nn.Module):
    """SiamFC++-style head: depthwise xcorr, a classification tower and a box tower.

    ``forward(z, x)`` gives ``(B, 6, r, r)``, channels :data:`BOX_OUTPUTS`: the classification logit
    (target centre region or not), the quality logit (centre-ness of the cell inside the box) and the
    distances ``l, t, r, b`` from the cell's centre to the box edges in search-crop pixels
    (``stride * exp(.)``, always positive). Where a cell sits in the crop is
    :func:`siamtrack.models.geometry`'s business (stride and offset of the backbone); the head is told
    its ``stride`` by :func:`~siamtrack.models.build_model`, which reads it from the backbone.

    The box tower starts at a box of ``4 * stride`` pixels to each edge (64 x 64 px at stride 8, the
    size of a target in SiamFC's search crop), so regression does not begin from a degenerate box.

    ``width`` (default: ``channels``, the backbone's) is the towers' pointwise width. Pruning
    (``siamtrack.compress.prune``) narrows the embedding and the towers separately, so a pruned head
    has ``width != channels``; the spec records ``width`` only then, so unpruned specs stay as they were.
    """

    kind = "box"
    outputs = len(BOX_OUTPUTS)

    def __init__(self, channels: int, exemplar_crop: int = 0, tower: int = 2, stride: int = 8,
                 width: int | None = None) -> None:
        super().__init__()
        self.channels, self.exemplar_crop, self.tower = int(channels), int(exemplar_crop), int(tower)
        self.width = self.channels if width is None else int(width)
        self.stride = int(stride)
        self.cls_tower = _separable_tower(self.channels, self.tower, self.width)
        self.box_tower = _separable_tower(self.channels, self.tower, self.width)
        head_in = self.width if self.tower else self.channels
        self.cls_out = nn.Conv2d(head_in, 1, 1)
        self.box_out = nn.Conv2d(head_in, 5, 1)   # quality, then l, t, r, b (log units)
        self.reset_output_layers()

    def reset_output_layers(self) -> None:
        """Small output weights, the box bias at ``log(4)`` (edges 4 strides away). Called again
        after a generic initialiser has run over the whole network."""
        for conv in (self.cls_out, self.box_out):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        with torch.no_grad():
            self.box_out.bias[1:] = math.log(4.0)

    def crop_exemplar(self, z: torch.Tensor) -> torch.Tensor:
        return centre_crop(z, self.exemplar_crop)

    def spec(self) -> dict:
        out = {"type": "box", "exemplar_crop": self.exemplar_crop, "tower": self.tower}
        if self.width != self.channels:
            out["width"] = self.width
        return out

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        feat = depthwise_xcorr(self.crop_exemplar(z), x)
        cls = self.cls_out(self.cls_tower(feat))
        box = self.box_out(self.box_tower(feat))
        ltrb = torch.exp(box[:, 1:].clamp(-6.0, 6.0)) * float(self.stride)
        return torch.cat([cls, box[:, :1], ltrb], dim=1)


# ------------------------------------------------------------------ the registry
@dataclass(frozen=True)
class HeadType:
    """One kind of head, declared once: what every part of siamtrack needs to know about it.

    * models: ``build(spec, channels, stride)`` the module from a spec's ``head`` dict,
      ``spec_entry(out_scale, exemplar_crop, tower)`` that dict for a new architecture,
      ``spec_of(head)`` the dict a trained head is saved with;
    * tracking: ``step``, the name of the per-frame step in ``SiamFCTracker.STEPS`` (``"scales"``:
      SiamFC's multi-scale search of one response map; ``"box"``: one crop, a regressed box);
    * training: ``loss``, the name of its objective in ``training.trainer.LOSSES``;
    * export: ``outputs``, the search graph's ONNX outputs as ``(name, channels of the head's
      output)``;
    * profiling: ``crops_per_frame`` (``None``: the tracker's ``scale_num``), and the ``towers``'
      convolutions are counted after the correlation;
    * pruning: ``towers`` (tower attribute -> the output conv it feeds) are the head's own prunable
      channels (``compress.prune_head``); a head without towers has none.

    A new head that steps and trains like an existing one is one more entry; a new ``step`` or
    ``loss`` is one more function registered under that name (``tests/test_box_head.py`` checks
    every entry is complete).
    """

    name: str
    build: Callable[[dict, int, int], nn.Module]
    spec_entry: Callable[[float, int, int], dict]
    spec_of: Callable[[nn.Module], dict]
    step: str
    loss: str
    outputs: tuple[tuple[str, int | slice], ...]
    crops_per_frame: int | None = None
    towers: Mapping[str, str] = field(default_factory=dict)

    def pyramid(self, scale_mode: str) -> bool:
        """Whether the tracker searches scale with an exemplar pyramid for this head: ``scale_mode``
        ``"exemplar"`` and crops that follow the scales (a head with fixed ``crops_per_frame``, the
        box head, regresses the size instead and ignores the setting)."""
        return scale_mode == "exemplar" and self.crops_per_frame is None

    def split(self, out: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        """The head's ``(B, C, r, r)`` output as the search graph's outputs (one tensor when one)."""
        parts = tuple(out[:, channels] for _, channels in self.outputs)
        return parts[0] if len(parts) == 1 else parts


def _xcorr_spec_entry(out_scale: float, exemplar_crop: int, tower: int) -> dict:
    out: dict[str, Any] = {"out_scale": out_scale}  # the format the shipped checkpoints hold (no type)
    if exemplar_crop:
        out.update(type="xcorr", exemplar_crop=exemplar_crop)
    return out


def _xcorr_spec_of(head: nn.Module) -> dict:
    out: dict[str, Any] = {"out_scale": head.out_scale}
    if head.exemplar_crop:
        out["exemplar_crop"] = head.exemplar_crop
    return out


def _build_box(spec: dict, channels: int, stride: int) -> nn.Module:
    width = spec.get("width")
    return BoxHead(channels, exemplar_crop=int(spec.get("exemplar_crop", 0)), tower=int(spec.get("tower", 2)),
                   stride=stride, width=None if width is None else int(width))


#: ``spec["head"]["type"]`` -> its :class:`HeadType` (a spec without a type is the SiamFC xcorr head)
HEAD_TYPES: dict[str, HeadType] = {}


def register_head(head_type: HeadType) -> HeadType:
    """Add a head kind to :data:`HEAD_TYPES` (its ``name`` is the spec's ``head.type``)."""
    HEAD_TYPES[head_type.name] = head_type
    return head_type


register_head(HeadType(
    name="xcorr",
    build=lambda spec, channels, stride: XCorrHead(out_scale=float(spec.get("out_scale", OUT_SCALE)),
                                                   exemplar_crop=int(spec.get("exemplar_crop", 0))),
    spec_entry=_xcorr_spec_entry, spec_of=_xcorr_spec_of, step="scales", loss="logistic",
    outputs=(("response", 0),)))
register_head(HeadType(
    name="box", build=_build_box,
    spec_entry=lambda out_scale, exemplar_crop, tower: {"type": "box", "exemplar_crop": exemplar_crop,
                                                        "tower": tower},
    spec_of=lambda head: head.spec(), step="box", loss="box",
    outputs=(("cls", 0), ("quality", 1), ("box", slice(2, None))), crops_per_frame=1,
    towers={"cls_tower": "cls_out", "box_tower": "box_out"}))


def head_kind(described: object) -> str:
    """``"xcorr"`` or ``"box"``: the head of a spec dict, a network with ``.head`` or a head module
    (a spec without a head type, as the shipped AlexNet and student hold, is xcorr)."""
    if isinstance(described, dict):
        return str(described.get("head", {}).get("type", "xcorr"))
    head = getattr(described, "head", described)
    return str(getattr(head, "kind", "xcorr"))


def head_type(described: object) -> HeadType:
    """The :class:`HeadType` of a spec dict, a network or a head module."""
    kind = head_kind(described)
    if kind not in HEAD_TYPES:
        raise ValueError(f"unknown head type {kind!r}; known: {sorted(HEAD_TYPES)}")
    return HEAD_TYPES[kind]


def build_head(spec: dict, channels: int, stride: int) -> nn.Module:
    """The head a spec's ``head`` dict describes, for a backbone of ``channels`` outputs at ``stride``."""
    return head_type({"head": spec}).build(spec, channels, stride)
