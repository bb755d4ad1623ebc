"""A small, resumable SiamFC trainer: SGD with exponential lr decay, atomic checkpoints, JSON-lines
log, progress bar, mixed precision on CUDA and DistributedDataParallel under ``torchrun``.

Resuming is exact: a training pair is a pure function of ``(seed, epoch, index)`` (see
``siamtrack.data.pairs``), batches are taken in index order, and the checkpoint stores the optimizer,
scheduler, RNG and the position inside the epoch. A run killed at any point and resumed reaches the
same weights as an uninterrupted one (tests/test_training.py kills runs with SIGKILL to show it).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from ..checkpoint import (CheckpointError, atomic_save, make_checkpoint, read_checkpoint,
                          remove_stale_temporaries)
from ..config import TrackerConfig, TrainConfig
from ..models import Geometry, SiamNet, geometry, head_type
from .losses import balanced_logistic_loss, box_head_loss

#: ``loss_fn(model, z, x, targets)`` -> ``(loss, stats)``; ``targets`` ``(B, 4)`` are the targets'
#: centres relative to the search-crop centre and their sizes, ``[dx, dy, w, h]`` search pixels
#: (the xcorr losses read ``dx, dy`` only), or ``None`` for centred targets
LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, "torch.Tensor | None"],
                  tuple[torch.Tensor, dict[str, float]]]


def siamfc_loss(r_pos: float = 16.0, r_neg: float = 0.0, stride: int = 8, hard_negatives: int = 0,
                hard_share: float = 0.5) -> LossFn:
    """The SiamFC objective: balanced logistic loss on the response map (optionally with the weight
    of the negatives leaning on the hardest background cells, ``losses.hard_negative_weights``)."""
    def loss_fn(model: nn.Module, z: torch.Tensor, x: torch.Tensor,
                offsets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        loss = balanced_logistic_loss(model(z, x), r_pos, r_neg, stride, offsets, hard_negatives, hard_share)
        return loss, {"loss": float(loss.detach())}
    return loss_fn


def box_loss(stride: int = 8, offset: float = 0.0) -> LossFn:
    """The box head's objective (:func:`~.losses.box_head_loss`); needs the targets' sizes."""
    def loss_fn(model: nn.Module, z: torch.Tensor, x: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if targets is None or targets.shape[-1] < 4:
            raise ValueError("the box head trains on [dx, dy, w, h] targets; the data gave none")
        return box_head_loss(model(z, x), targets, stride, offset)
    return loss_fn


def default_loss(net: nn.Module, cfg: TrainConfig, tracker_cfg: TrackerConfig) -> LossFn:
    """The objective that fits ``net``'s head: SiamFC's logistic loss or the box head's losses.
    Stride and offset are the network's (labels in search pixels must agree with it)."""
    geo = geometry(net, tracker_cfg.exemplar_sz, tracker_cfg.instance_sz)
    return LOSSES[head_type(net).loss](cfg, geo)


#: ``HeadType.loss`` -> the objective for a network of that geometry (``models.heads.HEAD_TYPES``)
LOSSES: dict[str, Callable[[TrainConfig, Geometry], LossFn]] = {
    "logistic": lambda cfg, geo: siamfc_loss(cfg.r_pos, cfg.r_neg, geo.stride, cfg.hard_negatives, cfg.hard_share),
    "box": lambda cfg, geo: box_loss(geo.stride, geo.offset),
}


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str | None = None) -> DistEnv:
    """Join the process group when launched by ``torchrun`` (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = torch.cuda.is_available() if device is None else device.startswith("cuda")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    return DistEnv(rank, world, local_rank, dev)


def exponential_gamma(lr: float, final_lr: float, epochs: int) -> float:
    """Per-epoch decay factor taking ``lr`` to ``final_lr`` over ``epochs`` (SiamFC's schedule)."""
    return (final_lr / lr) ** (1.0 / max(1, epochs))


class Trainer:
    """Optimises ``model`` (a ``SiamNet``, or a module that wraps one plus adapters) with ``loss_fn``.

    ``net`` is what gets saved (the ``SiamNet`` inside ``model``); checkpoints go to
    ``run_dir/last.pth`` (resumable, every ``cfg.checkpoint_every_s`` seconds and every epoch) and
    ``run_dir/final.pth`` (weights and metadata only).
    """

    def __init__(self, model: nn.Module, net: SiamNet, dataset: Dataset, cfg: TrainConfig,
                 run_dir: str | Path, tracker_cfg: TrackerConfig | None = None,
                 loss_fn: LossFn | None = None, meta: Mapping[str, Any] | None = None,
                 env: DistEnv | None = None, show_progress: bool = True) -> None:
        self.cfg = cfg
        self.env = env or setup_distributed()
        self.run_dir = Path(run_dir)
        self.net = net
        self.model = model.to(self.env.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.dataset = dataset
        self.tracker_cfg = tracker_cfg or TrackerConfig()
        self.loss_fn = loss_fn or default_loss(net, cfg, self.tracker_cfg)
        self.meta = dict(meta or {})
        self.checkpoint_every_s = cfg.checkpoint_every_s
        self.show_progress = show_progress and self.env.main
        self.optimizer = torch.optim.SGD(param_groups(self.model, cfg.lr, cfg.backbone_lr_scale),
                                         lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.ExponentialLR(
            self.optimizer, exponential_gamma(cfg.lr, cfg.final_lr, cfg.epochs))
        self.use_amp = cfg.amp and self.env.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.epoch = 0
        self.step_in_epoch = 0      # batches of the current epoch already applied
        self.global_step = 0
        self.history: list[dict[str, Any]] = []
        self.wall_s = 0.0
        self.ddp_model: nn.Module = self.model
        if self.env.world > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.env.local_rank] if self.env.device.type == "cuda" else None)

    # ---- checkpoints -------------------------------------------------------------------------
    @property
    def pairs_seen(self) -> int:
        """Training pairs applied so far, over all ranks."""
        return self.global_step * self.cfg.batch_size * self.env.world

    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pth"

    def _training_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "history": self.history, "wall_s": self.wall_s, "config": asdict(self.cfg),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def save(self, path: Path | None = None, with_training: bool = True) -> Path:
        """Atomic write (rank 0 only). ``with_training=False`` writes weights and metadata only."""
        path = path or self.last_path
        if self.env.main:
            meta = dict(self.meta, history=self.history, wall_s=round(self.wall_s, 1),
                        epochs_done=self.epoch, pairs_seen=self.pairs_seen)
            ckpt = make_checkpoint(self.net, self.tracker_cfg, meta,
                                   self._training_state() if with_training else None)
            atomic_save(ckpt, path)
        return path

    def resume(self, path: str | Path | None = None) -> bool:
        """Restore everything from ``path`` (default ``last.pth``); ``False`` if there is nothing to resume."""
        path = Path(path) if path else self.last_path
        if not path.exists():
            return False
        ckpt = read_checkpoint(path)
        state = ckpt.get("training")
        if not state:
            raise CheckpointError(f"{path}: holds weights only, no training state to resume from")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.epoch, self.step_in_epoch = int(state["epoch"]), int(state["step_in_epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state.get("history", []))
        self.wall_s = float(state.get("wall_s", 0.0))
        return True

    # ---- training ----------------------------------------------------------------------------
    def _loader(self) -> DataLoader:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)  # type: ignore[attr-defined]
        per_rank = self.cfg.batch_size
        start = (self.step_in_epoch * self.env.world) * per_rank + self.env.rank * per_rank
        # rank r takes batches r, r + world, ...: contiguous index blocks of one batch each
        indices = [i for b in range(start, len(self.dataset), per_rank * self.env.world)
                   for i in range(b, min(b + per_rank, len(self.dataset)))]
        sampler: Sampler[int] = _ListSampler(indices)
        return DataLoader(self.dataset, batch_size=per_rank, sampler=sampler,
                          num_workers=self.cfg.num_workers, drop_last=True,
                          pin_memory=self.env.device.type == "cuda",
                          persistent_workers=False)

    def _step(self, z: torch.Tensor, x: torch.Tensor, targets: torch.Tensor | None = None) -> dict[str, float]:
        dev = self.env.device
        fmt = torch.channels_last if self.cfg.channels_last else torch.contiguous_format
        z = z.to(dev, non_blocking=True).contiguous(memory_format=fmt)
        x = x.to(dev, non_blocking=True).contiguous(memory_format=fmt)
        if targets is not None:
            targets = targets.to(dev, non_blocking=True)
        with torch.autocast(dev.type, enabled=self.use_amp):
            loss, stats = self.loss_fn(self.ddp_model, z, x, targets)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite loss at step {self.global_step}: {stats}")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return stats

    def fit(self, epochs: int | None = None, max_steps: int | None = None) -> SiamNet:
        """Train until ``epochs`` (default ``cfg.epochs``) are done; ``max_steps`` stops early (tests)."""
        epochs = self.cfg.epochs if epochs is None else epochs
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.env.main:
            remove_stale_temporaries(self.last_path)  # left by a run killed mid-save
        log_path = self.run_dir / "log.jsonl"
        steps_done = 0
        last_ckpt = time.time()
        while self.epoch < epochs:
            self.model.train()
            loader = self._loader()
            total = len(self.dataset) // (self.cfg.batch_size * self.env.world)
            bar = tqdm(loader, total=total, initial=self.step_in_epoch, disable=not self.show_progress,
                       desc=f"epoch {self.epoch + 1}/{epochs}", unit="batch", dynamic_ncols=True)
            t_prev = time.time()
            for batch in bar:  # (z, x) or (z, x, targets)
                stats = self._step(*batch)
                self.step_in_epoch += 1
                self.global_step += 1
                steps_done += 1
                now = time.time()
                dt = now - t_prev
                self.wall_s += dt
                t_prev = now
                pairs_s = self.cfg.batch_size * self.env.world / max(dt, 1e-9)
                lr = self.optimizer.param_groups[0]["lr"]
                if self.env.main:
                    bar.set_postfix(loss=f"{stats['loss']:.4f}", pairs_s=f"{pairs_s:.1f}", lr=f"{lr:.2e}")
                    if self.global_step % max(1, self.cfg.log_every) == 0 or self.global_step == 1:
                        with open(log_path, "a", encoding="utf-8") as fh:
                            fh.write(json.dumps({"epoch": self.epoch, "step": self.global_step, "lr": lr,
                                                 "pairs_per_s": round(pairs_s, 2), "time": round(now, 1),
                                                 **{k: round(v, 5) for k, v in stats.items()}}) + "\n")
                if now - last_ckpt > self.checkpoint_every_s:
                    self.save()
                    last_ckpt = now
                if max_steps is not None and steps_done >= max_steps:
                    bar.close()
                    self.save()
                    return self.net
            bar.close()
            self.epoch += 1
            self.step_in_epoch = 0
            self.scheduler.step()
            record: dict[str, Any] = {"epoch": self.epoch, "lr": self.optimizer.param_groups[0]["lr"],
                                      "wall_s": round(self.wall_s, 1)}
            self.history.append(record)
            if self.env.main:
                with open(log_path, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps({"epoch_end": record}) + "\n")
            self.save()
            last_ckpt = time.time()
        self.net.eval()
        return self.net


def param_groups(model: nn.Module, lr: float, backbone_lr_scale: float = 1.0) -> list[dict[str, Any]]:
    """Trainable parameters in SGD groups: ImageNet-initialised layers (modules that expose
    ``pretrained_parameters()``) at ``lr * backbone_lr_scale``, everything else at ``lr``.
    The exponential schedule then decays both groups by the same factor."""
    pretrained: list[nn.Parameter] = []
    for m in model.modules():
        if hasattr(m, "pretrained_parameters"):
            pretrained += list(m.pretrained_parameters())
    ids = {id(p) for p in pretrained}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [{"params": rest, "lr": lr}]
    if pretrained and backbone_lr_scale != 1.0:
        groups.append({"params": pretrained, "lr": lr * backbone_lr_scale})
    elif pretrained:
        groups[0]["params"] = rest + pretrained
    return groups


class _ListSampler(Sampler[int]):
    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)
