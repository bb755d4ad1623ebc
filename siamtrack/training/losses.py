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


def balanced_logistic_loss(logits: torch.Tensor, r_pos: float = 16.0, r_neg: float = 0.0,
                           stride: int = 8) -> torch.Tensor:
    """Mean over the batch of the balanced BCE between response ``(B, 1, S, S)`` and the centred label."""
    labels, weights = logistic_labels(logits.shape[-1], r_pos, r_neg, stride)
    labels = labels.to(logits.device, logits.dtype).expand_as(logits)
    weights = weights.to(logits.device, logits.dtype).expand_as(logits)
    loss = F.binary_cross_entropy_with_logits(logits, labels, weights, reduction="sum")
    return loss / logits.shape[0]
