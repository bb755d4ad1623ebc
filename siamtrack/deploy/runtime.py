"""The onnxruntime engine for exported graphs, and the folder format ``siamtrack export`` writes.

:class:`OrtEngine` runs two ONNX graphs (exemplar branch; search branch + xcorr head, which takes
the embedding as its second input) with onnxruntime, an optional dependency. It has the interface
of :class:`siamtrack.models.inference.Engine`: ``embed_exemplar(z)`` on ``(1, 3, 127, 127)`` uint8
planar crops, ``respond(kernel, x)`` on ``(S, 3, 255, 255)`` ones -> ``(S, r, r)`` float32 logits (or
``(S, 6, r, r)`` for a box head, stacked from its three graph outputs).
:mod:`siamtrack.weights` hands it to the tracker.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch


#: The JSON an exported folder holds next to its ONNX graphs (see :mod:`siamtrack.deploy.export`).
MANIFEST = "siamtrack.json"
#: Layout of exported folders: 2 takes planar ``(N, 3, H, W)`` uint8 crops (1 took NHWC ones); 3 lets
#: the search graph take several exemplar kernels (``scale_mode: exemplar``); 4 adds the search
#: embedding as the search graph's last output (``features``). Part of the export cache's key, so a
#: cached export of older graphs is made again, not reused.
FORMAT_VERSION = 4
#: Precisions an exported folder may hold: fp32 graphs, or an int8 search graph (exemplar in fp32).
PRECISIONS = ("fp32", "int8")

DEPLOY_HINT = "pip install -e '.[deploy]' (or: pip install onnx onnxruntime)"


class BackendUnavailable(ImportError, ValueError):
    """An optional backend's package is missing. A ``ValueError`` too, so the command line prints
    it as one ``siamtrack: error: ...`` line; an ``ImportError`` for code that checks for that."""


def require_deploy(module: str) -> Any:
    """``onnxruntime`` / ``onnx``, or :class:`BackendUnavailable` saying how to install them."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailable(f"ONNX export and the onnxruntime backend need the {module} package, "
                                 f"which is not installed; install the deploy extra: {DEPLOY_HINT}") from exc


class OrtEngine:
    """Two onnxruntime sessions on the CPU: ``exemplar`` (``z`` uint8 NCHW -> ``kernel``) and
    ``search`` (``x`` uint8 NCHW with a dynamic batch, ``kernel`` -> ``response`` (S, 17, 17) and
    ``features``, the search embedding).

    The sessions use as many intra-op threads as torch (``torch.get_num_threads()``) and are
    rebuilt when that changes, so ``torch.set_num_threads`` governs both backends alike and timing
    comparisons stay fair. ``exemplar`` / ``search`` are ONNX file paths or serialized models.
    """

    backend = "onnxruntime"
    device = torch.device("cpu")

    def __init__(self, exemplar: str | os.PathLike[str] | bytes,
                 search: str | os.PathLike[str] | bytes, precision: str = "fp32") -> None:
        self._ort = require_deploy("onnxruntime")
        self._models = (exemplar if isinstance(exemplar, bytes) else os.fspath(exemplar),
                        search if isinstance(search, bytes) else os.fspath(search))
        self.precision = precision
        self._threads = 0
        self._sessions: Sequence[Any] = ()
        self._ensure_sessions()

    def _ensure_sessions(self) -> None:
        threads = torch.get_num_threads()
        if threads == self._threads:
            return
        opts = self._ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # errors only: the QDQ fusions log harmless warnings
        # no busy-waiting: a spinning pool takes the cores from whatever runs beside the tracker.
        # Measured on 2 cores with student v5 at 2 threads: spinning inside a run only
        # (allow_spinning=1, force_spinning_stop=1) is ~10 % faster on a quiet machine (1.69x against
        # 1.53x NanoTrack v2, medians of 3 `siamtrack speed` runs) but 5.7 ms instead of 3.2 per update
        # of `siamtrack track` beside one CPU-bound process (experiments/busy_speed.py); spinning
        # between runs too (onnxruntime's default) also slows the other sessions of the process
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions = tuple(self._ort.InferenceSession(m, opts, providers=["CPUExecutionProvider"])
                               for m in self._models)
        # every output but the last (``features``): what ``respond`` asks for, so it copies no features
        self._head_names = [o.name for o in self._sessions[1].get_outputs()][:-1]
        self._threads = threads

    def embed_exemplar(self, z: np.ndarray) -> np.ndarray:
        self._ensure_sessions()
        return self._sessions[0].run(None, {"z": np.ascontiguousarray(z)})[0]

    def respond(self, kernel: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self._head_output(self._run_search(kernel, x, self._head_names))

    def respond_features(self, kernel: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        outs = self._run_search(kernel, x, None)
        return self._head_output(outs[:-1]), outs[-1]

    def _run_search(self, kernel: np.ndarray, x: np.ndarray, names: list[str] | None) -> list[np.ndarray]:
        """The search graph's outputs ``names`` (``None``: all; the head's, then ``features``)."""
        self._ensure_sessions()
        return self._sessions[1].run(names, {"x": np.ascontiguousarray(x), "kernel": kernel})

    @staticmethod
    def _head_output(outs: Sequence[np.ndarray]) -> np.ndarray:
        if len(outs) == 1:
            return outs[0]
        cls, quality, box = outs  # a box head's three outputs, as the torch engine stacks them
        return np.concatenate([cls[:, None], quality[:, None], box], axis=1)


def is_export_folder(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by ``siamtrack export`` (it holds ``siamtrack.json``)."""
    return Path(path).is_dir() and (Path(path) / MANIFEST).is_file()


def read_manifest(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The parsed ``siamtrack.json`` of an exported folder (``ValueError`` naming the file if unusable)."""
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable siamtrack export ({exc})".splitlines()[0]) from exc
    if not isinstance(manifest, dict) or "tracker" not in manifest or "models" not in manifest:
        raise ValueError(f"{path}: not a siamtrack export (needs 'tracker' and 'models')")
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: export format {manifest.get('format')!r}, this siamtrack reads format "
                         f"{FORMAT_VERSION} (planar crops, several exemplar kernels, the search embedding as an output); export the checkpoint "
                         f"again with `siamtrack export --weights CHECKPOINT --output {Path(folder)}`")
    return manifest


def load_exported(folder: str | os.PathLike[str], precision: str = "fp32") -> tuple[OrtEngine, dict[str, Any]]:
    """``(engine, manifest)`` for the ``precision`` graphs of an exported folder."""
    manifest = read_manifest(folder)
    models = manifest["models"].get(precision)
    if models is None:
        have = ", ".join(sorted(manifest["models"]))
        raise ValueError(f"{Path(folder) / MANIFEST}: no {precision} graphs (has: {have}); "
                         f"export the checkpoint again with `siamtrack export ... --int8`")
    engine = OrtEngine(Path(folder) / models["exemplar"], Path(folder) / models["search"], precision)
    return engine, manifest
