"""Training sequences from GOT-10k-layout folders, OTB-layout folders and synthetic clips.

Every source is ``Sequence``-like: ``len(source)`` sequences, ``source.sequence(i)`` returns a
:class:`SequenceRecord` ``(frames, boxes, valid)`` with ``frames`` a list of frame references (file
paths, or lazily rendered synthetic frames), ``boxes`` ``(N, 4)`` float64 ``[x, y, w, h]`` in 0-based
pixels and ``valid`` ``(N,)`` bool: the frames the pair sampler may use.

``valid`` folds together everything that makes a frame unusable: the target is absent
(``absence.label``, ``cover.label``, NaN or non-positive boxes), the frame file is missing, or the
box fails SiamFC's size filter (:class:`BoxFilter`). Data problems (missing frames, ground-truth
row counts that do not match the frames, malformed rows, unreadable first frames) are reported once
with the sequence name and frame number as a :class:`DataWarning` and skipped, never raised: a bad
file must not end a training run hours in.

Sequences are loaded lazily and memoised per process, so construction is cheap even for the full
GOT-10k train split and each DataLoader worker reads only what it samples.
"""
from __future__ import annotations

import ast
import logging
import math
import re
import warnings
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import NamedTuple, Sequence

import cv2
import numpy as np

from .synthetic import SyntheticClip, make_clip
from .transforms import Frame

log = logging.getLogger(__name__)

from ..layouts import list_images


class DataWarning(UserWarning):
    """A data problem that was skipped (missing frame, bad row, unreadable image)."""


def warn_data(message: str) -> None:
    """Report a skipped data problem as a :class:`DataWarning`.

    ``warnings`` rather than ``logging`` so tests can assert on it and identical reports are shown
    once per process; ``logging.captureWarnings(True)`` routes them into a training log.
    """
    warnings.warn(message, DataWarning, stacklevel=3)


def _frame_list(numbers: Sequence[int], limit: int = 5) -> str:
    """Short human list of 1-based frame numbers: ``3, 4, 9 (+12 more)``."""
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" (+{len(numbers) - limit} more)" if len(numbers) > limit else "")


# ----------------------------------------------------------------------------------------------
# the size filter


@dataclass(frozen=True)
class BoxFilter:
    """SiamFC's training-box filter (huanglianghua/siamfc-pytorch ``Pair._filter``).

    Tiny, huge, extreme-aspect or image-filling boxes make crops that are mostly blur or mostly
    padding, so they are not used. A box passes when both sides are in ``[min_side, max_side]``
    pixels, ``w / h`` is in ``[min_aspect, max_aspect]`` and its size relative to the image is in
    ``[min_frac, max_frac]``: with ``frac_of="side"`` (the default, as siamfc-pytorch) each side
    relative to the image side; with ``frac_of="area"`` the box area relative to the image area
    (stricter: it drops most small UAV targets). ``enabled=False`` keeps every finite positive box.
    """

    min_side: float = 20.0
    max_side: float = 500.0
    min_frac: float = 0.01
    max_frac: float = 0.5
    min_aspect: float = 0.25
    max_aspect: float = 4.0
    frac_of: str = "side"
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.frac_of not in ("side", "area"):
            raise ValueError(f"frac_of must be 'side' or 'area', got {self.frac_of!r}")

    def __call__(self, boxes: np.ndarray, image_size: tuple[float, float] | None) -> np.ndarray:
        """``(N,)`` bool: which ``[x, y, w, h]`` rows pass, for an image of ``(width, height)``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(boxes).all(axis=1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
            if not self.enabled:
                return ok
            if image_size is None:
                return np.zeros(len(boxes), dtype=bool)
            w, h = boxes[:, 2], boxes[:, 3]
            W, H = float(image_size[0]), float(image_size[1])
            ok &= (w >= self.min_side) & (h >= self.min_side)
            ok &= (w <= self.max_side) & (h <= self.max_side)
            aspect = w / np.maximum(h, 1e-9)
            ok &= (aspect >= self.min_aspect) & (aspect <= self.max_aspect)
            if self.frac_of == "side":
                fw, fh = w / W, h / H
                ok &= (fw >= self.min_frac) & (fh >= self.min_frac)
                ok &= (fw <= self.max_frac) & (fh <= self.max_frac)
            else:
                area = w * h / (W * H)
                ok &= (area >= self.min_frac) & (area <= self.max_frac)
        return ok


# ----------------------------------------------------------------------------------------------
# file helpers


def read_boxes(path: str | Path, name: str = "") -> np.ndarray:
    """Read a ground-truth file, one box per line, ``,``/tab/space-separated, tolerant of bad rows.

    4 numbers are ``x, y, w, h``; 8 numbers (a VOT polygon) become its axis-aligned bounding box.
    Empty, malformed or NaN rows become NaN rows (reported), so row ``i`` stays frame ``i``.
    """
    text = Path(path).read_text(encoding="utf-8", errors="replace").rstrip()
    lines = text.splitlines() if text else []
    boxes = np.full((len(lines), 4), np.nan, dtype=np.float64)
    bad: list[int] = []
    for i, line in enumerate(lines):
        parts = [p for p in re.split(r"[,\s;]+", line.strip()) if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            bad.append(i + 1)
            continue
        if len(values) == 4:
            boxes[i] = values
        elif len(values) == 8:
            xs, ys = values[0::2], values[1::2]
            boxes[i] = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        else:
            bad.append(i + 1)
    if bad:
        warn_data(f"{name or path}: malformed ground-truth rows at frames {_frame_list(bad)} "
                  f"in {path}; those frames are not used")
    return boxes


def read_label(path: str | Path, name: str, count: int) -> np.ndarray | None:
    """Read a one-number-per-line ``.label`` file; ``None`` if absent or unreadable (reported)."""
    path = Path(path)
    if not path.is_file():
        return None
    values = _read_column(path)
    if values is None:
        warn_data(f"{name}: cannot parse {path}; ignoring it")
        return None
    if len(values) != count:
        warn_data(f"{name}: {path.name} has {len(values)} rows for {count} ground-truth rows; "
                  f"using the overlap")
    return values


def _read_column(path: Path) -> np.ndarray | None:
    """Numbers of a one-column text file (NaN for unparsable lines); ``None`` if unreadable."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").rstrip().splitlines()
    except OSError:
        return None
    out = np.full(len(lines), np.nan)
    for i, line in enumerate(lines):
        try:
            out[i] = float(line.strip().split(",")[0])
        except ValueError:
            pass
    return out


def read_meta(path: str | Path) -> dict[str, str]:
    """``meta_info.ini`` as GOT-10k writes it (``key: value`` lines after ``[METAINFO]``)."""
    meta: dict[str, str] = {}
    path = Path(path)
    if not path.is_file():
        return meta
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if ": " in line:
            key, value = line.split(": ", 1)
            meta[key.strip()] = value.strip()
    return meta


def parse_resolution(text: str | None) -> tuple[int, int] | None:
    """GOT-10k's ``resolution`` field, ``"(width, height)"`` -> ``(width, height)``."""
    if not text:
        return None
    try:
        value = ast.literal_eval(text.strip())
        w, h = int(value[0]), int(value[1])
    except (ValueError, SyntaxError, TypeError, IndexError):
        return None
    return (w, h) if w > 0 and h > 0 else None


def image_size(frame: Frame) -> tuple[int, int] | None:
    """``(width, height)`` of a frame, from the file header when possible (no full decode)."""
    if isinstance(frame, np.ndarray):
        return (frame.shape[1], frame.shape[0])
    if callable(frame):
        img = frame()
        return (img.shape[1], img.shape[0]) if isinstance(img, np.ndarray) else None
    path = str(frame)
    try:
        from PIL import Image  # header only; Pillow comes with the got10k toolkit
        with Image.open(path) as im:
            return (int(im.size[0]), int(im.size[1]))
    except ImportError:  # pragma: no cover - Pillow is normally present
        pass
    except Exception:  # noqa: BLE001 - any decoding problem means "unknown size" here
        return None
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return None if img is None else (img.shape[1], img.shape[0])


def _match_frames(name: str, files: list[Path], count: int, folder: Path,
                  pattern: str, by_number: bool = True) -> tuple[list[Frame], np.ndarray]:
    """Pair ``count`` ground-truth rows with image files; returns ``(frames, present)``.

    Numbered files (``00000001.jpg``, ``0001.jpg``) are matched by number, so a missing frame
    invalidates its own row only instead of shifting all later rows; otherwise files are matched
    in sorted order. Mismatches are reported.
    """
    stems = [f.stem for f in files]
    if by_number and files and all(s.isdigit() for s in stems):
        numbers = [int(s) for s in stems]
        start = 0 if 0 in numbers else 1
        file_of = {n: f for n, f in zip(numbers, files)}
        frames: list[Frame] = []
        present = np.zeros(count, dtype=bool)
        for i in range(count):
            f = file_of.get(start + i)
            present[i] = f is not None
            frames.append(str(f if f is not None else folder / pattern.format(start + i)))
        missing = [i + 1 for i in range(count) if not present[i]]
        extra = sum(1 for n in numbers if not start <= n < start + count)
        if missing:
            warn_data(f"{name}: {len(missing)} frame file(s) missing for ground-truth rows "
                      f"(frames {_frame_list(missing)}) in {folder}; those frames are not used")
        if extra:
            warn_data(f"{name}: {extra} frame file(s) beyond the {count} ground-truth rows in "
                      f"{folder}; they are not used")
        return frames, present
    if len(files) != count:
        warn_data(f"{name}: {count} ground-truth rows for {len(files)} frames in {folder}; "
                  f"using the first {min(count, len(files))}")
    n = min(count, len(files))
    frames = [str(f) for f in files[:n]] + [str(folder / "missing")] * (count - n)
    present = np.arange(count) < n
    return frames, present


# ----------------------------------------------------------------------------------------------
# sources


class SequenceRecord(NamedTuple):
    """One sequence: frame references, ``(N, 4)`` float64 boxes, ``(N,)`` bool usable frames."""

    frames: list[Frame]
    boxes: np.ndarray
    valid: np.ndarray


class SequenceSource(ABC):
    """A list of sequences of one kind; ``kind`` is the key of its weight in ``DataConfig.weights``.

    ``static`` sources hold still images (one frame per item): the pair sampler makes both crops
    from the same image and augments them differently.
    """

    kind: str = "sequence"
    static: bool = False
    #: memoised sequences per process (``None``: unbounded; synthetic clips use a small LRU)
    cache_size: int | None = None

    def __init__(self) -> None:
        self._cache: OrderedDict[int, SequenceRecord] = OrderedDict()

    @abstractmethod
    def __len__(self) -> int:
        """Number of sequences."""

    @abstractmethod
    def name(self, i: int) -> str:
        """A readable name for sequence ``i`` (used in every warning)."""

    @abstractmethod
    def _load(self, i: int) -> SequenceRecord:
        """Load sequence ``i`` (called once per process thanks to :meth:`sequence`)."""

    def sequence(self, i: int) -> SequenceRecord:
        """Sequence ``i`` as ``(frames, boxes, valid)``, memoised."""
        if not 0 <= i < len(self):
            raise IndexError(f"sequence index {i} out of range for {len(self)} sequences")
        rec = self._cache.get(i)
        if rec is None:
            rec = self._load(i)
            if not rec.valid.any():
                log.info("%s: no usable frames (absent, missing or filtered out)", self.name(i))
            self._cache[i] = rec
            if self.cache_size is not None and len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(i)
        return rec

    def __getitem__(self, i: int) -> SequenceRecord:
        return self.sequence(i)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} sequences)"


class GOT10kSource(SequenceSource):
    """Sequences in GOT-10k layout (``<seq>/00000001.jpg ...``, ``groundtruth.txt``, labels, meta).

    ``root`` may be a GOT-10k root holding ``<subset>/list.txt`` (listed with the ``got10k``
    toolkit's :class:`~got10k.datasets.GOT10k`), a folder with its own ``list.txt``, a folder of
    sequence folders (any sub-folder with a ``groundtruth.txt``), or one sequence folder. Sequences
    are then read here rather than through the toolkit because the toolkit asserts on frame/row
    mismatches and fails on missing label files; this reader reports them and carries on.

    A frame is usable when its box is finite and positive, ``absence.label`` is 0, ``cover.label``
    passes siamfc-pytorch's visibility rule (``cover > max(1, 0.3 * max cover)``), its file exists
    and the box passes ``box_filter``. The image size for the filter is read from the first frame's
    header (falling back to ``meta_info.ini``'s ``resolution: (width, height)``).
    """

    kind = "got10k"

    def __init__(self, root: str | Path, subset: str = "train",
                 box_filter: BoxFilter | None = None, use_cover: bool = True) -> None:
        super().__init__()
        self.root = Path(root)
        self.subset = subset
        self.box_filter = box_filter or BoxFilter()
        self.use_cover = use_cover
        self.seq_dirs = self._discover()
        if not self.seq_dirs:
            warn_data(f"GOT-10k source {self.root} (subset {subset!r}): no sequences found")

    def _discover(self) -> list[Path]:
        root = self.root
        if (root / self.subset / "list.txt").is_file():
            from got10k.datasets import GOT10k  # the toolkit defines the standard layout
            dataset = GOT10k(str(root), subset=self.subset)
            dirs = [Path(d) for d, n in zip(dataset.seq_dirs, dataset.seq_names) if n.strip()]
        elif (root / "list.txt").is_file():
            names = (root / "list.txt").read_text(encoding="utf-8").split()
            dirs = [root / n for n in names]
        elif (root / "groundtruth.txt").is_file():
            dirs = [root]
        elif root.is_dir():
            dirs = sorted(d for d in root.iterdir() if (d / "groundtruth.txt").is_file())
        else:
            dirs = []
        kept = []
        for d in dirs:
            if (d / "groundtruth.txt").is_file():
                kept.append(d)
            else:
                warn_data(f"{d.name}: listed in {root} but has no groundtruth.txt ({d}); skipped")
        return kept

    def __len__(self) -> int:
        return len(self.seq_dirs)

    def name(self, i: int) -> str:
        return self.seq_dirs[i].name

    def _load(self, i: int) -> SequenceRecord:
        folder = self.seq_dirs[i]
        name = folder.name
        boxes = read_boxes(folder / "groundtruth.txt", name)
        n = len(boxes)
        frames, present = _match_frames(name, list_images(folder), n, folder, "{:08d}.jpg")
        valid = present.copy()

        absence = read_label(folder / "absence.label", name, n)
        if absence is not None:
            m = min(n, len(absence))
            valid[:m] &= absence[:m] == 0
        if self.use_cover:
            cover = read_label(folder / "cover.label", name, n)
            if cover is not None and np.isfinite(cover).any() and np.nanmax(cover) > 0:
                m = min(n, len(cover))
                threshold = max(1.0, float(np.nanmax(cover)) * 0.3)
                with np.errstate(invalid="ignore"):
                    valid[:m] &= cover[:m] > threshold
            elif cover is not None:
                warn_data(f"{name}: cover.label has no positive value (not annotated?); ignoring "
                          f"it and relying on absence.label and the boxes")

        meta = read_meta(folder / "meta_info.ini")
        size = probe_frame_size(name, frames, present, parse_resolution(meta.get("resolution")))
        valid &= self.box_filter(boxes, size)
        return SequenceRecord(frames, boxes, valid)

def probe_frame_size(name: str, frames: list[Frame], present: np.ndarray,
                     fallback: tuple[int, int] | None = None,
                     fallback_name: str = "meta_info.ini") -> tuple[int, int] | None:
    """Frame size from the first readable of the first three present frames' headers, else
    ``fallback``; every unreadable header and an unknown size are reported, never raised."""
    size = None
    for k in np.flatnonzero(present)[:3]:
        size = image_size(frames[k])
        if size is not None:
            break
        warn_data(f"{name}: frame {k + 1} ({frames[k]}) header is unreadable")
    if size is not None and fallback is not None and size != fallback:
        warn_data(f"{name}: {fallback_name} resolution {fallback} differs from the frames' "
                  f"{size}; using the frames'")
    if size is None:
        size = fallback
    if size is None and present.any():
        extra = f", no resolution in {fallback_name}" if fallback_name else ""
        warn_data(f"{name}: image size unknown (no readable frame{extra}); sequence not used")
    return size


class OTBSource(SequenceSource):
    """OTB-layout sequences: ``<root>/<Seq>/img/*.jpg`` and ``groundtruth_rect*.txt``.

    OTB boxes are 1-based (MATLAB), so 1 is subtracted from ``x`` and ``y``. Separators may be
    commas, tabs or spaces. Sequences with two targets (``groundtruth_rect.1.txt`` and ``.2.txt``)
    become ``Seq.1`` and ``Seq.2``. The frame ranges of OTB's special sequences follow the got10k
    toolkit (David starts at frame 300; Football1, Freeman3, Freeman4 and Diving end early).
    ``root`` may also be a single sequence folder.
    """

    kind = "otb"
    #: (first frame, last frame), 1-based, for sequences whose ground truth covers part of img/
    SPECIAL_RANGES = {"david": (300, 770), "football1": (1, 74), "freeman3": (1, 460),
                      "freeman4": (1, 283), "diving": (1, 215)}

    def __init__(self, root: str | Path, box_filter: BoxFilter | None = None) -> None:
        super().__init__()
        self.root = Path(root)
        self.box_filter = box_filter or BoxFilter()
        self.entries: list[tuple[str, Path, Path]] = []  # (name, sequence folder, gt file)
        if self._is_sequence(self.root):
            folders = [self.root]
        elif self.root.is_dir():
            folders = sorted(d for d in self.root.iterdir() if d.is_dir())
        else:
            folders = []
        for d in folders:
            gts = sorted(d.glob("groundtruth_rect*.txt"))
            if not gts:
                continue
            if not (d / "img").is_dir():
                warn_data(f"{d.name}: has ground truth but no img/ folder ({d}); skipped")
                continue
            for gt in gts:
                tag = gt.name[len("groundtruth_rect"):-len(".txt")].strip(".")
                self.entries.append((f"{d.name}.{tag}" if tag else d.name, d, gt))
        if not self.entries:
            warn_data(f"OTB source {self.root}: no sequences found")

    @staticmethod
    def _is_sequence(folder: Path) -> bool:
        return (folder / "img").is_dir() and any(folder.glob("groundtruth_rect*.txt"))

    def __len__(self) -> int:
        return len(self.entries)

    def name(self, i: int) -> str:
        return self.entries[i][0]

    def _load(self, i: int) -> SequenceRecord:
        name, folder, gt = self.entries[i]
        boxes = read_boxes(gt, name)
        boxes[:, :2] -= 1.0  # OTB is 1-based
        files = list_images(folder / "img")
        special = self.SPECIAL_RANGES.get(folder.name.lower())
        if special is not None and len(files) >= special[1]:
            files = files[special[0] - 1:special[1]]
            frames, present = _match_frames(name, files, len(boxes), folder / "img", "",
                                            by_number=False)
        else:
            frames, present = _match_frames(name, files, len(boxes), folder / "img", "{:04d}.jpg")
        size = probe_frame_size(name, frames, present, fallback_name="")
        valid = present & self.box_filter(boxes, size)
        return SequenceRecord(frames, boxes, valid)


class SyntheticSource(SequenceSource):
    """``count`` generated clips (:func:`siamtrack.data.synthetic.make_clip`), rendered lazily.

    Clip ``i`` uses a seed derived from ``(seed, i)`` and random frame and target sizes, so the same
    config gives the same clips in every process. Frames are rendered on demand (two per pair), and
    only ``cache_size`` clips are kept per process.
    """

    kind = "synthetic"

    def __init__(self, count: int, seed: int = 0, num_frames: int = 48,
                 box_filter: BoxFilter | None = None, cache_size: int = 32) -> None:
        super().__init__()
        self.count = int(count)
        self.seed = int(seed)
        self.num_frames = int(num_frames)
        self.box_filter = box_filter or BoxFilter()
        self.cache_size = cache_size

    def __len__(self) -> int:
        return self.count

    def name(self, i: int) -> str:
        return f"synthetic_{self.seed}_{i:05d}"

    def clip(self, i: int) -> SyntheticClip:
        """The generated clip ``i`` (deterministic in ``(seed, i)``)."""
        rng = np.random.default_rng([self.seed, i, 0x5EED])
        fw, fh = [(320, 240), (400, 300), (480, 270), (360, 360)][int(rng.integers(4))]
        side = rng.uniform(28, 64)
        aspect = math.exp(rng.uniform(-0.6, 0.6))
        target = (side * math.sqrt(aspect), side / math.sqrt(aspect))
        growth = math.exp(rng.uniform(-0.3, 0.4))
        return make_clip(self.num_frames, (fw, fh), target, growth,
                         seed=int(rng.integers(2**31)), name=self.name(i))

    def _load(self, i: int) -> SequenceRecord:
        clip = self.clip(i)
        frames: list[Frame] = [partial(clip.frame, k) for k in range(len(clip))]
        fh, fw = clip.background.shape[:2]
        valid = self.box_filter(clip.boxes, (fw, fh))
        return SequenceRecord(frames, clip.boxes.copy(), valid)
