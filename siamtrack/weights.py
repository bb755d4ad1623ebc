"""The weights registry: a name, a ``NAME@engine`` string or a path -> an engine the tracker runs.

This is the only module that knows about files: where shipped weights live (source tree, installed
package, ``$SIAMTRACK_WEIGHTS``), the export cache and exported ONNX folders. The tracker only runs
an :class:`~siamtrack.models.inference.Engine`; ``benchmark``, ``speed``, ``export`` and ``track``
all resolve their ``--weights`` strings here, so they accept the same strings.

Shipped weights are named, documented objects (in the spirit of torchvision's ``WeightsEnum``)::

    WEIGHTS["student"].path()        # the .pth file, wherever siamtrack is installed
    WEIGHTS["student"].metrics       # what it scored, for reports and model cards
    load("student@int8")             # Loaded(engine, config, ...), exported and cached on first use

Imports run down only: models, checkpoint, config, deploy (never tracking).
"""
from __future__ import annotations

import os
import site
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import torch

from .checkpoint import CheckpointError
from .config import TrackerConfig, from_dict
from .deploy.runtime import MANIFEST, PRECISIONS, is_export_folder
from .models.inference import BACKENDS, Engine, TorchEngine


@dataclass(frozen=True)
class PretrainedWeights:
    """One shipped checkpoint: its name, file, what it is and what it scored (val AO on the 8
    GOT-10k-layout val sequences, ``siamtrack benchmark``; see weights/MODEL_CARD.md)."""

    name: str
    file: str
    description: str
    metrics: Mapping[str, float] = field(default_factory=dict)
    config: str = ""  #: the experiments/<config>.yaml that trains it (default: the name)

    def candidates(self) -> list[Path]:
        """Where this file is looked for, in order (see :func:`search_dirs`)."""
        return [d / self.file for d in search_dirs()]

    def path(self) -> Path:
        """The first existing candidate, or a :class:`CheckpointError` saying what to do."""
        searched = self.candidates()
        for candidate in searched:
            if candidate.is_file():
                return candidate
        where = ", ".join(str(p) for p in searched)
        raise CheckpointError(
            f"no {self.name} weights found (looked for {where}); train them with "
            f"`python experiments/train.py --config experiments/{self.config or self.name}.yaml`, "
            f"set SIAMTRACK_WEIGHTS "
            f"to a folder holding {self.file}, or pass a checkpoint path")


#: The shipped weights by name (read-only).
WEIGHTS: Mapping[str, PretrainedWeights] = MappingProxyType({
    "teacher": PretrainedWeights(
        "teacher", "siamfc_teacher.pth",
        "EfficientNet-Lite0 (ImageNet) up to stage 3 + 1x1 adjust, xcorr of the centred 8x8 exemplar "
        "window; trained on 102 real sequences (data v3) + photos",
        {"val_ao": 0.449, "val_sr50": 0.517}, config="teacher_v3"),
    "student": PretrainedWeights(
        "student", "siamfc_student.pth",
        "student v5: student v4's network (a narrow EfficientNet-Lite0 with a stride-4 stem, 6,257 "
        "parameters, 30.7 M MACs per frame on 223-pixel crops) distilled on from student v4 at its "
        "tracking crop size on a GPU, for CPUs: 1.7x NanoTrack v2's speed on onnxruntime at 2 threads",
        {"val_ao": 0.505, "val_sr50": 0.606}, config="student_v5"),
    "student_v3": PretrainedWeights(
        "student_v3", "siamfc_student_v3.pth",
        "student v3, the default before student v5: a narrow EfficientNet-Lite0 (6,961 parameters, "
        "60.3 M MACs per frame) cut out of the teacher and distilled from it",
        {"val_ao": 0.486, "val_sr50": 0.607}, config="student_v3"),
    "student_v4": PretrainedWeights(
        "student_v4", "siamfc_student_v4.pth",
        "student v4: student v3 with a stride-4 stem and a 32-channel embedding on 223-pixel search "
        "crops (6,257 parameters, 30.7 M MACs per frame), distilled from the teacher on a CPU; the "
        "starting point of student v5", {"val_ao": 0.461, "val_sr50": 0.549},
        config="student_v4"),
    "student_v1": PretrainedWeights(
        "student_v1", "siamfc_student_v1.pth",
        "the previous student: distilled from the AlexNet and pruned depthwise-separable network "
        "(62.3 M MACs per frame)", {"val_ao": 0.368, "val_sr50": 0.395}, config="student"),
    "alexnet": PretrainedWeights(
        "alexnet", "siamfc_alexnet.pth",
        "the classic SiamFC AlexNet (2.3 M parameters) trained from scratch on 28 sequences: the "
        "teacher before the ImageNet one", {"val_ao": 0.394, "val_sr50": 0.432}, config="teacher"),
})

#: ``name -> file`` of the shipped weights (what older code called ``PRETRAINED``).
PRETRAINED = {name: w.file for name, w in WEIGHTS.items()}

#: ``WEIGHTS@VARIANT`` suffixes: the engine and precision a weights string asks for.
VARIANTS = {"torch": ("torch", "fp32"), "onnx": ("onnxruntime", "fp32"), "int8": ("onnxruntime", "int8")}

#: Where a wheel / ``pip install .`` puts the shipped weights (setup.cfg ``data_files``), relative to
#: the installation's data prefix.
INSTALLED_WEIGHTS = Path("share") / "siamtrack" / "weights"


def search_dirs() -> list[Path]:
    """Folders searched for named weights, in order: ``$SIAMTRACK_WEIGHTS``, the source tree's
    ``weights/`` (editable installs, checkouts), the installed copy (``<prefix>/share/siamtrack/weights``,
    user installs included), ``./weights``. The environment variable comes first so a deployment can
    point at its own copy."""
    dirs: list[Path] = []
    env = os.environ.get("SIAMTRACK_WEIGHTS")
    if env:
        dirs.append(Path(env).expanduser())
    dirs.append(Path(__file__).resolve().parents[1] / "weights")
    for prefix in (sysconfig.get_path("data"), sys.prefix, getattr(site, "USER_BASE", None)):
        if prefix:
            dirs.append(Path(prefix) / INSTALLED_WEIGHTS)
    dirs.append(Path.cwd() / "weights")
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def parse_weights(text: str | os.PathLike[str]) -> tuple[str, str | None, str | None]:
    """``"student@int8"`` -> ``("student", "onnxruntime", "int8")``; no suffix -> ``(text, None, None)``.

    The suffix (``@torch``, ``@onnx``, ``@int8``) lets one string name a model and how it runs, so
    ``--weights``, ``siamtrack speed --weights`` and ``siamtrack benchmark --trackers`` take variants
    without options of their own. Only a known suffix is split off (paths may contain ``@``).
    """
    key = str(text)
    source, sep, variant = key.rpartition("@")
    if sep and source and variant in VARIANTS:
        return (source, *VARIANTS[variant])
    return key, None, None


def resolve_weights(name_or_path: str | os.PathLike[str]) -> Path:
    """Path of named weights (``teacher`` / ``student``), of an explicit file or of an exported
    ONNX folder (one holding ``siamtrack.json``).

    Raises :class:`~siamtrack.checkpoint.CheckpointError` (a ``ValueError``) saying what to do when
    nothing is found, because a missing weights file is the first thing a new user meets.
    """
    key = str(name_or_path)
    if key in WEIGHTS:
        return WEIGHTS[key].path()
    path = Path(key).expanduser()
    if not (path.is_file() or is_export_folder(path)):
        names = ", ".join(repr(n) for n in WEIGHTS)
        raise CheckpointError(f"weights file not found: {path} (pass {names}, the path of a .pth "
                              f"checkpoint written by siamtrack or a folder written by `siamtrack export`)")
    return path


def variant_name(text: str | os.PathLike[str], path: Path, backend: str, precision: str) -> str:
    """Display / results-folder name: ``SiamFC-student``, ``SiamFC-student-onnx``, ``SiamFC-student-int8``
    (an export folder ``deploy/student``: ``SiamFC-student``, ``SiamFC-student-int8``)."""
    source = parse_weights(text)[0]
    base = f"SiamFC-{source}" if source in WEIGHTS else f"SiamFC-{path.stem if path.is_file() else path.name}"
    if precision == "int8":
        return base + "-int8"
    # an export folder's name already says what it is
    return base + "-onnx" if backend != "torch" and path.is_file() else base


def resolve_variant(text: str | os.PathLike[str], backend: str | None = None,
                    precision: str | None = None) -> tuple[Path, str, str]:
    """``(weights path or exported folder, backend, precision)`` for a weights string, nothing built.

    ``backend`` / ``precision`` win over the string's suffix; without either, exported folders and
    int8 run on onnxruntime, checkpoints on torch. Impossible pairs are a ``ValueError``.
    """
    source_text, suffix_backend, suffix_precision = parse_weights(text)
    path = resolve_weights(source_text)
    exported = is_export_folder(path)
    precision = precision or suffix_precision or "fp32"
    backend = backend or suffix_backend or ("onnxruntime" if exported or precision == "int8" else "torch")
    if backend not in BACKENDS or precision not in PRECISIONS:
        raise ValueError(f"unknown backend {backend!r} or precision {precision!r} (backends: "
                         f"{', '.join(BACKENDS)}; precisions: {', '.join(PRECISIONS)})")
    if backend == "torch" and (exported or precision != "fp32"):
        raise ValueError(f"{text}: {'an exported folder' if exported else 'int8'} runs on backend "
                         f"'onnxruntime', not 'torch'")
    return path, backend, precision


@dataclass(frozen=True)
class Resolved:
    """A weights string resolved to files, without loading anything: ``path`` is the checkpoint or
    exported folder the string names, ``source`` what the engine loads (``path`` itself, or for a
    checkpoint on onnxruntime the cached export of it)."""

    text: str
    path: Path
    source: Path
    backend: str
    precision: str
    name: str


def resolve(text: str | os.PathLike[str], backend: str | None = None, precision: str | None = None,
            name: str | None = None) -> Resolved:
    """Resolve ``text`` (``backend`` / ``precision`` win over its suffix); without either, exported
    folders and int8 run on onnxruntime, checkpoints on torch. Impossible pairs are a ``ValueError``.

    A checkpoint asked for on onnxruntime is exported (and, for int8, calibrated on the shared
    GOT-10k training crops when present, generated clips otherwise) into the cache keyed by its hash
    (:func:`siamtrack.deploy.cached_export`), once, so benchmark workers only load graphs.
    """
    path, backend, precision = resolve_variant(text, backend, precision)
    source = path
    if backend != "torch" and not is_export_folder(path):
        from .deploy.artifacts import cached_export
        from .deploy.runtime import require_deploy

        require_deploy("onnxruntime")
        source = cached_export(path, precision)
    return Resolved(str(text), path, source, backend, precision,
                    name or variant_name(text, path, backend, precision))


@dataclass
class Loaded:
    """What a tracker needs from a weights string: the engine, its settings and where it came from."""

    engine: Engine
    config: TrackerConfig
    meta: dict[str, Any]
    arch: dict[str, Any] | None
    net: torch.nn.Module | None        # the trained network (torch backend), else None
    resolved: Resolved

    @property
    def export_folder(self) -> Path | None:
        return self.resolved.source if self.resolved.backend != "torch" else None


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def engine_for(net: torch.nn.Module, config: TrackerConfig, backend: str = "torch",
               device: str | torch.device | None = None) -> Engine:
    """An engine running ``net``: torch on ``device`` (default: cuda when available), or onnxruntime
    on the CPU from graphs exported in memory (needs the ``deploy`` extra)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    default = default_device() if backend == "torch" else torch.device("cpu")
    dev = torch.device(device) if device is not None else default
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available; use --device cpu")
    if backend == "torch":
        return TorchEngine(net.to(dev).eval(), dev)
    if dev.type != "cpu":
        raise ValueError(f"backend 'onnxruntime' runs on the CPU here, not on {dev}; "
                         f"pass device='cpu' (--device cpu)")
    from .deploy.runtime import OrtEngine, require_deploy

    require_deploy("onnxruntime")
    require_deploy("onnx")
    from .deploy.export import onnx_graphs  # the export only when this backend is asked for

    return OrtEngine(*onnx_graphs(net.eval(), config))


def load(text: str | os.PathLike[str], device: str | torch.device | None = None,
         backend: str | None = None, precision: str | None = None, name: str | None = None) -> Loaded:
    """Resolve ``text`` (:func:`resolve`) and load it: a checkpoint into a torch engine, an exported
    (or cached) folder into an onnxruntime one. The saved :class:`TrackerConfig` comes along, so
    settings tuned with the weights travel with them. Missing files raise ``CheckpointError``."""
    resolved = resolve(text, backend, precision, name)
    if resolved.backend == "torch":
        from .checkpoint import load_model
        from .models import model_spec

        net, cfg, meta = load_model(resolved.path)
        return Loaded(engine_for(net, cfg, "torch", device), cfg, meta, model_spec(net), net, resolved)
    from .deploy.runtime import load_exported

    engine, manifest = load_exported(resolved.source, resolved.precision)
    cfg = from_dict(TrackerConfig, manifest["tracker"])
    return Loaded(engine, cfg, dict(manifest.get("meta") or {}), manifest.get("arch"), None, resolved)


__all__ = ["INSTALLED_WEIGHTS", "Loaded", "MANIFEST", "PRETRAINED", "PretrainedWeights", "Resolved", "VARIANTS",
           "WEIGHTS", "default_device", "engine_for", "load", "parse_weights", "resolve", "resolve_variant",
           "resolve_weights",
           "search_dirs", "variant_name"]
