"""Knowledge distillation from a frozen teacher into a student with the same SiamFC contract.

Teacher and student may differ in backbone (an unpadded :class:`~siamtrack.models.ConvStack` such as
AlexNet or the student, or the padded EfficientNet-Lite0) and in head (``xcorr`` or ``box``). They
must share the stride (8); their maps may differ in size: both are centred on the crop at the same
stride, so the larger map is centre-cropped to the smaller one (:func:`align_centres`) before any
two are compared. Checked on the receptive fields (tests/test_compress.py): Lite0's 32x32 search map
(padded; cell ``j`` centred on pixel ``8 j``) against the student's 22x22 (unpadded; cell ``j``
centred on pixel ``8 j + 41.5``) puts teacher cell ``j + 5`` 1.5 px from student cell ``j``, the
closest cell (the 24x24 tap against stage 3: ``j + 4``, the same 1.5 px); the 25x25 and 17x17
responses (both ``models.geometry`` offset 0) line up exactly at ``i + 4`` / ``i``.

Terms, weighted by :class:`~siamtrack.config.CompressConfig`:

* **response** (``w_response``): the student's response map (its classification logits for a box
  head) matches the teacher's (its classification logits for a box head) as a distribution over
  positions (softmax over the map at temperature ``T``, KL divergence scaled by ``T**2``, Hinton
  et al. 2015). Treating the map as a spatial distribution is what the tracker uses it for: where
  the peak is. So any head distils from any head through this term.
* **box** (``w_box``, box-head student and teacher only): the student's quality logits towards
  ``sigmoid(teacher quality)`` (binary KL, weighted by ``sigmoid(teacher cls)``: the teacher's
  quality was only trained on cells inside the target), plus ``1 - GIoU`` between the two heads'
  boxes of each cell (scale-free, like the ground-truth box loss), weighted by the teacher's score
  ``sigmoid(cls) * sigmoid(quality)``: the cells the teacher's tracker would pick.
* **hint** (``w_hint``): intermediate search features match the teacher's through 1x1 adapters
  (FitNets, Romero et al. 2015), on taps paired by :func:`matching_taps` (same stride, last first).
  The MSE is normalised by the teacher feature's energy so that the term is scale-free (an adapter
  that outputs zeros scores 1), and the adapters predict the teacher's tap divided by its RMS over
  the fitting crops (``hint_scale``), so that their gradients are scale-free too: a randomly
  initialised Lite0's taps have energy ~3e-9, and adapters in its units took gradients ~4000x those
  of AlexNet's (energy ~90), which blew the student up in the first SGD step. Adapters start as the
  least-squares fit on a few crops
  (:meth:`DistillModel.fit_adapters`). Random ones score ~1.45 per layer, worse than zeros, and
  fresh adapters came with every pruning step and the fine-tuning: at the fine-tuning's low learning
  rate they ended near 1.45 still, so the hint term pulled the student towards features no adapter
  matched. Fitted, the pruned student's two hints start at ~0.55 and ~0.45.
* **gt** (``w_gt``): the student's own training loss against the ground truth
  (:func:`ground_truth_loss`: balanced logistic loss, or ``box_head_loss`` for a box head).

The teacher runs in eval mode without gradients; ``DistillModel.train()`` keeps it there.
"""
from __future__ import annotations

import copy
from typing import Callable, Protocol

import torch
from torch import nn

from ..config import EXEMPLAR_SZ, INSTANCE_SZ, CompressConfig
from ..models import ConvStack, SiamNet, geometry
from .kd import (align_centres, box_kd_loss, ground_truth_loss, hint_loss, is_box_output,
                 response_kd_loss)


class TappedBackbone(Protocol):
    """What hints need of a backbone (``ConvStack`` and ``EfficientLiteBackbone`` have it)."""

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]: ...
    def tap_strides(self) -> list[int]: ...
    def tap_sizes(self, size: int) -> list[int]: ...


def _hint_candidates(backbone: TappedBackbone) -> list[int]:
    """Taps a hint may use: all but the depthwise convs' outputs (a per-channel filtering of the
    map before, whose pointwise conv is the better tap)."""
    if isinstance(backbone, ConvStack):
        return [i for i, b in enumerate(backbone.conv_blocks()) if not b.depthwise]
    return list(range(len(backbone.tap_strides())))


def matching_taps(student: TappedBackbone, teacher: TappedBackbone, size: int = INSTANCE_SZ,
                  count: int = 2) -> list[tuple[int, int]]:
    """``(student_tap, teacher_tap)`` pairs, last first, indices into ``forward_taps``' lists.

    Teacher taps are taken last first; each is paired with the student's last tap (not a depthwise
    conv's, not later than the previous pair's) at the same stride whose ``size`` x ``size`` map has
    a centred crop of the teacher's or the other way round (sizes of equal parity). AlexNet against
    the student: conv5 and conv4 (22 and 24 px) face the last two pointwise convs (22, 24); Lite0:
    the adjust layer and stage 3 (both 32) face the same two (cropped to 22 and 24)."""
    s_strides, s_sizes = student.tap_strides(), student.tap_sizes(size)
    t_strides, t_sizes = teacher.tap_strides(), teacher.tap_sizes(size)
    s_cands = _hint_candidates(student)
    pairs: list[tuple[int, int]] = []
    limit = len(s_sizes)
    for ti in reversed(_hint_candidates(teacher)):
        if len(pairs) == count:
            break
        for si in reversed(s_cands):
            if si < limit and s_strides[si] == t_strides[ti] and (s_sizes[si] - t_sizes[ti]) % 2 == 0:
                pairs.append((si, ti))
                limit = si
                break
    return pairs


def _rms(t: torch.Tensor) -> torch.Tensor:
    return t.detach().float().pow(2).mean().sqrt().clamp_min(1e-12)


def _check_responses(student: SiamNet, teacher: SiamNet) -> None:
    """Response maps compare cell by cell after a centred crop only at one stride and centre."""
    gs = geometry(student, EXEMPLAR_SZ, INSTANCE_SZ)
    gt = geometry(teacher, EXEMPLAR_SZ, INSTANCE_SZ)
    if gs.stride != gt.stride:
        raise ValueError(f"student and teacher responses have different strides ({gs.stride} vs "
                         f"{gt.stride}): their maps cannot be aligned cell by cell")
    if abs(gs.offset - gt.offset) > gs.stride / 4 or (gs.response_sz - gt.response_sz) % 2:
        raise ValueError(f"student and teacher responses are not centred alike (sides {gs.response_sz} "
                         f"and {gt.response_sz}, offsets {gs.offset} and {gt.offset} px)")


class DistillModel(nn.Module):
    """Student + frozen teacher + hint adapters; ``forward(z, x)`` returns everything the loss needs:
    ``student`` and ``teacher`` head outputs (each at its own size), and ``hints``, a list of
    ``(adapted student tap, teacher tap / hint_scale)`` already centre-aligned (:meth:`hint_pairs`).
    Any backbones with ``forward_taps`` / ``tap_strides`` / ``tap_sizes`` will do; the two responses
    must share stride and centre (``ValueError`` otherwise)."""

    def __init__(self, student: SiamNet, teacher: SiamNet, hint_layers: int = 2) -> None:
        super().__init__()
        _check_responses(student, teacher)
        self.student = student
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.taps: list[tuple[int, int]] = []
        if hint_layers > 0:
            for net in (student, teacher):
                if not hasattr(net.backbone, "forward_taps"):
                    raise TypeError(f"hints need a backbone with forward_taps, not "
                                    f"{type(net.backbone).__name__} (set compress.hint_layers: 0)")
            self.taps = matching_taps(student.backbone, teacher.backbone, count=hint_layers)
        s_ch = self._tap_channels(student.backbone)
        t_ch = self._tap_channels(teacher.backbone)
        self.adapters = nn.ModuleList(nn.Conv2d(s_ch[si], t_ch[ti], 1) for si, ti in self.taps)
        # RMS of each teacher tap over the fitting crops (0: not fitted, each batch's own RMS);
        # not persistent: fit_adapters sets it again, from the same crops, when a run resumes
        self.register_buffer("hint_scale", torch.zeros(len(self.taps)), persistent=False)

    @staticmethod
    def _tap_channels(backbone: nn.Module) -> list[int]:
        """Channels of each ``forward_taps`` map (one probe through the network when not a ConvStack)."""
        if isinstance(backbone, ConvStack):
            return [b.out_channels for b in backbone.conv_blocks()]
        if not hasattr(backbone, "forward_taps"):
            return []
        param = next(backbone.parameters())
        was_training = backbone.training
        backbone.eval()
        with torch.no_grad():
            _, taps = backbone.forward_taps(torch.zeros(1, 3, 32, 32, device=param.device, dtype=param.dtype))
        backbone.train(was_training)
        return [int(t.shape[1]) for t in taps]

    @torch.no_grad()
    def fit_adapters(self, x: torch.Tensor, ridge: float = 1e-3, chunk: int = 16) -> list[float]:
        """Set every adapter to the ridge least-squares map from the student's tapped features to
        the teacher's on search crops ``x`` ``(N, 3, H, W)``; returns each hint loss after the fit.

        The student's features are those the loss sees in training (BN on batch statistics; a
        fresh student's running statistics say nothing), read from a copy so that its running
        statistics do not move. The teacher runs ``chunk`` crops at a time (a padded ImageNet
        backbone's early maps are large) and only the tapped maps are kept, centre-aligned.
        """
        if not self.taps:
            return []
        self.hint_scale.zero_()
        t_keep: list[list[torch.Tensor]] = [[] for _ in self.taps]
        for start in range(0, len(x), chunk):
            _, t_taps = self.teacher.backbone.forward_taps(x[start:start + chunk])
            for k, (_, ti) in enumerate(self.taps):
                t_keep[k].append(t_taps[ti])
        _, s_taps = copy.deepcopy(self.student.backbone).train().forward_taps(x)
        losses = []
        for k, (adapter, (si, _)) in enumerate(zip(self.adapters, self.taps)):
            s_map, t_map = align_centres(s_taps[si], torch.cat(t_keep[k]))
            self.hint_scale[k] = _rms(t_map)
            t_map = t_map / self.hint_scale[k]
            s = s_map.permute(0, 2, 3, 1).reshape(-1, s_map.shape[1]).double()
            t = t_map.permute(0, 2, 3, 1).reshape(-1, t_map.shape[1]).double()
            s1 = torch.cat([s, torch.ones(len(s), 1, dtype=s.dtype, device=s.device)], 1)
            gram = s1.T @ s1
            gram += ridge * gram.diagonal().mean() * torch.eye(len(gram), dtype=gram.dtype, device=gram.device)
            w = torch.linalg.solve(gram, s1.T @ t)                     # (C_s + 1, C_t)
            adapter.weight.copy_(w[:-1].T.reshape(adapter.weight.shape).to(adapter.weight.dtype))
            adapter.bias.copy_(w[-1].to(adapter.bias.dtype))
            losses.append(float(hint_loss(adapter(s_map), t_map)))
        return losses

    def hint_pairs(self, s_taps: list[torch.Tensor], t_taps: list[torch.Tensor]
                   ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``(adapter(student tap), teacher tap / hint_scale)`` per matched pair, centre-aligned:
        what :func:`hint_loss` compares."""
        pairs = []
        for k, (adapter, (si, ti)) in enumerate(zip(self.adapters, self.taps)):
            t = t_taps[ti]
            scale = self.hint_scale[k] if self.hint_scale[k] > 0 else _rms(t)
            pairs.append(align_centres(adapter(s_taps[si]), t / scale.to(t.dtype)))
        return pairs

    def train(self, mode: bool = True) -> "DistillModel":
        super().train(mode)
        self.teacher.eval()
        return self

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> dict[str, object]:
        with torch.no_grad():
            tz = self.teacher.backbone(z)
            if self.taps:
                tx, t_taps = self.teacher.backbone.forward_taps(x)
            else:
                tx, t_taps = self.teacher.backbone(x), []
            t_resp = self.teacher.head(tz, tx)
        sz = self.student.backbone(z)
        if self.taps:
            sx, s_taps = self.student.backbone.forward_taps(x)
        else:
            sx, s_taps = self.student.backbone(x), []
        s_resp = self.student.head(sz, sx)
        hints = self.hint_pairs(s_taps, t_taps)
        return {"student": s_resp, "teacher": t_resp, "hints": hints}


#: ``loss_fn(model, z, x, targets)`` -> ``(loss, stats)``, as ``training.trainer.LossFn``
DistillLoss = Callable[[nn.Module, torch.Tensor, torch.Tensor, "torch.Tensor | None"],
                       tuple[torch.Tensor, dict[str, float]]]


def distill_loss(cfg: CompressConfig, r_pos: float = 16.0, r_neg: float = 0.0, stride: int = 8,
                 offset: float = 0.0, hard_negatives: int = 0, hard_share: float = 0.5) -> DistillLoss:
    """Loss function for :class:`~siamtrack.training.Trainer` over a :class:`DistillModel`.

    ``stride`` and ``offset`` are the student's (``models.geometry``): its ground-truth labels;
    ``hard_negatives`` / ``hard_share`` weigh their hardest background cells (``TrainConfig``).
    Which terms apply follows the two heads' outputs (see the module docstring); the stats hold
    ``loss, gt, kd, hint``, plus ``kd_quality, kd_box`` and the ground-truth parts for a box head.
    """
    def loss_fn(model: nn.Module, z: torch.Tensor, x: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(z, x)
        s, t = out["student"], out["teacher"].float()
        gt, parts = ground_truth_loss(s, targets, r_pos, r_neg, stride, offset, hard_negatives, hard_share)
        kd = response_kd_loss(s[:, :1], t[:, :1], cfg.temperature)   # cls logits of a box head
        hint = sum((hint_loss(a, b.float()) for a, b in out["hints"]), torch.zeros((), device=z.device))
        loss = cfg.w_gt * gt + cfg.w_response * kd + cfg.w_hint * hint
        stats = {"gt": float(gt.detach()), "kd": float(kd.detach()), "hint": float(hint.detach())}
        if is_box_output(s) and is_box_output(t):
            quality, box = box_kd_loss(s, t)
            loss = loss + cfg.w_box * (quality + box)
            stats.update(kd_quality=float(quality.detach()), kd_box=float(box.detach()))
        return loss, {"loss": float(loss.detach()), **stats, **parts}
    return loss_fn
