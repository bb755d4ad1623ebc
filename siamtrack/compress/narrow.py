"""A narrow EfficientNet-Lite student whose channels are selected from a trained (or ImageNet) one.

A student that starts from random weights has to learn low-level features from a few hundred
tracking sequences; one cut out of a network that already has them starts where the teacher is.
:func:`narrow_from` copies, into a student built with ``widths`` (``models.efficientnet``), the
channels of a source backbone (the teacher's, or the ImageNet-initialised one) that matter most,
judged by BatchNorm scale ``|gamma|`` (network slimming, Liu et al. 2017), and physically slices
every convolution to them:

* the stem's outputs by its BN;
* a stage's outputs by the summed ``|gamma|`` of the projection BNs of all its source blocks (they
  add into one residual stream, so one choice holds for the whole stage);
* each kept block's hidden (expanded) channels by its depthwise BN; a block without expansion keeps
  its input's channels;
* the adjust layer's outputs (the embedding) by its BN; the head's learned bias is copied.

The student may have a stride-4 stem (``stem_stride=4``) where the source has Lite's stride 2: its
5x5 kernel starts from the source's 3x3 one, centred (an initialisation, not an equivalent network).

A stage keeps its first blocks (the first changes resolution and width; the later ones are residual
refinements, the part a narrow network can drop). BN running statistics are copied too but no
longer describe the narrow network (fewer channels feed each sum): the student trains its BNs.
"""
from __future__ import annotations

import torch
from torch import nn

from ..models import SiamNet
from ..models.efficientnet import EfficientLiteBackbone, MBConv, centre_kernel
from .prune_head import copy_bn


def _gamma(bn: nn.BatchNorm2d) -> torch.Tensor:
    return bn.weight.detach().abs()


def _top(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the ``keep`` largest scores, in channel order (so a full keep is the identity)."""
    if keep > len(scores):
        raise ValueError(f"cannot keep {keep} of {len(scores)} channels")
    return torch.sort(torch.topk(scores, keep).indices).values


def _copy_conv_bn(src: nn.Sequential, dst: nn.Sequential, out_idx: torch.Tensor,
                  in_idx: torch.Tensor | None) -> None:
    """``ConvBNAct`` ``dst`` = ``src`` sliced to outputs ``out_idx`` and inputs ``in_idx``
    (``None``: a depthwise conv, whose input channel is its output channel)."""
    w = src[0].weight.detach()[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    dst[0].weight.data.copy_(centre_kernel(w, dst[0].kernel_size[0]))  # a 3x3 stem into a 5x5 stride-4 one
    copy_bn(src[1], dst[1], out_idx)


def narrow_from(source: SiamNet, student: SiamNet) -> SiamNet:
    """``student`` (an :class:`EfficientLiteBackbone` net, usually with ``widths``) with every weight
    copied from the ``|gamma|``-selected channels of ``source`` (same variant and stage count)."""
    src, dst = source.backbone, student.backbone
    if not isinstance(src, EfficientLiteBackbone) or not isinstance(dst, EfficientLiteBackbone):
        raise TypeError("narrow_from needs EfficientNet-Lite backbones on both sides")
    if (src.variant, src.num_stages) != (dst.variant, dst.num_stages):
        raise ValueError(f"source is {src.variant} with {src.num_stages} stages, the student "
                         f"{dst.variant} with {dst.num_stages}")
    with torch.no_grad():
        prev = _top(_gamma(src.stem[1]), dst.stem[0].out_channels)
        _copy_conv_bn(src.stem, dst.stem, prev, torch.arange(3))
        for s_stage, d_stage in zip(src.stages, dst.stages):
            s_blocks: list[MBConv] = list(s_stage)
            d_blocks: list[MBConv] = list(d_stage)
            if len(d_blocks) > len(s_blocks):
                raise ValueError("the student has more blocks in a stage than the source")
            stage_scores = sum(_gamma(b.project[1]) for b in s_blocks)
            out_idx = _top(stage_scores, d_blocks[0].project[0].out_channels)
            for s_b, d_b in zip(s_blocks, d_blocks):
                if isinstance(d_b.expand, nn.Identity):
                    hid = prev
                else:
                    hid = _top(_gamma(s_b.depthwise[1]), d_b.depthwise[0].out_channels)
                    _copy_conv_bn(s_b.expand, d_b.expand, hid, prev)
                _copy_conv_bn(s_b.depthwise, d_b.depthwise, hid, None)
                _copy_conv_bn(s_b.project, d_b.project, out_idx, hid)
                prev = out_idx
        adj_idx = _top(_gamma(src.adjust[1]), dst.adjust[0].out_channels)
        _copy_conv_bn(src.adjust, dst.adjust, adj_idx, prev)
        for name, tensor in source.head.state_dict().items():   # xcorr: the learned bias
            own = student.head.state_dict().get(name)
            if own is not None and own.shape == tensor.shape:
                own.copy_(tensor)
    return student
