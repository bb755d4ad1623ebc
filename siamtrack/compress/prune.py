"""Structured channel pruning that physically removes channels.

The backbones here are chains (conv blocks and max-pools, see ``siamtrack.models.backbones``), so the
dependency graph is simple and explicit, which is why this module walks the chain itself instead of
tracing the network with Torch-Pruning:

* removing output channel ``c`` of conv block ``i`` removes ``c`` from its BN and the input channel
  ``c`` of the next conv block (pools pass channels through);
* a depthwise block ties its channels to its producer's, so the producer and its depthwise
  followers form one *unit* pruned together;
* grouped convolutions keep equal group sizes: a unit's channels are split into
  ``lcm(groups of the producer, groups of the consumer)`` contiguous partitions and the same number of
  channels is removed from each;
* the last block's channels are the embedding: the cross-correlation sums over them, so they can be
  pruned as well (both branches share the backbone). A box head reads them in both towers (its first
  depthwise conv + BN and pointwise inputs are sliced with them), and its towers' own pointwise
  widths are units too (:mod:`.prune_head`), pruned by the same keep ratio.

The result is a plain :class:`~siamtrack.models.SiamNet` rebuilt by ``build_model`` from the new
widths; ``model_spec`` of it is what a checkpoint stores.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn

from ..models import ConvBlock, ConvStack, SiamNet, build_model, model_spec
from ..models.profile import count_macs
from .prune_head import copy_bn, copy_head, head_importance, head_spec_width, head_units, taylor_modules

Criterion = str  # "bn" | "l1" | "taylor"
#: Taylor scores: backbone conv block index, or a head unit's key (``"cls_tower.0"``) -> per channel
TaylorScores = Mapping[int | str, torch.Tensor]


@dataclass
class PruneUnit:
    """Conv blocks whose output channels are removed together (a producer + its depthwise followers)."""

    blocks: list[int]         # indices into ConvStack.conv_blocks()
    consumer: int | None      # the next non-depthwise block (reads these channels), None for the embedding
    partitions: int           # channels are removed evenly from this many contiguous partitions
    channels: int

    @property
    def producer(self) -> int:
        return self.blocks[0]


def prune_units(backbone: ConvStack) -> list[PruneUnit]:
    """The chain's prunable units, in order."""
    blocks = backbone.conv_blocks()
    units: list[PruneUnit] = []
    i = 0
    while i < len(blocks):
        members = [i]
        j = i + 1
        while j < len(blocks) and blocks[j].depthwise:
            members.append(j)
            j += 1
        consumer = j if j < len(blocks) else None
        groups = [blocks[m].groups for m in members if not blocks[m].depthwise]
        if consumer is not None:
            groups.append(blocks[consumer].groups)
        parts = 1
        for g in groups:
            parts = math.lcm(parts, g)
        units.append(PruneUnit(members, consumer, parts, blocks[i].out_channels))
        i = j
    return units


# ---- importance -------------------------------------------------------------------------------
def channel_importance(net: SiamNet, criterion: Criterion = "bn",
                       taylor_scores: TaylorScores | None = None) -> list[torch.Tensor]:
    """One score per channel of each backbone unit (higher = keep); the box head's units are
    scored by :func:`~.prune_head.head_importance` with the same criteria.

    * ``bn``: |BN scale| of the producer (Network Slimming); falls back to ``l1`` for a block without BN.
    * ``l1``: L1 norm of the producer's filters (Li et al. 2017).
    * ``taylor``: first-order Taylor estimate |activation x gradient| accumulated by
      :func:`taylor_importance` (Molchanov et al. 2019).
    """
    backbone = _backbone(net)
    blocks = backbone.conv_blocks()
    scores = []
    for unit in prune_units(backbone):
        block = blocks[unit.producer]
        if criterion == "taylor":
            if taylor_scores is None:
                raise ValueError("criterion 'taylor' needs taylor_scores from taylor_importance()")
            s = taylor_scores[unit.producer].clone()
        elif criterion == "bn" and block.bn is not None:
            s = block.bn.weight.detach().abs().clone()
        elif criterion in ("bn", "l1"):
            s = block.conv.weight.detach().abs().sum(dim=(1, 2, 3))
        else:
            raise ValueError(f"unknown pruning criterion {criterion!r} (bn, l1 or taylor)")
        scores.append(s.float().cpu())
    return scores


def taylor_importance(net: SiamNet, batches: Iterable[Sequence[torch.Tensor]],
                      loss_fn: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
                      ) -> dict[int | str, torch.Tensor]:
    """Accumulate |a * dL/da| per output channel of every conv block (key: its index) and of every
    box-head unit (key: :func:`~.prune_head.head_units`) over ``batches`` of ``(z, x[, targets])``;
    ``loss_fn(output, targets or None)`` is the network's training loss."""
    backbone = _backbone(net)
    modules: dict[int | str, nn.Module] = dict(enumerate(backbone.conv_blocks()))
    modules.update(taylor_modules(net.head))
    acc = {i: torch.zeros(m.out_channels if isinstance(m, ConvBlock) else int(net.head.width))
           for i, m in modules.items()}
    saved: dict[int | str, list[torch.Tensor]] = {i: [] for i in modules}

    def keep(i: int | str):
        def hook(_m: nn.Module, _inp, out: torch.Tensor) -> None:
            out.retain_grad()
            saved[i].append(out)
        return hook

    handles = [m.register_forward_hook(keep(i)) for i, m in modules.items()]
    try:
        for z, x, *rest in batches:
            net.zero_grad(set_to_none=True)
            loss_fn(net(z, x), rest[0] if rest else None).backward()
            for i, outs in saved.items():
                for out in outs:
                    if out.grad is not None:
                        acc[i] += (out * out.grad).sum(dim=(2, 3)).abs().sum(0).detach().cpu()
                outs.clear()
    finally:
        for h in handles:
            h.remove()
        net.zero_grad(set_to_none=True)
    return acc


# ---- selection and surgery --------------------------------------------------------------------
def select_keep(scores: torch.Tensor, keep: int, partitions: int) -> torch.Tensor:
    """Sorted indices of the ``keep`` best channels, the same number from each partition."""
    n = scores.numel()
    if keep % partitions or n % partitions:
        raise ValueError(f"cannot keep {keep} of {n} channels evenly across {partitions} groups")
    size, per = n // partitions, keep // partitions
    kept = []
    for p in range(partitions):
        part = scores[p * size:(p + 1) * size]
        kept.append(torch.topk(part, per).indices.sort().values + p * size)
    return torch.cat(kept)


def prune_to_widths(net: SiamNet, keep: Sequence[torch.Tensor],
                    head_keep: Sequence[torch.Tensor] | None = None) -> SiamNet:
    """A new, smaller network holding the kept channels of every unit (weights copied, not masked).

    ``keep``: one index set per backbone unit (:func:`prune_units`). ``head_keep``: one per box-head
    unit (:func:`~.prune_head.head_units`, all of one size: the spec has one tower width), or
    ``None`` to keep the towers' widths; either way a box head's inputs follow the embedding."""
    backbone = _backbone(net)
    blocks = backbone.conv_blocks()
    units = prune_units(backbone)
    if len(keep) != len(units):
        raise ValueError(f"need one index set per unit ({len(units)}), got {len(keep)}")
    out_keep: dict[int, torch.Tensor] = {}
    for unit, idx in zip(units, keep):
        for b in unit.blocks:
            out_keep[b] = idx
    spec = model_spec(net)
    conv_specs = [layer for layer in spec["backbone"] if layer["type"] == "conv"]
    for b, layer in enumerate(conv_specs):
        layer["out"] = int(out_keep[b].numel())
    if head_units(net.head):
        sizes = {int(k.numel()) for k in head_keep} if head_keep is not None else {int(net.head.width)}
        if len(sizes) != 1:
            raise ValueError(f"every box-head unit keeps the same number of channels, got {sorted(sizes)}")
        spec["head"] = head_spec_width(spec["head"], int(out_keep[len(blocks) - 1].numel()), sizes.pop())
    new = build_model(spec)
    new_blocks = _backbone(new).conv_blocks()
    in_keep = torch.arange(backbone.in_channels)
    for b, (old, fresh) in enumerate(zip(blocks, new_blocks)):
        _copy_block(old, fresh, in_keep, out_keep[b])
        in_keep = out_keep[b]
    copy_head(net.head, new.head, in_keep, head_keep)
    new.name = net.name
    return new.train(net.training)


def _copy_block(old: ConvBlock, new: ConvBlock, in_idx: torch.Tensor, out_idx: torch.Tensor) -> None:
    w = old.conv.weight.detach()
    if old.depthwise:
        new.conv.weight.data.copy_(w[out_idx])
    else:
        in_per_group_old = old.in_channels // old.groups
        out_per_group_old = old.out_channels // old.groups
        rows = []
        for o in out_idx.tolist():
            g = o // out_per_group_old
            local = [c - g * in_per_group_old for c in in_idx.tolist()
                     if g * in_per_group_old <= c < (g + 1) * in_per_group_old]
            rows.append(w[o, local])
        new.conv.weight.data.copy_(torch.stack(rows))
    new.conv.bias.data.copy_(old.conv.bias.detach()[out_idx])
    if old.bn is not None and new.bn is not None:
        copy_bn(old.bn, new.bn, out_idx)


def _backbone(net: SiamNet) -> ConvStack:
    if not isinstance(net.backbone, ConvStack):
        raise TypeError("pruning needs a ConvStack backbone (built by siamtrack.models.build_model)")
    return net.backbone


# ---- budgeted pruning -------------------------------------------------------------------------
def per_frame_macs(net: SiamNet, scale_num: int = 3) -> int:
    return count_macs(net, scale_num=scale_num)["per_frame"]


def _round_keep(n: int, ratio: float, partitions: int, multiple: int = 1) -> int:
    """Channels kept of ``n``: ``n * ratio`` rounded to a multiple of ``lcm(partitions, multiple)``
    (at least one such step, never more than ``n``)."""
    step = math.lcm(partitions, max(1, int(multiple)))
    k = max(step, int(round(n * ratio / step)) * step)
    return min(n, k)


def prune_step(net: SiamNet, target_macs: float, criterion: Criterion = "bn",
               taylor_scores: TaylorScores | None = None,
               scale_num: int = 3, round_to: int = 1) -> SiamNet:
    """Prune every unit by one common keep ratio, the largest whose network fits ``target_macs``.

    The ratio is found by bisection on the real MAC count; within each unit the lowest-scoring
    channels go. A uniform ratio keeps the architecture balanced; the criterion decides *which*
    channels, the budget decides *how many*. ``round_to`` keeps every width a multiple of it
    (units already narrower keep their width): onnxruntime's x86 convolutions run channel blocks of
    8 (AVX2) in a blocked layout and fall back to a slower plain-NCHW path for other widths.
    """
    units = prune_units(_backbone(net))
    scores = channel_importance(net, criterion, taylor_scores)
    head_scores = head_importance(net.head, criterion, taylor_scores)

    def build(ratio: float) -> tuple[SiamNet, list[torch.Tensor]]:
        keep = [select_keep(s, _round_keep(u.channels, ratio, u.partitions, round_to), u.partitions)
                for u, s in zip(units, scores)]
        head_keep = None
        if head_scores:  # box-head towers: one width for all, each unit picks its own channels
            k = _round_keep(int(net.head.width), ratio, 1, round_to)
            head_keep = [select_keep(s, k, 1) for s in head_scores]
        return prune_to_widths(net, keep, head_keep), keep

    if per_frame_macs(net, scale_num) <= target_macs:
        return net
    lo, hi = 0.0, 1.0
    best = None
    for _ in range(14):
        mid = (lo + hi) / 2
        cand, _ = build(mid)
        if per_frame_macs(cand, scale_num) <= target_macs:
            lo, best = mid, cand
        else:
            hi = mid
    if best is None:
        best, _ = build(lo)
        if per_frame_macs(best, scale_num) > target_macs:
            raise ValueError(f"cannot reach {target_macs:.3g} MACs per frame by channel pruning alone")
    return best
