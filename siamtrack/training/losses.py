"""SiamFC's balanced logistic loss and its label map."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=16)
def _label_cache(size: int, r_pos: float, r_neg: float, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = (size - 1) / 2.0
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    dist = torch.sqrt((xs - c) ** 2 + (ys - c) ** 2) * stride   # search-image pixels
    labels = torch.where(dist <= r_pos, 1.0, torch.where(dist <= r_neg, 0.5, 0.0))
    pos, neg = labels == 1, labels == 0
    weights = torch.zeros_like(labels)
    weights[pos] = 0.5 / pos.sum()
    weights[neg] = 0.5 / neg.sum()
    return labels, weights


def logistic_labels(size: int, r_pos: float = 16.0, r_neg: float = 0.0,
                    stride: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels, weights)``, each ``(size, size)``: 1 within ``r_pos`` search pixels of the centre
    (the sampler always centres the target), 0 beyond ``r_neg``, ignored (weight 0) in between.
    Weights balance positives and negatives to half of the loss each."""
    labels, weights = _label_cache(int(size), float(r_pos), float(r_neg), int(stride))
    return labels.clone(), weights.clone()


def shifted_logistic_labels(size: int, offsets: torch.Tensor, r_pos: float = 16.0, r_neg: float = 0.0,
                            stride: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample ``(labels, weights)``, each ``(B, 1, size, size)``: the map of :func:`logistic_labels`
    centred on each target instead of the crop centre. ``offsets`` ``(B, 2)`` are the target centres'
    ``(dx, dy)`` from the search-crop centre in search pixels; weights balance each sample's own
    positives and negatives (a label near the border has fewer positives)."""
    c = (size - 1) / 2.0
    grid = torch.arange(size, dtype=torch.float32, device=offsets.device)
    off = offsets.float() / stride                                      # (B, 2) in response cells
    dx = grid.view(1, 1, size) - (c + off[:, 0].view(-1, 1, 1))
    dy = grid.view(1, size, 1) - (c + off[:, 1].view(-1, 1, 1))
    dist = torch.sqrt(dx ** 2 + dy ** 2) * stride                       # (B, size, size), pixels
    pos = dist <= r_pos
    neg = dist > max(r_neg, r_pos)
    labels = pos.float()
    n_pos = pos.flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
    n_neg = neg.flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
    weights = pos.float() * (0.5 / n_pos) + neg.float() * (0.5 / n_neg)
    return labels.unsqueeze(1), weights.unsqueeze(1)


def balanced_logistic_loss(logits: torch.Tensor, r_pos: float = 16.0, r_neg: float = 0.0,
                           stride: int = 8, offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Mean over the batch of the balanced BCE between response ``(B, 1, S, S)`` and the label,
    centred on the crop centre, or on each target when ``offsets`` ``(B, 2)`` (search pixels) are given."""
    if offsets is None:
        labels, weights = logistic_labels(logits.shape[-1], r_pos, r_neg, stride)
        labels = labels.to(logits.device, logits.dtype).expand_as(logits)
        weights = weights.to(logits.device, logits.dtype).expand_as(logits)
    else:
        labels, weights = shifted_logistic_labels(logits.shape[-1], offsets.to(logits.device), r_pos,
                                                  r_neg, stride)
        labels, weights = labels.to(logits.dtype), weights.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, labels, weights, reduction="sum")
    return loss / logits.shape[0]
