"""ONNX export of a SiamFC network as the two graphs the tracking loop runs, checked against PyTorch.

* ``exemplar.onnx``: ``z`` uint8 ``(B, 3, 127, 127)`` RGB -> ``kernel`` float ``(B, C, 6, 6)``;
* ``search.onnx``: ``x`` uint8 ``(S, 3, 255, 255)`` (dynamic ``S``, the scales) and ``kernel``
  ``(1, C, 6, 6)`` -> ``response`` float ``(S, 17, 17)``: search branch + xcorr head in one graph,
  with the exemplar embedding as an input because it changes per sequence, not per export (the
  xcorr is written as a MatMul, see :class:`_MatMulXCorr`). With the box head the search graph has
  three outputs instead: ``cls`` ``(S, r, r)``, ``quality`` ``(S, r, r)`` (logits) and ``box``
  ``(S, 4, r, r)`` (l, t, r, b in search pixels); the engine stacks them into the ``(S, 6, r, r)`` the
  tracker reads (``siamtrack.models.heads.BOX_OUTPUTS``). Either way the last output is
  ``features``, the search embedding ``(S, C, 22, 22)`` the head correlated: the tracker's
  appearance term reads the chosen box's embedding from it (format 4; formats up to 3 lacked it
  and made the tracker run the exemplar graph on one more crop per frame).

The graphs take the tracker's planar uint8 crops as they are (``crop_squares`` writes planes, so no
transpose is left) and cast them inside. Format 1 took NHWC crops and transposed them in the graph:
~0.2 ms of a ~4.5 ms search pass on 2 cores; its folders are refused with a request to re-export.
Every conv+BN pair is folded before export, and an EfficientNet-Lite's input std into its stem
(:func:`~siamtrack.models.inference.fold_for_inference`). A folder holds the graphs and
``siamtrack.json`` (the tracker settings, the architecture, the source weights' hash and the parity
check), which is what :meth:`SiamFCTracker.from_pretrained` reads.
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
from torch import nn

from ..checkpoint import sha256_file
from ..config import TrackerConfig
from ..models.heads import XCorrHead, head_type
from ..models.inference import engine_output, fold_for_inference
from ..models.profile import tracker_costs
from ..models.siamese import exemplar_embedding
from .runtime import FORMAT_VERSION, MANIFEST, OrtEngine
from .crops import Crops

OPSET = 17
EXEMPLAR_FILE, SEARCH_FILE = "exemplar.onnx", "search.onnx"
#: fp32 parity bound on the response logits, ONNX Runtime vs the PyTorch network
FP32_TOLERANCE = 1e-4


class _ExemplarGraph(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = net.backbone, net.head

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return exemplar_embedding(self, z.float())


class _MatMulXCorr(nn.Module):
    """:class:`XCorrHead` rewritten for onnxruntime, where a Conv whose weight is a graph input (the
    exemplar kernel) gets no prepacked path: im2col plus a GEMV took ~3.5 ms of the student's ~20.

    Same sum, other order: ``sum_{c,i,j} K[c,i,j] X[c,y+i,x+j] = sum_i sum_j P[i,j,y+i,x+j]`` with
    ``P[i,j] = K[:,i,j] . X`` (one MatMul with the kernel as a ``(h*w, C)`` matrix: every tap's
    response at every search position). The shifts are constant 0/1 matrices: ``P @ cols[j]`` moves
    tap column ``j`` into place and sums over ``j``, ``rows[i] @ ...`` does the same for rows.
    Measured on a (3, 67, 22, 22) search embedding, 2 threads: 1,150 us as a Conv with the kernel as
    its weight, ~720 us with a constant one-output-channel Conv for the shifts, ~310 us like this.
    """

    def __init__(self, head: XCorrHead, channels: int, kernel_hw: tuple[int, int],
                 search_hw: tuple[int, int]) -> None:
        super().__init__()
        self.out_scale, self.bias = head.out_scale, head.bias
        (h, w), (hx, wx) = kernel_hw, search_hw
        # every shape but the batch as a constant: shapes read from the tensors trace into ~30
        # Shape/Gather/Unsqueeze/Concat nodes that onnxruntime runs on every frame (a few us each)
        self.channels, self.kernel_hw, self.search_hw = channels, (h, w), (hx, wx)
        ho, wo = hx - h + 1, wx - w + 1
        cols = torch.zeros(w, wx, wo)   # cols[j, x + j, x] = 1
        rows = torch.zeros(h, ho, hx)   # rows[i, y, y + i] = 1
        for j in range(w):
            cols[j, torch.arange(wo) + j, torch.arange(wo)] = 1.0
        for i in range(h):
            rows[i, torch.arange(ho), torch.arange(ho) + i] = 1.0
        self.register_buffer("cols", cols)
        self.register_buffer("rows", rows)

    def forward(self, kernel: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        c, (h, w), (hx, wx) = self.channels, self.kernel_hw, self.search_hw
        # K kernels against S crops, K or S being 1 (MatMul broadcasts): max(K, S) maps
        k = kernel.reshape(-1, c, h * w).transpose(1, 2)                  # (K, h*w, C)
        per_tap = torch.matmul(k, x.reshape(-1, c, hx * wx))              # (S, h*w, hx*wx)
        shifted = torch.matmul(per_tap.reshape(-1, h, w, hx, wx), self.cols).sum(2)  # (S, h, hx, wo)
        out = torch.matmul(self.rows, shifted).sum(1)                     # (S, ho, wo)
        return out.unsqueeze(1) * self.out_scale + self.bias


class _SearchGraph(nn.Module):
    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, x: torch.Tensor, kernel: torch.Tensor) -> tuple[torch.Tensor, ...]:
        features = self.backbone(x.float())
        out = head_type(self.head).split(self.head(kernel, features))
        return (*(out if isinstance(out, tuple) else (out,)), features)


#: The search graph's last output: the search embedding the head correlated (``(S, C, h, w)``),
#: for the tracker's appearance term (``Engine.respond_features``).
FEATURES_OUTPUT = "features"


def search_outputs(head: nn.Module) -> list[str]:
    """Output names of the search graph for ``head``: the head's, then :data:`FEATURES_OUTPUT`."""
    return [name for name, _ in head_type(head).outputs] + [FEATURES_OUTPUT]


def _to_onnx(module: nn.Module, args: tuple[torch.Tensor, ...], inputs: list[str], output: str | list[str],
             dynamic: dict[str, dict[int, str]]) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # the head's shape checks are Python branches: traced once for the 1-exemplar case, as intended
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        # the TorchScript exporter is deprecated in favour of dynamo, which needs onnxscript too
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(module, args, buf, input_names=inputs,
                          output_names=[output] if isinstance(output, str) else output,
                          dynamic_axes=dynamic, opset_version=OPSET, do_constant_folding=True,
                          dynamo=False)
    return buf.getvalue()


def onnx_graphs(net: nn.Module, cfg: TrackerConfig) -> tuple[bytes, bytes]:
    """Serialized ``(exemplar, search)`` graphs of ``net`` (any module with ``.backbone`` / ``.head``)."""
    fused = fold_for_inference(copy.deepcopy(net).cpu().float().eval())
    z = torch.zeros(1, 3, cfg.exemplar_sz, cfg.exemplar_sz, dtype=torch.uint8)
    x = torch.zeros(cfg.scale_num, 3, cfg.instance_sz, cfg.instance_sz, dtype=torch.uint8)
    with torch.no_grad():
        kernel = _ExemplarGraph(fused)(z)
        exemplar = _to_onnx(_ExemplarGraph(fused), (z,), ["z"], "kernel",
                            {"z": {0: "batch"}, "kernel": {0: "batch"}})
        features = fused.backbone(x.float())
        head = (_MatMulXCorr(fused.head, features.shape[1], kernel.shape[-2:], features.shape[-2:])
                if type(fused.head) is XCorrHead else fused.head)
        outputs = search_outputs(fused.head)
        search = _to_onnx(_SearchGraph(fused.backbone, head), (x, kernel), ["x", "kernel"], outputs,
                          {"x": {0: "scales"}, "kernel": {0: "kernels"},
                           **{name: {0: "scales"} for name in outputs}})
    return exemplar, search


def compare_with_torch(net: nn.Module, engine: OrtEngine, crops: Crops, scale_num: int,
                       scale_mode: str = "search") -> dict[str, Any]:
    """Max abs differences between ``engine`` and the PyTorch ``net`` (on the CPU, unfused) on
    ``crops``, batched like the tracker: each exemplar against ``scale_num`` search crops, or (scale
    mode ``exemplar``) ``scale_num`` exemplars against each search crop."""
    ref = copy.deepcopy(net).cpu().float().eval()
    kernel_diff = response_diff = features_diff = peak = 0.0
    n = len(crops.z)
    pyramid = head_type(net).pyramid(scale_mode)
    with torch.inference_mode():
        for i in range(n):
            batch = [(i + k) % n for k in range(scale_num)]
            z = crops.z[batch] if pyramid else crops.z[i:i + 1]
            x = crops.x[i:i + 1] if pyramid else crops.x[batch]
            k_ref = exemplar_embedding(ref, torch.from_numpy(z).float())
            f_ref = ref.backbone(torch.from_numpy(x).float())
            r_ref = engine_output(ref.head(k_ref, f_ref))  # what the engine's respond returns
            k_ort = engine.embed_exemplar(z)
            r_ort, f_ort = engine.respond_features(k_ort, x)
            kernel_diff = max(kernel_diff, float(np.abs(k_ort - k_ref.numpy()).max()))
            response_diff = max(response_diff, float(np.abs(r_ort - r_ref.numpy()).max()))
            features_diff = max(features_diff, float(np.abs(f_ort - f_ref.numpy()).max()))
            peak = max(peak, float(r_ref.abs().max()))
    return {"response_max_abs_diff": response_diff, "kernel_max_abs_diff": kernel_diff,
            "features_max_abs_diff": features_diff, "response_max_abs": peak, "crops": n, "data": crops.data}


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
    parity = compare_with_torch(net, OrtEngine(exemplar, search), check, cfg.scale_num, cfg.scale_mode)
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
        "stats": tracker_costs(net, cfg),  # what `siamtrack speed` reports; the folder has no torch net
        "exporter": {"torch": torch.__version__, "onnx": onnx.__version__, "opset": OPSET},
        "inputs": {"z": "uint8 (B, 3, exemplar_sz, exemplar_sz) RGB planes",
                   "x": "uint8 (S, 3, instance_sz, instance_sz) RGB planes",
                   "kernel": "float32 exemplar embedding from exemplar.onnx (1, C, h, w)"},
        "outputs": {name: ("float32 search embedding (S, C, H, W)" if name == FEATURES_OUTPUT else "float32 head output")
                    for name in search_outputs(net.head)},
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
