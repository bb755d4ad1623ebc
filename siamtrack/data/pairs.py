"""SiamFC training pairs: ``(z, x)`` crops sampled from a weighted mix of sources.

One pair (``PairDataset.sample``):

1. pick a source kind by ``DataConfig.weights`` (``got10k``, ``otb``, ``photos``, ``synthetic``),
   then a sequence uniformly among all sequences of that kind;
2. pick two usable frames at most ``max_frame_gap`` apart (either order; the same frame if the
   sequence has only one) -- or, for still photos, one photo and box;
3. crop as SiamFC: the exemplar is the square of side ``context_size(w, h)`` around the target
   resized to ``exemplar_sz`` (the scale the tracker uses), the search image the same scale with
   side ``context_size * instance_sz / exemplar_sz`` resized to ``instance_sz``; padding is the
   image's mean colour. Each crop side is stretched by ``1 + U(-stretch, stretch)`` and the search
   centre is shifted by ``U(-shift, shift)`` output pixels per axis (siamfc-pytorch's RandomCrop
   jitter); optional grey/colour augmentation. With ``scale`` the search crop's side is also scaled by
   ``exp(U(-scale, scale))``: the search crop is cut from the search frame's own box, so without it
   the target always fills the same share of the crop and a box head learns one size (measured:
   every regressed box near 64 x 64 px); at tracking time the crop follows the previous estimate.

**The target is near the centre of the search image** (within ``shift`` pixels per axis, its
centre at ``instance_sz / 2 - shift_xy``); each item carries that offset and the target's size in the
search crop, and the training label is the SiamFC map centred on it (or the box head's targets):
positive within ``r_pos`` = 16 search pixels (2 response cells at stride 8) of the target. A padded
backbone needs a wide shift (SiamRPN++: +-64 px), or it learns that the answer is always in the middle. The label itself is built by the loss in
``siamtrack.training``, not here.

**Negative pairs** (``negative``, DaSiamRPN, Zhu et al. 2018): with that probability the exemplar
is replaced by the target of another sequence (or photo), cut the same way, while the search crop
stays as drawn. Its target is then absent: ``__getitem__`` gives it size 0 (``[0, 0, 0, 0]``), and
the losses make the whole response map background. SiamFC's own pairs only teach the target against
the background around it; these teach "this is not the object you were shown", which is what a
tracker needs when another person or car walks past. (Measured on val, they did not rescue
OTB_Human3, where the teacher leaves the walker for the kerb beside him at frame 10: AO 0.030
with and without them; weights/MODEL_CARD.md.)

Determinism: ``__getitem__(index)`` is a pure function of ``(seed, epoch, index)`` through
``np.random.default_rng([seed, epoch, index])``, so results do not depend on the number of
DataLoader workers or on which worker runs an index; call :meth:`PairDataset.set_epoch` before each
epoch. Frames that cannot be decoded are reported once and another pair is drawn from the same
generator (bounded retries), which keeps the result deterministic too.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import DataConfig, TrackerConfig
from .photos import PhotoAugment, PhotoSource, photo_pair
from .sources import (BoxFilter, GOT10kSource, OTBSource, SequenceSource, SyntheticSource,
                      warn_data)
from .transforms import color_jitter, load_image, mean_color, target_crop, to_gray, to_tensor
from ..config import CONTEXT, EXEMPLAR_SZ, INSTANCE_SZ

log = logging.getLogger(__name__)


@dataclass
class PairInfo:
    """Where a pair came from (for tests, debugging and data audits)."""

    kind: str
    sequence: str
    frame_z: int            # 0-based frame indices in the sequence
    frame_x: int
    box_z: np.ndarray       # target [x, y, w, h] in exemplar-crop pixels
    box_x: np.ndarray       # target [x, y, w, h] in search-crop pixels
    attempts: int = 1       # 1 unless sequences without usable frames or bad images were hit
    negative_from: str = ""  # a negative pair: the sequence the exemplar was cut from ("" otherwise)

    @property
    def negative(self) -> bool:
        return bool(self.negative_from)


@dataclass
class _Kind:
    name: str
    weight: float
    sources: list[SequenceSource] = field(default_factory=list)
    offsets: np.ndarray = field(default_factory=lambda: np.zeros(1, dtype=np.int64))


class PairDataset(Dataset):
    """SiamFC exemplar/search pairs, ``len == pairs_per_epoch``, items ``(z, x)`` float32 tensors.

    ``z`` is ``(3, exemplar_sz, exemplar_sz)`` and ``x`` ``(3, instance_sz, instance_sz)``, RGB, CHW,
    raw values in ``[0, 255]`` (SiamFC uses no normalisation). See the module docstring for the
    sampling and for where the positive label is.
    """

    def __init__(self, sources: Sequence[SequenceSource], weights: Mapping[str, float] | None = None,
                 *, pairs_per_epoch: int = 2000, max_frame_gap: int = 100, exemplar_sz: int = EXEMPLAR_SZ,
                 instance_sz: int = INSTANCE_SZ, context: float = CONTEXT, stretch: float = 0.05,
                 shift: float = 8, scale: float = 0.0, negative: float = 0.0, seed: int = 0,
                 gray_prob: float = 0.0, color: float = 0.0,
                 photo_augment: PhotoAugment | None = None, max_retries: int = 100,
                 epoch: int = 0) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0 (it seeds numpy's SeedSequence), got {seed}")
        if pairs_per_epoch < 1:
            raise ValueError(f"pairs_per_epoch must be positive, got {pairs_per_epoch}")
        self.pairs_per_epoch = int(pairs_per_epoch)
        self.max_frame_gap = int(max_frame_gap)
        self.exemplar_sz = int(exemplar_sz)
        self.instance_sz = int(instance_sz)
        self.context = float(context)
        self.stretch = float(stretch)
        self.shift = float(shift)
        self.scale = float(scale)
        if not 0.0 <= negative <= 1.0:
            raise ValueError(f"negative is a probability in [0, 1], got {negative}")
        self.negative = float(negative)
        self.seed = int(seed)
        self.gray_prob = float(gray_prob)
        self.color = float(color)
        self.photo_augment = photo_augment or PhotoAugment()
        self.max_retries = int(max_retries)
        self.epoch = int(epoch)
        self.sources = list(sources)
        self._kinds = self._group(self.sources, weights or {})
        total = sum(k.weight for k in self._kinds)
        self._probs = np.array([k.weight / total for k in self._kinds])
        self._reported: set[str] = set()
        if self.negative > 0 and sum(int(k.offsets[-1]) for k in self._kinds) < 2:
            raise ValueError("negative pairs need at least two sequences or photos to cut exemplars from")

    @staticmethod
    def _group(sources: Sequence[SequenceSource], weights: Mapping[str, float]) -> list[_Kind]:
        kinds: dict[str, _Kind] = {}
        for src in sources:
            if len(src) == 0:
                continue
            if src.kind not in kinds:
                if src.kind not in weights:
                    log.warning("no weight for source kind %r in %s; using 1.0", src.kind,
                                dict(weights))
                weight = float(weights.get(src.kind, 1.0))
                if not (weight >= 0 and math.isfinite(weight)):
                    raise ValueError(f"weight of {src.kind!r} must be >= 0, got {weight}")
                kinds[src.kind] = _Kind(src.kind, weight)
            kinds[src.kind].sources.append(src)
        used = [k for k in kinds.values() if k.weight > 0]
        if not used:
            raise ValueError("no training data: every source is empty or has weight 0 "
                             f"(sources: {list(sources)}, weights: {dict(weights)})")
        for k in used:
            k.offsets = np.cumsum([0] + [len(s) for s in k.sources])
        return used

    @classmethod
    def from_config(cls, cfg: DataConfig, crops: TrackerConfig | None = None, *, box_filter: BoxFilter | None = None,
                    got10k_subset: str = "train", synthetic_frames: int = 48,
                    **kwargs) -> "PairDataset":
        """Build the sources ``cfg`` lists (GOT-10k roots, OTB roots, photos json files, synthetic
        clips) and mix them with ``cfg.weights``; crop sides and context come from the tracker's
        settings ``crops``, so training sees the crops tracking makes. ``kwargs`` override
        constructor arguments (e.g. ``gray_prob``, ``color``).

        A GOT-10k root may be the GOT-10k root (its ``got10k_subset`` split is used) or a folder
        of sequences directly, e.g. ``.../got10k/val``.
        """
        bf = box_filter or BoxFilter()
        crops = crops if crops is not None else TrackerConfig()
        sources: list[SequenceSource] = []
        sources += [GOT10kSource(r, got10k_subset, bf) for r in cfg.got10k_roots]
        sources += [OTBSource(r, bf) for r in cfg.otb_roots]
        sources += [PhotoSource(p, bf) for p in cfg.photos]
        if cfg.synthetic > 0:
            sources.append(SyntheticSource(cfg.synthetic, seed=cfg.seed,
                                           num_frames=synthetic_frames, box_filter=bf))
        args = dict(pairs_per_epoch=cfg.pairs_per_epoch, max_frame_gap=cfg.max_frame_gap,
                    exemplar_sz=crops.exemplar_sz, instance_sz=crops.instance_sz, context=crops.context,
                    stretch=cfg.stretch, shift=cfg.shift, scale=cfg.scale, negative=cfg.negative,
                    seed=cfg.seed)
        args.update(kwargs)
        return cls(sources, cfg.weights, **args)

    # -- Dataset protocol ------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's pairs; with persistent workers call it before creating iterators."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.pairs_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(z, x, target)``: the crops and ``[dx, dy, w, h]`` float32 search pixels, the target
        centre's offset from the search-crop centre (where the loss puts the positive label) and the
        target's size (what the box head regresses); ``[0, 0, 0, 0]`` for a negative pair (no target)."""
        if not 0 <= int(index) < self.pairs_per_epoch:
            raise IndexError(f"pair index {index} out of range [0, {self.pairs_per_epoch})")
        z, x, info = self.sample(int(index))
        if info.negative:
            return to_tensor(z), to_tensor(x), torch.zeros(4, dtype=torch.float32)
        bx = info.box_x
        target = torch.tensor([bx[0] + bx[2] / 2.0 - self.instance_sz / 2.0,
                               bx[1] + bx[3] / 2.0 - self.instance_sz / 2.0, bx[2], bx[3]],
                              dtype=torch.float32)
        return to_tensor(z), to_tensor(x), target

    # -- sampling --------------------------------------------------------------------------------

    def sample(self, index: int, epoch: int | None = None
               ) -> tuple[np.ndarray, np.ndarray, PairInfo]:
        """The pair for ``(seed, epoch, index)`` as RGB ``uint8`` HWC crops plus its :class:`PairInfo`."""
        epoch = self.epoch if epoch is None else int(epoch)
        rng = np.random.default_rng([self.seed, epoch, int(index)])
        for attempt in range(1, self.max_retries + 1):
            src, i = self._pick_sequence(rng)
            rec = src.sequence(i)
            usable = np.flatnonzero(rec.valid)
            if len(usable) == 0:
                continue
            if src.static:
                fz = fx = int(usable[rng.integers(len(usable))])
            else:
                fz, fx = self._pick_frames(usable, rng)
            img_z = self._load(src, i, rec.frames, fz)
            if img_z is None:
                continue
            img_x = img_z if fx == fz else self._load(src, i, rec.frames, fx)
            if img_x is None:
                continue
            if src.static:
                z, x, bz, bx = photo_pair(img_z, rec.boxes[fz], rng, exemplar_sz=self.exemplar_sz,
                                          instance_sz=self.instance_sz, context=self.context,
                                          stretch=self.stretch, shift=self.shift,
                                          aug=self.photo_augment)
            else:
                z, x, bz, bx = self._video_pair(img_z, rec.boxes[fz], img_x, rec.boxes[fx], rng)
            info = PairInfo(src.kind, src.name(i), fz, fx, bz, bx, attempts=attempt)
            if self.negative > 0 and rng.uniform() < self.negative:  # drawn last: x stays as drawn
                z, info = self._negative_exemplar(rng, src, i, x, info)
            return z, x, info
        raise RuntimeError(f"no usable pair after {self.max_retries} attempts for index {index} "
                           f"(epoch {epoch}): the sources have (almost) no readable, usable frames")

    def _pick_sequence(self, rng: np.random.Generator) -> tuple[SequenceSource, int]:
        """A source kind by weight, then one of its sequences uniformly: ``(source, index in it)``."""
        kind = self._kinds[int(rng.choice(len(self._kinds), p=self._probs))]
        j = int(rng.integers(kind.offsets[-1]))
        s = int(np.searchsorted(kind.offsets, j, side="right")) - 1
        return kind.sources[s], j - int(kind.offsets[s])

    def _negative_exemplar(self, rng: np.random.Generator, src_x: SequenceSource, i_x: int, x: np.ndarray,
                           info: PairInfo) -> tuple[np.ndarray, PairInfo]:
        """An exemplar cut around the target of another sequence (or photo) than the search crop's;
        grey when the search crop was made grey, so colour cannot tell a negative pair apart."""
        for _ in range(self.max_retries):
            src, i = self._pick_sequence(rng)
            if src is src_x and i == i_x:
                continue
            rec = src.sequence(i)
            usable = np.flatnonzero(rec.valid)
            if len(usable) == 0:
                continue
            f = int(usable[rng.integers(len(usable))])
            img = self._load(src, i, rec.frames, f)
            if img is None:
                continue
            z, bz = target_crop(img, rec.boxes[f], self.exemplar_sz, rng, context=self.context,
                                exemplar_sz=self.exemplar_sz, stretch=self.stretch, shift=0.0,
                                border_value=mean_color(img))
            if x.ndim == 3 and np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 1], x[..., 2]):
                z = to_gray(z)
            info.frame_z, info.box_z, info.negative_from = f, bz, src.name(i)
            return z, info
        raise RuntimeError("no usable exemplar for a negative pair: every other sequence is empty or unreadable")

    def _pick_frames(self, usable: np.ndarray, rng: np.random.Generator) -> tuple[int, int]:
        """Exemplar uniform over usable frames, search uniform over the others within the gap."""
        a = int(rng.integers(len(usable)))
        if self.max_frame_gap > 0:
            lo = int(np.searchsorted(usable, usable[a] - self.max_frame_gap, side="left"))
            hi = int(np.searchsorted(usable, usable[a] + self.max_frame_gap, side="right"))
        else:
            lo, hi = 0, len(usable)
        if hi - lo > 1:
            b = int(rng.integers(lo, hi - 1))
            b += b >= a  # skip the exemplar frame itself
        else:
            b = a
        return int(usable[a]), int(usable[b])

    def _video_pair(self, img_z: np.ndarray, box_z: np.ndarray, img_x: np.ndarray,
                    box_x: np.ndarray, rng: np.random.Generator
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        z, bz = target_crop(img_z, box_z, self.exemplar_sz, rng, context=self.context,
                            exemplar_sz=self.exemplar_sz, stretch=self.stretch, shift=0.0,
                            border_value=mean_color(img_z))
        x, bx = target_crop(img_x, box_x, self.instance_sz, rng, context=self.context,
                            exemplar_sz=self.exemplar_sz, stretch=self.stretch, shift=self.shift,
                            scale=self.scale, border_value=mean_color(img_x))
        if self.color > 0:
            z, x = color_jitter(z, rng, self.color), color_jitter(x, rng, self.color)
        if rng.uniform() < self.gray_prob:  # after the colour jitter, so grey pairs stay grey
            z, x = to_gray(z), to_gray(x)
        return z, x, bz, bx

    def _load(self, src: SequenceSource, i: int, frames: list, k: int) -> np.ndarray | None:
        img = load_image(frames[k])
        if img is None:
            key = f"{src.kind}:{src.name(i)}:{k}"
            if key not in self._reported:
                self._reported.add(key)
                where = frames[k] if isinstance(frames[k], str) else "in-memory frame"
                warn_data(f"{src.name(i)}: frame {k + 1} ({where}) could not be read; "
                          f"sampling another pair")
        return img

    # -- diagnostics -----------------------------------------------------------------------------

    def stats(self) -> dict[str, dict[str, int]]:
        """Per source kind: sequences, sequences with usable frames, frames and usable frames.

        Loads every sequence's annotations (not its images): use it to see what the size filter
        and absence labels leave before a long run. Called in the main process before the
        DataLoader starts, it also warms the per-process sequence cache that forked workers inherit.
        """
        out: dict[str, dict[str, int]] = {}
        for kind in self._kinds:
            row = out.setdefault(kind.name, dict(sequences=0, usable_sequences=0, frames=0,
                                                 usable_frames=0))
            for src in kind.sources:
                for i in range(len(src)):
                    rec = src.sequence(i)
                    row["sequences"] += 1
                    row["usable_sequences"] += int(rec.valid.any())
                    row["frames"] += len(rec.valid)
                    row["usable_frames"] += int(rec.valid.sum())
        return out

    def __repr__(self) -> str:
        mix = ", ".join(f"{k.name}: {sum(len(s) for s in k.sources)} seq x {p:.2f}"
                        for k, p in zip(self._kinds, self._probs))
        return f"PairDataset({self.pairs_per_epoch} pairs/epoch, epoch {self.epoch}; {mix})"
