"""ONNX export of a SiamFC network as the two graphs the tracking loop runs, checked against PyTorch.

* ``exemplar.onnx``: ``z`` uint8 ``(B, 127, 127, 3)`` RGB -> ``kernel`` float ``(B, C, 6, 6)``;
* ``search.onnx``: ``x`` uint8 ``(S, 255, 255, 3)`` (dynamic ``S``, the scales) and ``kernel``
  ``(1, C, 6, 6)`` -> ``response`` float ``(S, 17, 17)``: search branch + xcorr head in one graph,
  with the exemplar embedding as an input because it changes per sequence, not per export (the
  xcorr is written as a MatMul, see :class:`_MatMulXCorr`).

The graphs take the tracker's uint8 NHWC crops as they are: the transpose and the cast happen inside,
where onnxruntime fuses them into its own layout change, instead of as two numpy passes per frame.
Every conv+BN pair is folded before export. A folder holds the graphs and ``siamtrack.json`` (the
tracker settings, the architecture, the source weights' hash and the parity check), which is what
:meth:`SiamFCTracker.from_pretrained` reads.
"""
from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import sha256_file
from ..config import TrackerConfig
from ..models.heads import XCorrHead
from ..models.inference import fuse_conv_bn
from ..models.profile import count_macs
from ..tracking.engines import MANIFEST, OrtEngine
from .crops import Crops

OPSET = 17
FORMAT_VERSION = 1
EXEMPLAR_FILE, SEARCH_FILE = "exemplar.onnx", "search.onnx"
#: fp32 parity bound on the response logits, ONNX Runtime vs the PyTorch network
FP32_TOLERANCE = 1e-4


class _ExemplarGraph(nn.Module):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.backbone(z.permute(0, 3, 1, 2).float())


class _MatMulXCorr(nn.Module):
    """:class:`XCorrHead` rewritten for onnxruntime, where a Conv whose weight is a graph input (the
    exemplar kernel) gets no prepacked path: im2col plus a GEMV took ~3.5 ms of the student's ~20.

    Same sum, other order: one MatMul with the kernel as a ``(h*w, C)`` matrix gives every kernel
    tap's response at every search position, then a conv with a constant 0/1 weight adds the taps
    at their offsets: ``sum_{c,i,j} K[c,i,j] X[c,y+i,x+j] = sum_{i,j} (K[:,i,j] . X[:,y+i,x+j])``.
    """

    def __init__(self, head: XCorrHead, kernel_hw: tuple[int, int]) -> None:
        super().__init__()
        self.out_scale, self.bias = head.out_scale, head.bias
        h, w = kernel_hw
        taps = torch.zeros(1, h * w, h, w)
        for i in range(h):
            for j in range(w):
                taps[0, i * w + j, i, j] = 1.0
        self.register_buffer("taps", taps)

    def forward(self, kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s, c, hx, wx = x.shape
        k = kernel.reshape(c, -1).transpose(0, 1)                    # (h*w, C)
        per_tap = torch.matmul(k, x.reshape(s, c, hx * wx))          # (S, h*w, hx*wx)
        per_tap = per_tap.reshape(s, k.shape[0], hx, wx)
        return F.conv2d(per_tap, self.taps) * self.out_scale + self.bias


class _SearchGraph(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
        return self.head(kernel, self.backbone(x.permute(0, 3, 1, 2).float()))[:, 0]


def _to_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], output: str,
             dynamic: dict[str, dict[int, str]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the head's shape checks are Python branches: traced once for the 1-exemplar case, as intended
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # the TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript too
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(module, args, buf, input_names=inputs, output_names=[output],
                          dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True,
                          dynamo=False)
    return buf.getvalue()


def onnx_graphs(net: nn.Module, cfg: TrackerConfig) -> tuple[bytes, bytes]:
    """Serialized ``(exemplar, search)`` graphs of ``net`` (any module with ``.backbone`` / ``.head``)."""
    fused = fuse_conv_bn(copy.deepcopy(net).cpu().float().eval())
    z = torch.zeros(1, cfg.exemplar_sz, cfg.exemplar_sz, 3, dtype=torch.uint8)
    x = torch.zeros(cfg.scale_num, cfg.instance_sz, cfg.instance_sz, 3, dtype=torch.uint8)
    with torch.no_grad():
        kernel = _ExemplarGraph(fused.backbone)(z)
        exemplar = _to_onnx(_ExemplarGraph(fused.backbone), (z,), ["z"], "kernel",
                            {"z": {0: "batch"}, "kernel": {0: "batch"}})
        head = _MatMulXCorr(fused.head, kernel.shape[-2:]) if type(fused.head) is XCorrHead else fused.head
        search = _to_onnx(_SearchGraph(fused.backbone, head), (x, kernel), ["x", "kernel"],
                          "response", {"x": {0: "scales"}, "response": {0: "scales"}})
    return exemplar, search


def compare_with_torch(net: nn.Module, engine: OrtEngine, crops: Crops, scale_num: int) -> dict[str, Any]:
    """Max abs differences between ``engine`` and the PyTorch ``net`` (on the CPU, unfused) on
    ``crops``: each exemplar against a batch of ``scale_num`` search crops, like the tracker."""
    ref = copy.deepcopy(net).cpu().float().eval()
    kernel_diff = response_diff = peak = 0.0
    n = len(crops.z)
    with torch.inference_mode():
        for i in range(n):
            z = crops.z[i:i + 1]
            x = crops.x[[(i + k) % n for k in range(scale_num)]]
            k_ref = ref.backbone(torch.from_numpy(z).permute(0, 3, 1, 2).float())
            r_ref = ref.head(k_ref, ref.backbone(torch.from_numpy(x).permute(0, 3, 1, 2).float()))[:, 0]
            k_ort = engine.embed_exemplar(z)
            r_ort = engine.respond(k_ort, x)
            kernel_diff = max(kernel_diff, float(np.abs(k_ort - k_ref.numpy()).max()))
            response_diff = max(response_diff, float(np.abs(r_ort - r_ref.numpy()).max()))
            peak = max(peak, float(r_ref.abs().max()))
    return {"response_max_abs_diff": response_diff, "kernel_max_abs_diff": kernel_diff,
            "response_max_abs": peak, "crops": n, "data": crops.data}


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """``siamtrack.json`` via a temporary file and a rename (never half-written)."""
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(manifest, fh, indent=2)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600
    os.replace(tmp, folder / MANIFEST)


def export_onnx(net: nn.Module, cfg: TrackerConfig, out_dir: str | os.PathLike[str], check: Crops,
                source: str | os.PathLike[str] | None = None, meta: Mapping[str, Any] | None = None,
                tolerance: float = FP32_TOLERANCE) -> dict[str, Any]:
    """Write the two fp32 graphs and ``siamtrack.json`` to ``out_dir``; returns the manifest.

    The graphs are compared with ``net`` on ``check`` crops first; a response difference above
    ``tolerance`` raises ``ValueError`` and writes nothing.
    """
    import onnx

    exemplar, search = onnx_graphs(net, cfg)
    parity = compare_with_torch(net, OrtEngine(exemplar, search), check, cfg.scale_num)
    if not parity["response_max_abs_diff"] < tolerance:
        raise ValueError(f"exported graphs disagree with PyTorch: max abs response difference "
                         f"{parity['response_max_abs_diff']:.3g} >= {tolerance:g} on {parity['data']}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / EXEMPLAR_FILE).write_bytes(exemplar)
    (out / SEARCH_FILE).write_bytes(search)
    manifest: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "tracker": asdict(cfg),
        "arch": _spec_or_none(net),
        "source": {"weights": str(Path(source).resolve()), "sha256": sha256_file(source)} if source else None,
        "stats": _stats(net, cfg),
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET},
        "inputs": {"z": "uint8 (B, exemplar_sz, exemplar_sz, 3) RGB",
                   "x": "uint8 (S, instance_sz, instance_sz, 3) RGB",
                   "kernel": "float32 exemplar embedding from exemplar.onnx (1, C, h, w)"},
        "models": {"fp32": {"exemplar": EXEMPLAR_FILE, "search": SEARCH_FILE,
                            "check": {**parity, "tolerance": tolerance}}},
        "meta": dict(meta or {}),
    }
    write_manifest(out, manifest)
    return manifest


def _spec_or_none(net: nn.Module) -> dict[str, Any] | None:
    from ..models import model_spec

    try:
        return model_spec(net)  # type: ignore[arg-type]
    except (TypeError, AttributeError):
        return None


def _stats(net: nn.Module, cfg: TrackerConfig) -> dict[str, int]:
    """What ``siamtrack speed`` reports for a model, kept here because the folder has no torch net."""
    from ..models import count_parameters

    macs = count_macs(copy.deepcopy(net).cpu().float().eval(), cfg.exemplar_sz, cfg.instance_sz,
                      cfg.scale_num)
    return {"macs": macs["per_frame"], "exemplar_macs": macs["exemplar"],
            "params": count_parameters(net), "scale_num": cfg.scale_num}
