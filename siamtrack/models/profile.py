"""Multiply-accumulate counts of a Siamese tracker network, per tracked frame.

Counted with forward hooks on every ``nn.Conv2d`` (MACs = output elements x in_channels / groups x
kh x kw, the usual convention: bias adds, BN, ReLU and pooling are not counted) plus the
cross-correlation of the head, which is a functional ``conv2d`` that no module hook sees
(MACs = response elements x channels x exemplar-feature area; the same for the box head's depthwise
correlation, whose output has one map per channel instead of their sum); the box head's towers are
counted by the hooks on a probe of the correlation's output size. Measuring the real forward pass instead
of summing a formula keeps the count right for pruned and hand-written backbones alike, and the
compression code reuses this module for its MAC budget.
"""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from ..config import EXEMPLAR_SZ, INSTANCE_SZ, TrackerConfig
from .heads import head_type


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return int(output.numel()) * (module.in_channels // module.groups) * kh * kw


def backbone_macs(backbone: nn.Module, size: int, in_channels: int = 3) -> tuple[int, tuple[int, ...]]:
    """``(MACs, output shape)`` of one ``size`` x ``size`` crop through ``backbone``."""
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, output)  # type: ignore[arg-type]

    handles = [m.register_forward_hook(hook) for m in backbone.modules() if isinstance(m, nn.Conv2d)]
    try:
        param = next(backbone.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        was_training = backbone.training
        backbone.eval()
        with torch.inference_mode():
            out = backbone(torch.zeros(1, in_channels, size, size, device=device, dtype=dtype))
        backbone.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return total, tuple(out.shape)


def count_macs(net: nn.Module, exemplar_sz: int = EXEMPLAR_SZ, instance_sz: int = INSTANCE_SZ,
               scale_num: int = 3, scale_mode: str = "search") -> dict[str, int]:
    """MACs of a SiamFC-style net (``net.backbone`` + xcorr head) for the tracking loop.

    Returns a dict of integers:

    * ``exemplar``: one exemplar crop through the backbone (paid once, at ``init``);
    * ``search_backbone`` / ``xcorr`` / ``per_crop``: one search crop through the backbone, the
      cross-correlation with the cached exemplar embedding, and their sum;
    * ``search`` (= ``per_frame``): ``scale_num`` search crops, the cost of every ``update``;
    * ``scale_num``: search crops per frame (always 1 with a box head, which regresses the size,
      and with ``scale_mode="exemplar"``, where ``scale_num`` exemplar embeddings, paid at ``init``,
      each correlate with the one search crop).
    """
    backbone = getattr(net, "backbone", net)
    in_ch = int(getattr(backbone, "in_channels", 3))
    z_macs, z_shape = backbone_macs(backbone, exemplar_sz, in_ch)
    x_macs, x_shape = backbone_macs(backbone, instance_sz, in_ch)
    _, c, hz, wz = z_shape
    crop = int(getattr(getattr(net, "head", None), "exemplar_crop", 0) or 0)
    if crop:  # the head correlates the centred crop of the exemplar map only
        hz, wz = min(hz, crop), min(wz, crop)
    _, _, hx, wx = x_shape
    ho, wo = hx - hz + 1, wx - wz + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"search features {x_shape} smaller than exemplar features {z_shape}")
    xcorr = ho * wo * c * hz * wz
    head = getattr(net, "head", None)
    kind = head_type(head)
    scale_num = kind.crops_per_frame or scale_num
    if kind.towers:  # the head's own convolutions after the correlation
        xcorr += _tower_macs(head, kind.towers, c, ho)
    per_crop = x_macs + xcorr
    if kind.pyramid(scale_mode):  # the exemplar's scale pyramid replaces the crops
        per_frame = x_macs + scale_num * xcorr
        return {"exemplar": scale_num * z_macs, "search_backbone": x_macs, "xcorr": scale_num * xcorr,
                "per_crop": per_frame, "search": per_frame, "per_frame": per_frame, "scale_num": 1}
    return {"exemplar": z_macs, "search_backbone": x_macs, "xcorr": xcorr, "per_crop": per_crop,
            "search": scale_num * per_crop, "per_frame": scale_num * per_crop, "scale_num": scale_num}


def tracker_costs(net: nn.Module, cfg: TrackerConfig) -> dict[str, int]:
    """What ``siamtrack speed`` reports for ``net`` tracked with ``cfg`` and what an export stores for
    it (an exported folder has no torch net): ``macs`` per frame, ``exemplar_macs`` (once per
    sequence), ``params`` and ``scale_num`` (search crops per frame). Counted on a CPU copy, so
    ``net`` may live on any device and in any mode."""
    from .siamese import count_parameters

    macs = count_macs(copy.deepcopy(net).cpu().float().eval(), cfg.exemplar_sz, cfg.instance_sz,
                      cfg.scale_num, cfg.scale_mode)
    return {"macs": macs["per_frame"], "exemplar_macs": macs["exemplar"],
            "params": count_parameters(net), "scale_num": macs["scale_num"]}


def _tower_macs(head: nn.Module, towers: Mapping[str, str], channels: int, side: int) -> int:
    """MACs of a head's towers and the output convs they feed (``towers``: tower -> output conv, as
    its :class:`~.heads.HeadType` declares) on a ``side`` x ``side`` correlation map."""
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(module, output)  # type: ignore[arg-type]

    param = next(head.parameters())
    feat = torch.zeros(1, channels, side, side, device=param.device, dtype=param.dtype)
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d)]
    handles = [m.register_forward_hook(hook) for m in convs]
    was_training = head.training
    head.eval()
    try:
        with torch.inference_mode():
            for tower, out in towers.items():
                getattr(head, out)(getattr(head, tower)(feat))
    finally:
        head.train(was_training)
        for h in handles:
            h.remove()
    return total


def format_macs(macs: float) -> str:
    """``2719.3 M`` / ``8.16 G``: short human units for tables."""
    if macs >= 1e9:
        return f"{macs / 1e9:.2f} G"
    if macs >= 1e6:
        return f"{macs / 1e6:.1f} M"
    return f"{macs / 1e3:.1f} K"
