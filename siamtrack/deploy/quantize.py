"""int8 post-training static quantization of the search graph with onnxruntime's tools.

Only the search graph is quantized: it runs every frame, while the exemplar graph runs once per
sequence, so an int8 exemplar would buy no speed and would put its rounding error into every
frame's kernel. Format: QDQ (onnxruntime fuses it into QLinearConv), weights int8 per output
channel, activations uint8 (the fast u8s8 path on x86) calibrated with min/max on real search crops.
``reduce_range`` (7-bit weights) avoids the u8s8 overflow of x86 CPUs without VNNI, so one file runs
correctly everywhere. The xcorr head (and what follows it) stays fp32: its "weights" are the kernel
input, which calibration cannot see, and it is a small share of the MACs.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from torch import nn

from ..config import TrackerConfig
from ..tracking.engines import OrtEngine, read_manifest
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


def quantize_int8(net: nn.Module, cfg: TrackerConfig, folder: str | Path, calibration: Crops,
                  check: Crops) -> dict[str, Any]:
    """Add ``search_int8.onnx`` to an exported ``folder`` and record it in its manifest.

    ``net`` is the PyTorch network the folder was exported from; the int8 graphs' difference to it
    on ``check`` is recorded (not bounded: the accuracy change is measured on tracking, not here).
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
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=_kernel_consumers(onnx.load(str(prepared))),
                        calibrate_method=CalibrationMethod.MinMax)
    int8 = OrtEngine(folder / EXEMPLAR_FILE, folder / SEARCH_INT8_FILE, precision="int8")
    manifest = read_manifest(folder)
    manifest["models"]["int8"] = {
        "exemplar": EXEMPLAR_FILE, "search": SEARCH_INT8_FILE,
        "calibration": {"data": calibration.data, "batches": len(calibration.x) // cfg.scale_num,
                        "method": "MinMax", "format": "QDQ", "per_channel": True, "reduce_range": True,
                        "weights": "int8", "activations": "uint8",
                        "fp32_parts": "exemplar graph; xcorr head"},
        "check": compare_with_torch(net, int8, check, cfg.scale_num),
    }
    write_manifest(folder, manifest)
    return manifest
