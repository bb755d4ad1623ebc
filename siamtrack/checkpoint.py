"""Self-describing checkpoints: architecture, tracker settings, provenance and metrics travel with
the weights.

Format (a dict of plain types and tensors, readable with ``torch.load(..., weights_only=True)``)::

    {"format": 1, "arch": {...spec...}, "tracker": {...TrackerConfig...},
     "state_dict": {...}, "meta": {"data": ..., "schedule": ..., "metrics": ..., "git": ...},
     "training": {...optional resumable state: optimizer, scheduler, RNG, epoch...}}

Files are written atomically (temporary file in the same folder, fsync, rename), so a crash never
leaves a half-written checkpoint behind.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Mapping

import torch

from .config import TrackerConfig, from_dict
from .models import SiamNet, build_model, model_spec

FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A weights file is missing, corrupt, unsafe or does not describe a siamtrack network."""


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary sibling, fsync, then rename over ``path``. The file gets the
    mode a plain ``open`` would give it (``0o666`` less the umask), not ``mkstemp``'s owner-only
    ``0o600``, so a checkpoint written on a shared machine is as readable as any other file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files a killed :func:`atomic_save` left next to ``path``.

    A SIGKILL during a save leaves ``.<name>.*.tmp`` behind (``path`` itself is intact); over hours
    of preemptions they would fill the disk. Call it only while nothing else writes ``path``.
    """
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.name}.*.tmp")) if path.parent.is_dir() else []
    for tmp in stale:
        tmp.unlink(missing_ok=True)
    return stale


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file's content: what result caches and exports are keyed on."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def plain_data(value: Any) -> Any:
    """``value`` with every leaf turned into a builtin type or a tensor, so ``weights_only`` loading
    accepts it (``torch.__version__`` is a ``str`` subclass that would otherwise make the file unloadable)."""
    if isinstance(value, torch.Tensor) or value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v) for v in value]
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:   # numpy / torch scalars
        return value.item()
    if hasattr(value, "tolist"):                                      # numpy arrays
        return value.tolist()
    for kind in (bool, int, float, str):                              # subclasses of builtins
        if isinstance(value, kind):
            return kind(value)
    return str(value)


def make_checkpoint(net: SiamNet, tracker: TrackerConfig | None = None,
                    meta: Mapping[str, Any] | None = None,
                    training: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ckpt: dict[str, Any] = {
        "format": FORMAT_VERSION,
        "arch": model_spec(net),
        "tracker": asdict(tracker or TrackerConfig()),
        "state_dict": {k: v.detach().cpu() for k, v in net.state_dict().items()},
        "meta": plain_data(dict(meta or {})),
    }
    if training is not None:
        ckpt["training"] = dict(training)
    return ckpt


def save_checkpoint(path: str | Path, net: SiamNet, tracker: TrackerConfig | None = None,
                    meta: Mapping[str, Any] | None = None,
                    training: Mapping[str, Any] | None = None) -> None:
    atomic_save(make_checkpoint(net, tracker, meta, training), path)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint dict; every failure is a :class:`CheckpointError` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        with warnings.catch_warnings():
            # garbage files trigger a "Detected pickle protocol" warning before the real error
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(f"{path}: refused to load (not a plain-data checkpoint; "
                              f"weights_only loading blocks code in pickles): {exc}".splitlines()[0]) from exc
    except Exception as exc:  # noqa: BLE001 - torch.load raises KeyError, RuntimeError, ... on garbage
        raise CheckpointError(f"{path}: corrupt or truncated weights file "
                              f"({type(exc).__name__}: {exc})".splitlines()[0]) from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: not a siamtrack checkpoint (format {FORMAT_VERSION} expected)")
    for key in ("arch", "tracker", "state_dict"):
        if key not in ckpt:
            raise CheckpointError(f"{path}: checkpoint lacks {key!r}")
    return ckpt


def model_from_checkpoint(ckpt: Mapping[str, Any], source: str = "checkpoint") -> SiamNet:
    """Rebuild the saved network exactly and load its weights (strict)."""
    try:
        net = build_model(ckpt["arch"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{source}: invalid architecture spec ({exc})") from exc
    try:
        net.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{source}: weights do not match the stored architecture ({first})") from exc
    return net.eval()


def load_model(path: str | Path) -> tuple[SiamNet, TrackerConfig, dict[str, Any]]:
    """``(network in eval mode, its tracker settings, its meta)`` from a checkpoint file."""
    ckpt = read_checkpoint(path)
    net = model_from_checkpoint(ckpt, str(path))
    try:
        tracker_cfg = from_dict(TrackerConfig, ckpt["tracker"])
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: invalid tracker settings ({exc})") from exc
    return net, tracker_cfg, dict(ckpt.get("meta", {}))
