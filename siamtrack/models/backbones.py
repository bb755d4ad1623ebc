"""Width-parameterised, padding-free convolutional backbones.

A backbone is described by a plain list of layer dicts (see :func:`alexnet_layers`), so the full
teacher, a thinner student and a network whose channels were pruned are the same code with other
numbers. Layer dict keys:

* ``{"type": "conv", "out": C, "k": K, "s": S, "groups": G, "bn": bool, "relu": bool}``:
  ``groups`` may be ``"dw"`` for a depthwise convolution (groups = in = out channels).
* ``{"type": "pool", "k": K, "s": S}``: max pooling.

Shapes: input ``(N, 3, H, W)`` float RGB in 0..255; output ``(N, C_last, h, w)`` with
``h = (H - 87) / 8 + 1`` for the SiamFC AlexNet (6x6 at 127, 22x22 at 255).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
from torch import nn

LayerSpec = dict[str, Any]

ALEXNET_WIDTHS = (96, 256, 384, 384, 256)
ALEXNET_GROUPS = (1, 2, 1, 2, 2)


def alexnet_layers(widths: Sequence[int] = ALEXNET_WIDTHS,
                   groups: Sequence[int] = ALEXNET_GROUPS) -> list[LayerSpec]:
    """SiamFC's AlexNet (Bertinetto et al. 2016): 5 convs, 2 max-pools, no padding, stride 8."""
    if len(widths) != 5 or len(groups) != 5:
        raise ValueError("the AlexNet backbone has exactly 5 conv layers")
    w, g = list(widths), list(groups)
    return [
        {"type": "conv", "out": w[0], "k": 11, "s": 2, "groups": g[0], "bn": True, "relu": True},
        {"type": "pool", "k": 3, "s": 2},
        {"type": "conv", "out": w[1], "k": 5, "s": 1, "groups": g[1], "bn": True, "relu": True},
        {"type": "pool", "k": 3, "s": 2},
        {"type": "conv", "out": w[2], "k": 3, "s": 1, "groups": g[2], "bn": True, "relu": True},
        {"type": "conv", "out": w[3], "k": 3, "s": 1, "groups": g[3], "bn": True, "relu": True},
        {"type": "conv", "out": w[4], "k": 3, "s": 1, "groups": g[4], "bn": False, "relu": False},
    ]


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    # SiamFC's BN settings: tiny eps, slow running statistics.
    return nn.BatchNorm2d(channels, eps=1e-6, momentum=0.05)


class ConvBlock(nn.Sequential):
    """conv (+ BN) (+ ReLU), no padding."""

    def __init__(self, in_ch: int, spec: LayerSpec) -> None:
        groups = in_ch if spec.get("groups", 1) == "dw" else int(spec.get("groups", 1))
        out_ch = int(spec["out"])
        if spec.get("groups") == "dw" and out_ch != in_ch:
            raise ValueError(f"depthwise conv needs out == in channels, got {in_ch} -> {out_ch}")
        if in_ch % groups or out_ch % groups:
            raise ValueError(f"channels {in_ch} -> {out_ch} are not divisible by groups={groups}")
        use_bn = bool(spec.get("bn", True))
        layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, int(spec["k"]), int(spec.get("s", 1)),
                                             groups=groups, bias=True)]
        if use_bn:
            layers.append(_batch_norm(out_ch))
        if spec.get("relu", True):
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.in_channels, self.out_channels, self.groups = in_ch, out_ch, groups

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]  # type: ignore[return-value]

    @property
    def bn(self) -> nn.BatchNorm2d | None:
        return self[1] if len(self) > 1 and isinstance(self[1], nn.BatchNorm2d) else None

    @property
    def depthwise(self) -> bool:
        """One filter per channel (groups = in = out channels): its channels are its input's."""
        return self.groups > 1 and self.groups == self.in_channels == self.out_channels


class ConvStack(nn.Module):
    """A chain of conv blocks and max-pools built from layer dicts.

    ``forward(x)`` returns the last feature map; ``forward_taps(x)`` also returns the output of
    every conv block (for hint losses and pruning statistics); ``tap_strides()`` and
    ``tap_sizes(size)`` describe those maps without running the network (the same interface as
    :class:`~siamtrack.models.efficientnet.EfficientLiteBackbone`, so distillation can pair the taps
    of either kind).
    """

    def __init__(self, layers: Sequence[LayerSpec], in_channels: int = 3) -> None:
        super().__init__()
        self.layer_specs: list[LayerSpec] = copy.deepcopy(list(layers))
        modules: list[nn.Module] = []
        ch = in_channels
        for spec in self.layer_specs:
            if spec["type"] == "conv":
                block = ConvBlock(ch, spec)
                ch = block.out_channels
                modules.append(block)
            elif spec["type"] == "pool":
                modules.append(nn.MaxPool2d(int(spec["k"]), int(spec["s"])))
            else:
                raise ValueError(f"unknown layer type {spec['type']!r}")
        self.layers = nn.ModuleList(modules)
        self.in_channels = in_channels
        self.out_channels = ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        taps: list[torch.Tensor] = []
        for layer in self.layers:
            x = layer(x)
            if isinstance(layer, ConvBlock):
                taps.append(x)
        return x, taps

    def conv_blocks(self) -> list[ConvBlock]:
        return [m for m in self.layers if isinstance(m, ConvBlock)]

    def tap_strides(self) -> list[int]:
        """Input pixels per cell of each ``forward_taps`` map (pools included)."""
        out, s = [], 1
        for spec in self.layer_specs:
            s *= int(spec.get("s", 1))
            if spec["type"] == "conv":
                out.append(s)
        return out

    def tap_sizes(self, size: int) -> list[int]:
        """Side of each ``forward_taps`` map for a square input of side ``size``."""
        out = []
        for spec in self.layer_specs:
            size = (size - int(spec["k"])) // int(spec.get("s", 1)) + 1
            if spec["type"] == "conv":
                out.append(size)
        return out

    def feature_size(self, size: int) -> int:
        """Side of the output map for a square input of side ``size`` (see :func:`output_size`)."""
        return output_size(self.layer_specs, size)

    @property
    def stride(self) -> int:
        s = 1
        for spec in self.layer_specs:
            s *= int(spec.get("s", 1))
        return s


def output_size(layers: Sequence[LayerSpec], size: int) -> int:
    """Spatial side of the backbone output for a square input of side ``size``."""
    for spec in layers:
        size = (size - int(spec["k"])) // int(spec.get("s", 1)) + 1
        if size <= 0:
            raise ValueError("input too small for this backbone")
    return size
