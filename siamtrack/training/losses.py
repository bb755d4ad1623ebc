"""Training objectives: SiamFC's balanced logistic loss and its label map (xcorr head), and the
SiamFC++-style classification / quality / IoU losses of the box head.

Targets come from the pair sampler as ``(B, 4)`` ``[dx, dy, w, h]`` in search-crop pixels: the
target centre's offset from the crop centre, then its size (``siamtrack.data.pairs``). The xcorr
losses read the centre, and the size only to see whether a target is there at all: a negative pair
(another sequence's exemplar) has size 0, and its whole map is background."""
from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from ..geometry import cell_offsets


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


def target_present(targets: torch.Tensor) -> torch.Tensor:
    """``(B,)`` bool: rows of ``(B, 4)`` ``[dx, dy, w, h]`` targets with a positive size; a negative
    pair's ``[0, 0, 0, 0]`` is absent. ``(B, 2)`` centre-only targets are always present."""
    if targets.shape[-1] < 4:
        return torch.ones(targets.shape[0], dtype=torch.bool, device=targets.device)
    return (targets[:, 2] > 0) & (targets[:, 3] > 0)


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
    ``(dx, dy)`` from the search-crop centre in search pixels, or ``(B, 4)`` targets whose absent rows
    (:func:`target_present`) get an all-background map; weights balance each sample's own positives
    and negatives (a label near the border has fewer positives; an absent target's negatives carry
    the half of the weight they always carry)."""
    c = (size - 1) / 2.0
    grid = torch.arange(size, dtype=torch.float32, device=offsets.device)
    off = offsets[:, :2].float() / stride                                      # (B, 2) in response cells
    dx = grid.view(1, 1, size) - (c + off[:, 0].view(-1, 1, 1))
    dy = grid.view(1, size, 1) - (c + off[:, 1].view(-1, 1, 1))
    dist = torch.sqrt(dx ** 2 + dy ** 2) * stride                       # (B, size, size), pixels
    present = target_present(offsets).view(-1, 1, 1)
    pos = (dist <= r_pos) & present
    neg = (dist > max(r_neg, r_pos)) | ~present
    labels = pos.float()
    n_pos = pos.flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
    n_neg = neg.flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
    weights = pos.float() * (0.5 / n_pos) + neg.float() * (0.5 / n_neg)
    return labels.unsqueeze(1), weights.unsqueeze(1)


def hard_negative_weights(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, k: int,
                          share: float) -> torch.Tensor:
    """``weights`` with ``share`` of each map's negative weight moved onto its ``k`` highest-scoring
    background cells (online hard example mining, Shrivastava et al. 2016), the rest spread as before.

    Why: SiamFC's balanced loss spreads the negatives' half over every background cell, so the one
    piece of background beside the target that scores like it (the kerb beside ``OTB_Human3``'s
    walker) weighs one part in several hundred of that half, as much as an empty patch of sky. The
    total weight of each map's negatives, and so the positive / negative balance, is unchanged."""
    if k <= 0 or share <= 0:
        return weights
    b = logits.shape[0]
    flat_w = weights.reshape(b, -1)
    neg = (labels.reshape(b, -1) == 0) & (flat_w > 0)
    total = (flat_w * neg).sum(1, keepdim=True)                              # (B, 1) negatives' weight
    scores = logits.detach().reshape(b, -1).masked_fill(~neg, float("-inf"))
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    hard = torch.zeros_like(flat_w).scatter_(1, top, 1.0) * neg              # fewer than k negatives: fewer
    n_hard = hard.sum(1, keepdim=True).clamp_min(1)
    moved = torch.where(neg, flat_w * (1 - share) + hard * (share * total / n_hard), flat_w)
    return moved.reshape(weights.shape)


def balanced_logistic_loss(logits: torch.Tensor, r_pos: float = 16.0, r_neg: float = 0.0,
                           stride: int = 8, offsets: torch.Tensor | None = None,
                           hard_negatives: int = 0, hard_share: float = 0.5) -> torch.Tensor:
    """Mean over the batch of the balanced BCE between response ``(B, 1, S, S)`` and the label,
    centred on the crop centre, or on each target when ``offsets`` ``(B, 2)`` or ``(B, 4)`` targets
    (search pixels) are given; see :func:`shifted_logistic_labels` for absent targets. With
    ``hard_negatives`` > 0, ``hard_share`` of each map's negative weight goes to its that many
    highest-scoring background cells (:func:`hard_negative_weights`)."""
    if offsets is None:
        labels, weights = logistic_labels(logits.shape[-1], r_pos, r_neg, stride)
        labels = labels.to(logits.device, logits.dtype).expand_as(logits)
        weights = weights.to(logits.device, logits.dtype).expand_as(logits)
    else:
        labels, weights = shifted_logistic_labels(logits.shape[-1], offsets.to(logits.device), r_pos,
                                                  r_neg, stride)
        labels, weights = labels.to(logits.dtype), weights.to(logits.dtype)
    weights = hard_negative_weights(logits, labels, weights, hard_negatives, hard_share)
    loss = F.binary_cross_entropy_with_logits(logits, labels, weights, reduction="sum")
    return loss / logits.shape[0]


def cell_centres(size: int, stride: int, offset: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """:func:`siamtrack.geometry.cell_offsets` as a float32 tensor on ``device``."""
    return torch.as_tensor(cell_offsets(size, stride, offset), dtype=torch.float32, device=device)


def box_targets(size: int, targets: torch.Tensor, stride: int, offset: float = 0.0
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-cell targets of the box head for ``targets`` ``(B, 4)`` ``[dx, dy, w, h]`` (search pixels).

    Returns ``(positive, ltrb, centreness)``: ``(B, size, size)`` bool, the cells whose centre lies
    inside the target box, plus the cell nearest the target centre (a target smaller than a cell
    still gets one positive); ``(B, 4, size, size)`` distances from each cell centre to the box's
    left, top, right and bottom edges; ``(B, size, size)`` FCOS centre-ness
    ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))`` (0 outside the box). An absent target
    (a negative pair, :func:`target_present`) has no positive cell.
    """
    t = targets.float()
    grid = cell_centres(size, stride, offset, t.device)
    x1, y1 = (t[:, 0] - t[:, 2] / 2).view(-1, 1, 1), (t[:, 1] - t[:, 3] / 2).view(-1, 1, 1)
    x2, y2 = (t[:, 0] + t[:, 2] / 2).view(-1, 1, 1), (t[:, 1] + t[:, 3] / 2).view(-1, 1, 1)
    gx, gy = grid.view(1, 1, size), grid.view(1, size, 1)
    b = t.shape[0]
    ltrb = torch.stack([(gx - x1).expand(b, size, size), (gy - y1).expand(b, size, size),
                        (x2 - gx).expand(b, size, size), (y2 - gy).expand(b, size, size)], dim=1)
    inside = ltrb.min(dim=1).values > 0
    nearest = ((gx - t[:, 0].view(-1, 1, 1)).abs() <= stride / 2) & ((gy - t[:, 1].view(-1, 1, 1)).abs() <= stride / 2)
    d = ltrb.clamp_min(0)
    lr = torch.minimum(d[:, 0], d[:, 2]) / torch.maximum(d[:, 0], d[:, 2]).clamp_min(1e-6)
    tb = torch.minimum(d[:, 1], d[:, 3]) / torch.maximum(d[:, 1], d[:, 3]).clamp_min(1e-6)
    positive = (inside | nearest) & target_present(t).view(-1, 1, 1)
    return positive, ltrb, torch.sqrt(lr * tb)


def giou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Generalised IoU (Rezatofighi et al. 2019) of boxes given as edge distances ``(N, 4)``
    ``l, t, r, b`` from the same points (a target's may be negative: a cell outside a tiny box)."""
    p1, p2 = -pred[:, :2], pred[:, 2:]
    t1, t2 = -target[:, :2], target[:, 2:]
    inter = (torch.minimum(p2, t2) - torch.maximum(p1, t1)).clamp_min(0).prod(1)
    area_p, area_t = (p2 - p1).clamp_min(0).prod(1), (t2 - t1).clamp_min(0).prod(1)
    union = area_p + area_t - inter
    hull = (torch.maximum(p2, t2) - torch.minimum(p1, t1)).prod(1)
    return inter / union.clamp_min(1e-6) - (hull - union) / hull.clamp_min(1e-6)


def box_head_loss(out: torch.Tensor, targets: torch.Tensor, stride: int, offset: float = 0.0,
                  w_cls: float = 1.0, w_quality: float = 1.0, w_iou: float = 1.0
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """SiamFC++'s three losses on the box head's ``(B, 6, r, r)`` output (``BOX_OUTPUTS`` order):

    * classification: balanced BCE, positives the cells :func:`box_targets` marks (half the weight
      to positives, half to negatives, per sample, as the SiamFC loss);
    * quality: BCE towards the centre-ness, on positive cells;
    * box: ``1 - GIoU`` on positive cells, weighted by centre-ness (FCOS), so the cells the tracker
      trusts most are fitted best.

    Returns the weighted sum (mean over the batch) and its parts for the log.
    """
    size = out.shape[-1]
    pos, ltrb, ctr = box_targets(size, targets.to(out.device), stride, offset)
    posf = pos.to(out.dtype)
    n_pos = posf.flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
    n_neg = (1 - posf).flatten(1).sum(1).clamp_min(1).view(-1, 1, 1)
    weights = posf * (0.5 / n_pos) + (1 - posf) * (0.5 / n_neg)
    cls = F.binary_cross_entropy_with_logits(out[:, 0], posf, weights, reduction="sum") / out.shape[0]
    mask = pos.flatten()
    quality_logit = out[:, 1].flatten()[mask]
    ctr_pos = ctr.flatten()[mask].to(out.dtype)
    quality = F.binary_cross_entropy_with_logits(quality_logit, ctr_pos) if mask.any() else out.sum() * 0
    pred = out[:, 2:].permute(0, 2, 3, 1).reshape(-1, 4)[mask]
    tgt = ltrb.permute(0, 2, 3, 1).reshape(-1, 4)[mask].to(out.dtype)
    w = ctr_pos + 1e-3  # the nearest cell of a tiny target has centre-ness 0; keep it in the fit
    iou = ((1 - giou(pred, tgt)) * w).sum() / w.sum() if mask.any() else out.sum() * 0
    loss = w_cls * cls + w_quality * quality + w_iou * iou
    return loss, {"loss": float(loss.detach()), "cls": float(cls.detach()),
                  "quality": float(quality.detach()), "iou": float(iou.detach())}
