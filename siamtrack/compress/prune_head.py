"""Channel surgery on the box head (:class:`~siamtrack.models.heads.BoxHead`) for the pruner.

The xcorr head has no channels of its own (one bias); the box head reads the backbone's embedding in
both towers and has its own widths:

* the embedding's channels (the last backbone unit) pass the depthwise correlation unchanged and
  feed each tower's first depthwise conv + BN and that block's pointwise conv (its inputs): pruning
  the embedding slices those (:func:`copy_head`);
* each tower block's pointwise outputs (+ BN) feed the next block's depthwise conv + BN and
  pointwise inputs, or the output conv (``cls_out`` / ``box_out``) after the last block: one
  *head unit* per tower and block, keyed ``"cls_tower.0"``... (:func:`head_units`).

The spec has one tower width (``head.width``) for both towers and every block, so all head units
keep the same number of channels; each chooses its own.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from ..models.heads import TOWER_BLOCK, head_type

# positions inside a tower block (see models.heads._separable_tower)
_DW, _DW_BN, _PW, _PW_BN, _PW_ACT = 0, 1, 3, 4, 5


def head_units(head: nn.Module) -> list[str]:
    """Keys of the head's prunable units (a tower block's pointwise outputs); none for a head without
    towers (xcorr): its ``HeadType.towers`` says which there are."""
    return [f"{tower}.{k}" for tower in head_type(head).towers for k in range(int(getattr(head, "tower", 0)))]


def _block(head: nn.Module, key: str) -> list[nn.Module]:
    tower, k = key.rsplit(".", 1)
    seq = getattr(head, tower)
    return list(seq)[int(k) * TOWER_BLOCK:(int(k) + 1) * TOWER_BLOCK]


def head_importance(head: nn.Module, criterion: str,
                    taylor_scores: Mapping[int | str, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """One score per channel of each head unit, the same criteria as the backbone's units."""
    scores = []
    for key in head_units(head):
        block = _block(head, key)
        if criterion == "taylor":
            if taylor_scores is None or key not in taylor_scores:
                raise ValueError(f"criterion 'taylor' needs taylor_scores for the head unit {key!r}")
            s = taylor_scores[key].clone()
        elif criterion == "bn":
            s = block[_PW_BN].weight.detach().abs().clone()
        elif criterion == "l1":
            s = block[_PW].weight.detach().abs().sum(dim=(1, 2, 3))
        else:
            raise ValueError(f"unknown pruning criterion {criterion!r} (bn, l1 or taylor)")
        scores.append(s.float().cpu())
    return scores


def taylor_modules(head: nn.Module) -> dict[str, nn.Module]:
    """Per head unit, the module whose output is the unit's activation (the ReLU after the
    pointwise BN), for Taylor scores."""
    return {key: _block(head, key)[_PW_ACT] for key in head_units(head)}


def head_spec_width(head_spec: dict, channels: int, width: int) -> dict:
    """``head_spec`` with the tower ``width`` recorded only where it differs from ``channels``."""
    out = dict(head_spec)
    out.pop("width", None)
    if width != channels:
        out["width"] = int(width)
    return out


def copy_bn(old: nn.BatchNorm2d, new: nn.BatchNorm2d, idx: torch.Tensor) -> None:
    """The kept channels ``idx`` of ``old``'s affine parameters and running statistics into ``new``
    (the backbone's conv blocks use it too)."""
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name).data.copy_(getattr(old, name).detach()[idx])
    new.num_batches_tracked.copy_(old.num_batches_tracked)


def copy_head(old: nn.Module, new: nn.Module, embedding_keep: torch.Tensor,
              keep: Sequence[torch.Tensor] | None = None) -> None:
    """Copy ``old``'s weights into the narrower ``new`` head: the embedding channels
    ``embedding_keep`` at each tower's input, and per head unit (order of :func:`head_units`) the kept
    channels ``keep`` (``None``: all of them)."""
    towers = head_type(old).towers
    if not towers:  # no channels of its own
        new.load_state_dict(old.state_dict())
        return
    units = head_units(old)
    if keep is not None and len(keep) != len(units):
        raise ValueError(f"need one index set per head unit ({len(units)}), got {len(keep)}")
    kept = dict(zip(units, keep)) if keep is not None else {}
    for tower, out_name in towers.items():
        idx_in = embedding_keep
        for k in range(int(old.tower)):
            key = f"{tower}.{k}"
            o, n = _block(old, key), _block(new, key)
            idx_out = kept.get(key, torch.arange(old.width))
            n[_DW].weight.data.copy_(o[_DW].weight.detach()[idx_in])
            copy_bn(o[_DW_BN], n[_DW_BN], idx_in)
            n[_PW].weight.data.copy_(o[_PW].weight.detach()[idx_out][:, idx_in])
            copy_bn(o[_PW_BN], n[_PW_BN], idx_out)
            idx_in = idx_out
        o_out, n_out = getattr(old, out_name), getattr(new, out_name)
        n_out.weight.data.copy_(o_out.weight.detach()[:, idx_in])
        n_out.bias.data.copy_(o_out.bias.detach())
