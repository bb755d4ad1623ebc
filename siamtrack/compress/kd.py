"""The distillation terms on tensors (no networks): map alignment, response / box / hint KD and
the student's ground-truth loss. :mod:`.distill` explains the terms and combines them."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.heads import BOX_OUTPUTS
from ..training.losses import balanced_logistic_loss, box_head_loss, giou


def is_box_output(out: torch.Tensor) -> bool:
    """Whether a head output is the box head's ``(B, 6, r, r)`` (else the xcorr's ``(B, 1, r, r)``)."""
    return out.shape[1] == len(BOX_OUTPUTS)


def align_centres(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``a`` and ``b`` ``(..., H, W)`` with the larger one centre-cropped to the other's size, per axis.

    Both maps must be centred on the same point at the same stride (the caller checks the stride):
    then cell ``j`` of the smaller map and cell ``j + (big - small) / 2`` of the larger one sit at the
    same place. An odd size difference has no centred crop (half a cell off): ``ValueError``."""
    out = [a, b]
    for axis in (-2, -1):
        na, nb = out[0].shape[axis], out[1].shape[axis]
        if (na - nb) % 2:
            raise ValueError(f"maps of {tuple(a.shape[-2:])} and {tuple(b.shape[-2:])} have no common "
                             f"centre cell (sizes differ by an odd number)")
        big = 0 if na > nb else 1
        lo = abs(na - nb) // 2
        out[big] = out[big].narrow(axis, lo, min(na, nb))
    return out[0], out[1]


def response_kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """KL(teacher || student) of the spatial softmax at ``temperature``, times ``T**2``, batch mean.
    Maps of different sizes are centre-aligned first (:func:`align_centres`)."""
    student, teacher = align_centres(student, teacher)
    t = temperature
    s_log = F.log_softmax(student.flatten(1) / t, dim=1)
    t_prob = F.softmax(teacher.flatten(1) / t, dim=1)
    return F.kl_div(s_log, t_prob, reduction="batchmean") * t * t


def box_kd_loss(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(quality, box)`` distillation terms between two box-head outputs ``(B, 6, r, r)``
    (centre-aligned first). ``quality``: binary KL from ``sigmoid(teacher quality)`` to the student's,
    weighted by ``sigmoid(teacher cls)``; ``box``: ``1 - GIoU`` of the two boxes of each cell (both
    are edge distances from the same cell centre), weighted by ``sigmoid(cls) * sigmoid(quality)``
    of the teacher. Both are 0 when the student repeats the teacher."""
    student, teacher = align_centres(student, teacher)
    t_cls, t_q = torch.sigmoid(teacher[:, 0]), torch.sigmoid(teacher[:, 1])
    kl = (F.binary_cross_entropy_with_logits(student[:, 1], t_q, reduction="none")
          - F.binary_cross_entropy_with_logits(teacher[:, 1], t_q, reduction="none"))  # minus H(t_q)
    quality = (kl * t_cls).sum() / t_cls.sum().clamp_min(1e-6)
    w = (t_cls * t_q).flatten()
    s_box = student[:, 2:].permute(0, 2, 3, 1).reshape(-1, 4)
    t_box = teacher[:, 2:].permute(0, 2, 3, 1).reshape(-1, 4)
    box = ((1 - giou(s_box, t_box)) * w).sum() / w.sum().clamp_min(1e-6)
    return quality, box


def hint_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """MSE between adapted student and teacher features (centre-aligned first), normalised by the
    teacher's mean energy."""
    student_feat, teacher_feat = align_centres(student_feat, teacher_feat)
    return F.mse_loss(student_feat, teacher_feat) / teacher_feat.pow(2).mean().clamp_min(1e-8)


def ground_truth_loss(out: torch.Tensor, targets: torch.Tensor | None, r_pos: float = 16.0,
                      r_neg: float = 0.0, stride: int = 8, offset: float = 0.0, hard_negatives: int = 0,
                      hard_share: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    """The student's own objective: ``box_head_loss`` for a box-head output (needs ``targets``
    ``(B, 4)`` ``[dx, dy, w, h]``), else the balanced logistic loss (centred on ``targets[:, :2]``
    when given; ``hard_negatives`` / ``hard_share`` as the teacher's, ``losses.hard_negative_weights``).
    Returns the loss and the box loss's parts (empty for xcorr)."""
    if is_box_output(out):
        if targets is None or targets.shape[-1] < 4:
            raise ValueError("a box-head student trains on [dx, dy, w, h] targets; the data gave none")
        loss, parts = box_head_loss(out, targets, stride, offset)
        return loss, {f"gt_{k}": v for k, v in parts.items() if k != "loss"}
    return balanced_logistic_loss(out, r_pos, r_neg, stride, targets, hard_negatives, hard_share), {}
