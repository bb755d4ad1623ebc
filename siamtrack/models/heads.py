"""Cross-correlation head: the exemplar embedding is the filter slid over the search embedding."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import OUT_SCALE


class XCorrHead(nn.Module):
    """``response = out_scale * (z ⋆ x) + bias``.

    Shapes: ``z (B, C, hz, wz)`` and ``x (B, C, hx, wx)`` give ``(B, 1, hx-hz+1, wx-wz+1)``, all pairs
    as one grouped convolution; ``z (1, C, hz, wz)`` against ``x (S, C, hx, wx)`` (one exemplar, S
    scales, the tracking case) is one plain convolution. ``out_scale`` (0.001 in SiamFC) keeps logits
    in a range where the logistic loss trains; the learned ``bias`` makes ``sigmoid(response)`` a
    usable confidence.

    ``exemplar_crop`` (0: off) centre-crops a larger exemplar map to that side before correlating,
    as SiamRPN++ does for padded backbones: the border cells of a padded network's exemplar map see
    the zero padding, not the target's context. The crop is exactly centred, so an even map needs an
    even crop (16 -> 8); an odd crop of an even map would sit half a cell off the target centre.
    """

    def __init__(self, out_scale: float = OUT_SCALE, exemplar_crop: int = 0) -> None:
        super().__init__()
        self.out_scale = float(out_scale)
        self.exemplar_crop = int(exemplar_crop)
        self.bias = nn.Parameter(torch.zeros(1))

    def crop_exemplar(self, z: torch.Tensor) -> torch.Tensor:
        """The centred ``exemplar_crop`` x ``exemplar_crop`` window of ``z`` (``z`` itself when off or smaller)."""
        c, (h, w) = self.exemplar_crop, z.shape[-2:]
        if c <= 0 or (h <= c and w <= c):
            return z
        if (h - c) % 2 or (w - c) % 2:
            raise ValueError(f"exemplar map {h}x{w} has no centred {c}x{c} crop (parities differ)")
        top, left = (h - c) // 2, (w - c) // 2
        return z[..., top:top + c, left:left + c]

    def spec(self) -> dict:
        return {"type": "xcorr", "out_scale": self.out_scale, "exemplar_crop": self.exemplar_crop}

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        z = self.crop_exemplar(z)
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
