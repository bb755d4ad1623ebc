"""Deployment: ONNX export of the two tracking graphs, int8 quantization, cached exports, and the
onnxruntime engine that runs them (:mod:`.runtime`). Imports: models, checkpoint, config, data.

Needs the ``deploy`` extra (``pip install -e '.[deploy]'``: onnx, onnxruntime).
"""
from .artifacts import cached_export, export_checkpoint
from .export import export_onnx, onnx_graphs
from .quantize import quantize_int8

__all__ = ["cached_export", "export_checkpoint", "export_onnx", "onnx_graphs", "quantize_int8"]
