"""The interface between the training pipeline and the stages it runs.

A stage is a function ``stage(ctx) -> SiamNet``; ``ctx`` is a :class:`StageContext`, which
:class:`siamtrack.pipeline.Pipeline` implements. Stage packages (``compress``) depend on this
protocol, not on the pipeline, so imports run one way: ``pipeline`` -> ``compress`` -> ``training``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch
from torch.utils.data import Dataset

from ..config import DataConfig, ExperimentConfig, TrainConfig
from ..models import SiamNet


class StageContext(Protocol):
    """What a stage may use of the run: its settings, earlier stages' networks and results, and the
    shared fit / finish steps (resumable training, evaluation, ``final.pth``)."""

    cfg: ExperimentConfig
    resume: bool
    nets: dict[str, SiamNet]
    results: dict[str, dict[str, Any]]

    def stage_dir(self, stage: str) -> Path:
        """``<run>/<stage>``."""

    def finished(self, stage: str) -> SiamNet | None:
        """The stage's network when ``--resume`` finds it complete (its results row recorded), else ``None``."""

    def teacher(self) -> SiamNet:
        """The teacher: loaded, reused or trained."""

    def dataset(self, data_cfg: DataConfig) -> Dataset:
        """Training pairs from ``data_cfg`` cut with the run's tracker crop settings."""

    def fit(self, stage: str, model: torch.nn.Module, net: SiamNet, loss_fn: Any = None,
            train_cfg: TrainConfig | None = None, data_cfg: DataConfig | None = None,
            run_dir: Path | None = None, extra_meta: Mapping[str, Any] | None = None) -> tuple[SiamNet, dict]:
        """Fit ``model`` (resumable); returns ``(net, meta)``."""

    def train_stage(self, stage: str, model: torch.nn.Module, net: SiamNet, loss_fn: Any = None,
                    train_cfg: TrainConfig | None = None,
                    extra_meta: Mapping[str, Any] | None = None) -> SiamNet:
        """Fit, evaluate and write the stage's ``final.pth``."""

    def finish_stage(self, stage: str, net: SiamNet, meta: Mapping[str, Any]) -> SiamNet:
        """Evaluate ``net`` and write ``final.pth`` with its metrics."""


#: A pipeline stage: the run's context in, the stage's network out.
Stage = Callable[[StageContext], SiamNet]
