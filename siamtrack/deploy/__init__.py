"""Deployment: ONNX export of the two tracking graphs, int8 quantization, cached exports.

Needs the ``deploy`` extra (``pip install -e '.[deploy]'``: onnx, onnxruntime). The runtime side, the
onnxruntime engine the tracker uses, lives in :mod:`siamtrack.tracking.engines`.
"""
from .artifacts import cached_export, export_checkpoint
from .export import export_onnx, onnx_graphs
from .quantize import quantize_int8

__all__ = ["cached_export", "export_checkpoint", "export_onnx", "onnx_graphs", "quantize_int8"]
