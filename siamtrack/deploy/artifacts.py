"""From a checkpoint to an exported folder: on request (``siamtrack export``) or cached on first use.

``SiamFCTracker.from_pretrained("student@onnx")`` needs ONNX graphs for a ``.pth``. They are built
once into ``$SIAMTRACK_CACHE`` (default ``~/.cache/siamtrack``) under a name that holds the
checkpoint's SHA-256, so retrained weights never reuse stale graphs, and the shipped ``weights/``
folder is never written to. Each cached folder is built in a temporary sibling and renamed into
place, so parallel benchmark workers and interrupted runs never see half an export.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..checkpoint import load_model, sha256_file
from .runtime import FORMAT_VERSION, MANIFEST, require_deploy
from .crops import default_data_root, sample_crops
from .export import export_onnx
from .quantize import DEFAULT_KEEP_FP32, DEFAULT_REDUCE_RANGE, INT8_RECIPE, quantize_int8

#: crop pairs for the parity check (val) and for int8 calibration (train)
CHECK_PAIRS, CALIBRATION_PAIRS = 24, 150


def export_checkpoint(weights: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                      int8: bool = False, data_root: str | os.PathLike[str] | None = None,
                      calibration_pairs: int = CALIBRATION_PAIRS, keep_fp32: str = DEFAULT_KEEP_FP32,
                      reduce_range: bool = DEFAULT_REDUCE_RANGE) -> dict[str, Any]:
    """Export a checkpoint to ``out_dir`` (fp32 graphs, plus int8 when asked); returns the manifest.

    The parity check uses crops from ``data_root/val`` and calibration crops from
    ``data_root/train`` (GOT-10k layout; default: :func:`~.crops.default_data_root`), generated clips
    when there is no such data. ``keep_fp32`` / ``reduce_range``: see :func:`~.quantize.quantize_int8`.
    """
    require_deploy("onnx")
    require_deploy("onnxruntime")
    net, cfg, meta = load_model(weights)
    root = data_root if data_root is not None else default_data_root()
    check = sample_crops(CHECK_PAIRS, cfg, root, subset="val", seed=1)
    manifest = export_onnx(net, cfg, out_dir, check, source=weights, meta=meta)
    if int8:
        calibration = sample_crops(calibration_pairs, cfg, root, subset="train", seed=0)
        manifest = quantize_int8(net, cfg, out_dir, calibration, check, keep_fp32=keep_fp32,
                                 reduce_range=reduce_range)
    return manifest


def cache_root() -> Path:
    return Path(os.environ.get("SIAMTRACK_CACHE", Path.home() / ".cache" / "siamtrack")).expanduser()


def cached_export(weights: str | os.PathLike[str], precision: str = "fp32") -> Path:
    """The cached export folder of ``weights`` holding ``precision`` graphs, built if missing."""
    weights = Path(weights)
    tag = INT8_RECIPE if precision == "int8" else precision
    # the format too: graphs cached by an older siamtrack take other inputs
    folder = cache_root() / "onnx" / f"{weights.stem}-{sha256_file(weights)[:16]}-{tag}-f{FORMAT_VERSION}"
    if (folder / MANIFEST).is_file():  # folders appear complete (rename), so a manifest means done
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        export_checkpoint(weights, tmp, int8=precision == "int8")
        tmp.chmod(0o755)  # mkdtemp's 0700 would keep other users off a shared cache
        try:
            os.rename(tmp, folder)
        except OSError:
            if not (folder / MANIFEST).is_file():  # another process finished first: keep theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder
