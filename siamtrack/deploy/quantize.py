"""int8 post-training static quantization of the search graph with onnxruntime's tools.

Only the search graph is quantized: it runs every frame, while the exemplar graph runs once per
sequence, so an int8 exemplar would buy no speed and would put its rounding error into every
frame's kernel. Format: QDQ (onnxruntime fuses it into QLinearConv), weights int8 per output
channel, activations uint8 (the fast u8s8 path on x86) calibrated with min/max on real search crops.
The xcorr head (and what follows it) stays fp32: its "weights" are the kernel input, which
calibration cannot see, and it is a small share of the MACs.

Default recipe: the depthwise convolutions stay fp32 (few MACs, memory-bound: int8 only adds
quantize/dequantize passes around them) and weights are 7-bit (``reduce_range``). On an AVX2 CPU
without VNNI, full 8-bit weights overflow the u8s8 kernels' 16-bit sums on some inputs: on the
79.5 M-MAC student's check crops (commit 931cd57) the largest response error was 1.5 with 8-bit
weights and 0.2 with 7-bit (``experiments/int8_variants.py``). Val AO of that student (fp32 0.407):
this recipe 0.407; everything quantized 0.420 (7-bit) / 0.413 (8-bit); depthwise kept with 8-bit
weights 0.408; depthwise and first conv kept (8-bit) 0.399. The shipped 62 M-MAC student: PyTorch
0.368, onnxruntime fp32 0.351, this recipe 0.354 (the spread is one sequence, UAV123_wakeboard5).
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from torch import nn

from ..config import TrackerConfig
from .runtime import OrtEngine, read_manifest
from .crops import Crops
from .export import EXEMPLAR_FILE, SEARCH_FILE, compare_with_torch, write_manifest

SEARCH_INT8_FILE = "search_int8.onnx"


def _batches(engine: OrtEngine, crops: Crops, scale_num: int) -> Iterator[dict[str, np.ndarray]]:
    """Tracker-shaped calibration inputs: ``scale_num`` search crops with one real exemplar kernel."""
    for i in range(0, len(crops.x) - scale_num + 1, scale_num):
        yield {"x": crops.x[i:i + scale_num], "kernel": engine.embed_exemplar(crops.z[i:i + 1])}


def _kernel_consumers(model: Any) -> list[str]:
    """Names of the nodes that depend on the ``kernel`` input (the xcorr head and after)."""
    tainted, names = {"kernel"}, []
    for node in model.graph.node:  # ONNX graphs are topologically sorted
        if tainted.intersection(node.input):
            tainted.update(node.output)
            names.append(node.name)
    return names


#: ``keep_fp32`` choices -> what stays fp32 besides the exemplar graph and the xcorr head:
#: ``depthwise`` keeps the grouped convolutions (few MACs, memory-bound, and int8 only adds
#: quantize/dequantize passes around them), ``depthwise+stem`` the first convolution too (its uint8
#: RGB input is already 8-bit). ``experiments/int8_variants.py`` times each one.
KEEP_FP32 = {"head": "", "depthwise": "depthwise convs", "depthwise+stem": "depthwise convs; first conv"}
#: the default recipe (see the module docstring for the measurements behind it)
DEFAULT_KEEP_FP32, DEFAULT_REDUCE_RANGE = "depthwise", True
#: tag of cached int8 exports: a changed default recipe makes a new cache entry, never a stale hit
INT8_RECIPE = f"int8-{DEFAULT_KEEP_FP32}-{'7' if DEFAULT_REDUCE_RANGE else '8'}bit"


def _fp32_nodes(model: Any, keep_fp32: str) -> list[str]:
    """Names of the nodes :func:`quantize_int8` leaves in fp32 for the ``keep_fp32`` choice."""
    if keep_fp32 not in KEEP_FP32:
        raise ValueError(f"keep_fp32 must be one of {', '.join(KEEP_FP32)}, got {keep_fp32!r}")
    names = _kernel_consumers(model)
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.name not in names]
    if keep_fp32 != "head":
        names += [n.name for n in convs
                  if any(a.name == "group" and a.i > 1 for a in n.attribute)]
    if keep_fp32 == "depthwise+stem" and convs:
        names.append(convs[0].name)
    return names


def quantize_int8(net: nn.Module, cfg: TrackerConfig, folder: str | Path, calibration: Crops,
                  check: Crops, keep_fp32: str = DEFAULT_KEEP_FP32,
                  reduce_range: bool = DEFAULT_REDUCE_RANGE) -> dict[str, Any]:
    """Add ``search_int8.onnx`` to an exported ``folder`` and record it in its manifest.

    ``net`` is the PyTorch network the folder was exported from; the int8 graphs' difference to it
    on ``check`` is recorded (not bounded: the accuracy change is measured on tracking, not here).
    ``keep_fp32`` (see :data:`KEEP_FP32`) and ``reduce_range`` are recorded with the calibration.
    """
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    folder = Path(folder)
    fp32 = OrtEngine(folder / EXEMPLAR_FILE, folder / SEARCH_FILE)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = _batches(fp32, calibration, cfg.scale_num)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "search_prepared.onnx"
        quant_pre_process(str(folder / SEARCH_FILE), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(folder / SEARCH_INT8_FILE), Reader(),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_fp32_nodes(onnx.load(str(prepared)), keep_fp32),
                        calibrate_method=CalibrationMethod.MinMax)
    int8 = OrtEngine(folder / EXEMPLAR_FILE, folder / SEARCH_INT8_FILE, precision="int8")
    manifest = read_manifest(folder)
    manifest["models"]["int8"] = {
        "exemplar": EXEMPLAR_FILE, "search": SEARCH_INT8_FILE,
        "calibration": {"data": calibration.data, "batches": len(calibration.x) // cfg.scale_num,
                        "method": "MinMax", "format": "QDQ", "per_channel": True,
                        "reduce_range": reduce_range, "weights": "int8", "activations": "uint8",
                        "keep_fp32": keep_fp32,
                        "fp32_parts": "; ".join(filter(None, ["exemplar graph; xcorr head", KEEP_FP32[keep_fp32]]))},
        "check": compare_with_torch(net, int8, check, cfg.scale_num, cfg.scale_mode),
    }
    write_manifest(folder, manifest)
    return manifest
