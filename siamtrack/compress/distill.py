"""Knowledge distillation from a frozen teacher into a student with the same SiamFC contract.

Three terms, weighted by :class:`~siamtrack.config.CompressConfig`:

* **response**: the student's response map matches the teacher's as a distribution over positions
  (softmax over the map at temperature ``T``, KL divergence scaled by ``T**2``, Hinton et al. 2015).
  Treating the map as a spatial distribution is what the tracker uses it for: where the peak is.
* **hint**: intermediate search features match the teacher's through 1x1 adapters (FitNets,
  Romero et al. 2015), on the last conv layers whose maps have the same spatial size. The MSE is
  normalised by the teacher feature's energy so that the term is scale-free (an adapter that
  outputs zeros scores 1). Adapters start as the least-squares fit on a few crops
  (:meth:`DistillModel.fit_adapters`). Random ones score ~1.45 per layer, worse than zeros, and
  fresh adapters came with every pruning step and the fine-tuning: at the fine-tuning's low learning
  rate they ended near 1.45 still, so the hint term pulled the student towards features no adapter
  matched. Fitted, the pruned student's two hints start at ~0.55 and ~0.45.
* **gt**: the usual balanced logistic loss against the ground-truth label.

The teacher runs in eval mode without gradients; ``DistillModel.train()`` keeps it there.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..config import INSTANCE_SZ, CompressConfig
from ..models import ConvStack, SiamNet
from ..training.losses import balanced_logistic_loss


def response_kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 2.0) -> torch.Tensor:
    """KL(teacher || student) of the spatial softmax at ``temperature``, times ``T**2``, batch mean."""
    t = temperature
    s_log = F.log_softmax(student.flatten(1) / t, dim=1)
    t_prob = F.softmax(teacher.flatten(1) / t, dim=1)
    return F.kl_div(s_log, t_prob, reduction="batchmean") * t * t


def hint_loss(student_feat: torch.Tensor, teacher_feat: torch.Tensor) -> torch.Tensor:
    """MSE between adapted student and teacher features, normalised by the teacher's mean energy."""
    return F.mse_loss(student_feat, teacher_feat) / teacher_feat.pow(2).mean().clamp_min(1e-8)


def matching_taps(student: ConvStack, teacher: ConvStack, size: int = INSTANCE_SZ, count: int = 2) -> list[tuple[int, int]]:
    """``(student_block, teacher_block)`` pairs, last first, whose outputs have the same spatial size."""
    def sizes(stack: ConvStack) -> list[int]:
        out, n = [], size
        for spec in stack.layer_specs:
            n = (n - int(spec["k"])) // int(spec.get("s", 1)) + 1
            if spec["type"] == "conv":
                out.append(n)
        return out

    s_sizes, t_sizes = sizes(student), sizes(teacher)
    pairs = []
    for ti in range(len(t_sizes) - 1, -1, -1):
        used = {p[0] for p in pairs}
        matches = [si for si, n in enumerate(s_sizes) if n == t_sizes[ti] and si not in used]
        if matches:
            pairs.append((matches[-1], ti))
        if len(pairs) == count:
            break
    return pairs


class DistillModel(nn.Module):
    """Student + frozen teacher + hint adapters; ``forward(z, x)`` returns everything the loss needs."""

    def __init__(self, student: SiamNet, teacher: SiamNet, hint_layers: int = 2) -> None:
        super().__init__()
        if not isinstance(student.backbone, ConvStack) or not isinstance(teacher.backbone, ConvStack):
            raise TypeError("distillation needs ConvStack backbones")
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.taps = matching_taps(student.backbone, teacher.backbone, count=hint_layers)
        s_blocks, t_blocks = student.backbone.conv_blocks(), teacher.backbone.conv_blocks()
        self.adapters = nn.ModuleList(
            nn.Conv2d(s_blocks[si].out_channels, t_blocks[ti].out_channels, 1) for si, ti in self.taps)

    @torch.no_grad()
    def fit_adapters(self, x: torch.Tensor, ridge: float = 1e-3) -> list[float]:
        """Set every adapter to the ridge least-squares map from the student's tapped features to
        the teacher's on search crops ``x`` ``(N, 3, H, W)``; returns each hint loss after the fit.

        The student's features are those the loss sees in training (BN on batch statistics; a
        fresh student's running statistics say nothing), read from a copy so that its running
        statistics do not move.
        """
        _, t_taps = self.teacher.backbone.forward_taps(x)
        _, s_taps = copy.deepcopy(self.student.backbone).train().forward_taps(x)
        losses = []
        for adapter, (si, ti) in zip(self.adapters, self.taps):
            s = s_taps[si].permute(0, 2, 3, 1).reshape(-1, s_taps[si].shape[1]).double()
            t = t_taps[ti].permute(0, 2, 3, 1).reshape(-1, t_taps[ti].shape[1]).double()
            s1 = torch.cat([s, torch.ones(len(s), 1, dtype=s.dtype, device=s.device)], 1)
            gram = s1.T @ s1
            gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
            w = torch.linalg.solve(gram, s1.T @ t)                     # (C_s + 1, C_t)
            adapter.weight.copy_(w[:-1].T.reshape(adapter.weight.shape).to(adapter.weight.dtype))
            adapter.bias.copy_(w[-1].to(adapter.bias.dtype))
            losses.append(float(hint_loss(adapter(s_taps[si]), t_taps[ti])))
        return losses

    def train(self, mode: bool = True) -> "DistillModel":
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, object]:
        with torch.no_grad():
            tz = self.teacher.backbone(z)
            tx, t_taps = self.teacher.backbone.forward_taps(x)
            t_resp = self.teacher.head(tz, tx)
        sz = self.student.backbone(z)
        sx, s_taps = self.student.backbone.forward_taps(x)
        s_resp = self.student.head(sz, sx)
        hints = [(adapter(s_taps[si]), t_taps[ti]) for adapter, (si, ti) in zip(self.adapters, self.taps)]
        return {"student": s_resp, "teacher": t_resp, "hints": hints}


def distill_loss(cfg: CompressConfig, r_pos: float = 16.0, r_neg: float = 0.0, stride: int = 8):
    """Loss function for :class:`~siamtrack.training.Trainer` over a :class:`DistillModel`."""
    def loss_fn(model: nn.Module, z: torch.Tensor, x: torch.Tensor,
                offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(z, x)
        gt = balanced_logistic_loss(out["student"], r_pos, r_neg, stride, offsets)
        kd = response_kd_loss(out["student"], out["teacher"].float(), cfg.temperature)
        hint = sum((hint_loss(s, t.float()) for s, t in out["hints"]), torch.zeros((), device=z.device))
        loss = cfg.w_gt * gt + cfg.w_response * kd + cfg.w_hint * hint
        return loss, {"loss": float(loss.detach()), "gt": float(gt.detach()), "kd": float(kd.detach()),
                      "hint": float(hint.detach())}
    return loss_fn
