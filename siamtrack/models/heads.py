"""Cross-correlation head: the exemplar embedding is the filter slid over the search embedding."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class XCorrHead(nn.Module):
    """``response = out_scale * (z ⋆ x) + bias``.

    Shapes: ``z (B, C, hz, wz)`` and ``x (B, C, hx, wx)`` give ``(B, 1, hx-hz+1, wx-wz+1)``, all pairs
    as one grouped convolution; ``z (1, C, hz, wz)`` against ``x (S, C, hx, wx)`` (one exemplar, S
    scales, the tracking case) is one plain convolution. ``out_scale`` (0.001 in SiamFC) keeps logits
    in a range where the logistic loss trains; the learned ``bias`` makes ``sigmoid(response)`` a
    usable confidence.
    """

    def __init__(self, out_scale: float = 0.001) -> None:
        super().__init__()
        self.out_scale = float(out_scale)
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if z.shape[1] != x.shape[1]:
            raise ValueError(f"channel mismatch: exemplar {tuple(z.shape)} vs search {tuple(x.shape)}")
        if z.shape[0] == 1:
            out = F.conv2d(x, z)
        elif z.shape[0] == x.shape[0]:
            b, c, h, w = x.shape
            out = F.conv2d(x.reshape(1, b * c, h, w), z, groups=b).reshape(b, 1, h - z.shape[2] + 1,
                                                                          w - z.shape[3] + 1)
        else:
            raise ValueError(f"batch mismatch: {z.shape[0]} exemplars vs {x.shape[0]} search images")
        return out * self.out_scale + self.bias
