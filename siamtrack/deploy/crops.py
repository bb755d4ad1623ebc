"""Real exemplar / search crops for checking exported graphs and calibrating int8.

Crops come from SiamFC training pairs (:class:`~siamtrack.data.PairDataset`): the same crop
geometry as the tracker, the target at the search centre, on GOT-10k-layout sequences when a data
folder is available and on generated clips otherwise. The description returned with them goes into
the export's JSON, so a reader knows what a parity number or an int8 calibration was measured on.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import TrackerConfig


@dataclass
class Crops:
    """``z (N, 3, ez, ez)`` and ``x (N, 3, iz, iz)`` planar RGB uint8 crops (the engines' layout) and
    where they came from."""

    z: np.ndarray
    x: np.ndarray
    data: str


def default_data_root() -> Path | None:
    """The GOT-10k-layout data root: ``$SIAMTRACK_DATA`` when set, else ``../shared/data/got10k`` next
    to the repository or the current folder; ``None`` when absent (generated clips are used then)."""
    env = os.environ.get("SIAMTRACK_DATA")
    if env:  # authoritative when set, so a deployment (or a test) can opt out of the shared data
        candidates = [Path(env).expanduser()]
    else:
        candidates = [Path(__file__).resolve().parents[3] / "shared" / "data" / "got10k",
                      Path.cwd().parent / "shared" / "data" / "got10k"]
    return next((c for c in candidates if c.is_dir()), None)


def sample_crops(count: int, cfg: TrackerConfig, root: str | os.PathLike[str] | None = None,
                 subset: str = "train", seed: int = 0) -> Crops:
    """``count`` crop pairs from ``root/subset`` (GOT-10k layout) or, without data, generated clips."""
    import warnings

    from ..data import GOT10kSource, PairDataset, SyntheticSource

    sources = []
    where = f"synthetic clips (seed {seed})"
    if root is not None and (Path(root) / subset).is_dir():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # data audits are the training pipeline's business
            got = GOT10kSource(Path(root) / subset)
        if len(got):
            sources, where = [got], f"{Path(root).resolve() / subset} ({len(got)} sequences, seed {seed})"
    if not sources:
        sources = [SyntheticSource(max(8, count // 4), seed=seed)]
    pairs = PairDataset(sources, {sources[0].kind: 1.0}, pairs_per_epoch=count, exemplar_sz=cfg.exemplar_sz,
                        instance_sz=cfg.instance_sz, context=cfg.context, seed=seed)
    zs, xs = zip(*(pairs.sample(i)[:2] for i in range(count)))
    planar = (np.ascontiguousarray(np.stack(c).transpose(0, 3, 1, 2)) for c in (zs, xs))
    return Crops(*planar, f"{count} SiamFC pairs from {where}")
