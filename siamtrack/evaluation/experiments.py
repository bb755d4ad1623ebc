"""The got10k toolkit's experiments, driven offline and scored with the toolkit's own code.

Why subclasses instead of calling the toolkit directly:

* ``ExperimentOTB`` downloads every missing OTB sequence on construction; :class:`OPEExperiment`
  takes an already-built dataset (``got10k.datasets.OTB(root, version, download=False)`` or a
  :class:`FolderDataset`) and never touches the network.
* The benchmark runs sequences in parallel worker processes and records results itself, but writes
  them through the experiments' own ``_record`` into their own layout, so ``report()`` (the
  community's numbers) reads them unchanged.
* The toolkit's reports lack SR0.75 and per-sequence success curves; they are captured from the
  toolkit's own ``_evaluate`` / ``_calc_metrics`` calls rather than recomputed, so every number in
  our tables is the toolkit's.
* Toolkit plots (300 dpi, one per experiment) are switched off: :mod:`.plots` draws the figures.

Metrics returned for every tracker and sequence (``None`` where the protocol has no such number):
``ao``, ``sr50``, ``sr75``, ``auc`` (mean of the success curve), ``precision`` (at 20 px), ``fps``.
"""
from __future__ import annotations

import contextlib
import glob
import io
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from got10k.datasets import OTB
from got10k.experiments import ExperimentGOT10k, ExperimentOTB

from ..layouts import IMAGE_EXTENSIONS, list_images

Metrics = dict[str, Any]


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Swallow the toolkit's chatty prints (they would break the progress bar)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _threshold_index(n_bins: int, value: float) -> int:
    """Index of ``value`` on the toolkit's ``linspace(0, 1, n_bins)`` threshold axis."""
    thr = np.linspace(0, 1, n_bins)
    idx = int(np.argmin(np.abs(thr - value)))
    if not np.isclose(thr[idx], value):
        raise ValueError(f"{value} is not on a {n_bins}-bin threshold axis")
    return idx


def _fps(value: float) -> float | None:
    return float(value) if value is not None and value > 0 else None


def select_sequences(dataset: Any, names: Sequence[str] | None) -> None:
    """Keep only ``names`` (in the given order) in a toolkit-style dataset, in place."""
    if not names:
        return
    known = list(dataset.seq_names)
    missing = [n for n in names if n not in known]
    if missing:
        shown = ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
        raise ValueError(f"unknown sequence(s) {', '.join(missing)}; available: {shown}")
    idx = [known.index(n) for n in names]
    for attr in ("seq_names", "seq_dirs", "anno_files"):
        values = getattr(dataset, attr)
        setattr(dataset, attr, [values[i] for i in idx])


def read_boxes(path: str | os.PathLike[str]) -> np.ndarray:
    """An ``N x 4`` box file with comma, tab or space separators (OTB uses all three)."""
    with open(path, encoding="utf-8") as fh:
        text = fh.read().replace(",", " ").replace("\t", " ")
    boxes = np.loadtxt(io.StringIO(text), ndmin=2)
    if boxes.shape[1] != 4:
        raise ValueError(f"{path}: expected 4 numbers per line (x y w h), got {boxes.shape[1]}")
    return boxes


def _count_rows(path: str | os.PathLike[str]) -> int:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return sum(1 for line in fh if line.strip())


def sequence_problem(seq_dir: str, anno_file: str, pattern: tuple[str, ...], exact: bool) -> str | None:
    """Why a sequence cannot be scored as laid out, ``None`` when it can.

    ``pattern``: the image extensions its layout reads; ``exact``: rows must equal frames (GOT-10k),
    else only "more rows than frames" is wrong (OTB lists frames beyond its annotated range).
    """
    seq = Path(seq_dir)
    if not seq.is_dir():
        return f"its folder {seq} is missing"
    if not os.path.isfile(anno_file):
        return f"{anno_file} is missing"
    img_dir = seq / "img" if (seq / "img").is_dir() else seq
    frames = sum(1 for p in img_dir.iterdir() if p.suffix.lower() in pattern)
    rows = _count_rows(anno_file)
    if rows != frames and (exact or rows > frames):
        return f"{frames} frames but {rows} ground-truth rows in {anno_file}"
    return None


def check_sequences(dataset: Any, exact: Any, skip_bad: bool, log: Any = print,
                    pattern: tuple[str, ...] = IMAGE_EXTENSIONS,
                    missing: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Check every sequence's layout before any tracking: frames against ground-truth rows, and
    sequences named but absent (``missing``). Raises ``ValueError`` naming the first bad sequence,
    or with ``skip_bad`` drops the bad ones from ``dataset`` (in place), logs each and returns them.

    ``exact`` is a bool or a callable ``seq_dir -> bool`` (per-sequence layouts in a folder).
    """
    bad: list[tuple[str, str]] = list(missing)
    for name, seq_dir, anno in zip(dataset.seq_names, dataset.seq_dirs, dataset.anno_files):
        why = sequence_problem(seq_dir, anno, pattern, exact(seq_dir) if callable(exact) else exact)
        if why:
            bad.append((name, why))
    if not bad:
        return []
    if not skip_bad:
        more = f" ({len(bad) - 1} more bad sequence(s))" if len(bad) > 1 else ""
        raise ValueError(f"sequence {bad[0][0]}: {bad[0][1]}{more}; fix the data, or pass --skip-bad "
                         f"to leave bad sequences out")
    names = {n for n, _ in bad}
    for name, why in bad:
        log(f"skipping sequence {name}: {why}")
    select_sequences(dataset, [n for n in dataset.seq_names if n not in names] or None)
    if all(n in names for n in dataset.seq_names) or not dataset.seq_names:
        raise ValueError("no sequence left to benchmark after --skip-bad")
    return [n for n, _ in bad]


def valid_rows(anno: np.ndarray) -> np.ndarray:
    """Frames with a usable ground-truth box (absent targets are NaN or -1 in the two layouts)."""
    return np.isfinite(anno).all(axis=1) & (anno[:, 2] > 0) & (anno[:, 3] > 0)


class FolderDataset:
    """Any folder of sequences in GOT-10k layout (``SEQ/*.jpg`` + ``SEQ/groundtruth.txt``, optional
    ``list.txt`` and ``absence.label``) or OTB layout (``SEQ/img/*.jpg`` + ``SEQ/groundtruth_rect*.txt``).

    Same interface as the toolkit's datasets (``seq_names``, ``seq_dirs``, ``anno_files``,
    ``dataset[i] -> (img_files, anno)``), so :class:`OPEExperiment` scores it like OTB. Frames the
    layout marks absent become NaN rows, which the scoring leaves out.
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root_dir = str(root)
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset folder not found: {root}")
        list_file = root / "list.txt"
        if list_file.is_file():
            names = [ln.strip() for ln in list_file.read_text(encoding="utf-8").splitlines() if ln.strip()]
        else:
            names = sorted(p.name for p in root.iterdir() if p.is_dir())
        self.seq_names: list[str] = []
        self.seq_dirs: list[str] = []
        self.anno_files: list[str] = []
        #: ``(name, why)`` of sequences named in list.txt without a folder or ground truth
        self.missing: list[tuple[str, str]] = []
        for name in names:
            seq_dir = root / name
            if list_file.is_file() and not seq_dir.is_dir():
                self.missing.append((name, f"named in {list_file} but {seq_dir} is missing"))
                continue
            if (seq_dir / "img").is_dir():  # OTB: several targets give groundtruth_rect.1.txt, .2.txt
                annos = [f for f in sorted(seq_dir.glob("groundtruth*.txt")) if f.read_text().strip()]
            else:
                annos = [seq_dir / "groundtruth.txt"] if (seq_dir / "groundtruth.txt").is_file() else []
            if not annos and list_file.is_file():
                self.missing.append((name, f"named in {list_file} but {seq_dir} has no ground truth "
                                           f"(groundtruth.txt)"))
            for k, anno in enumerate(annos):
                self.seq_names.append(name if len(annos) == 1 else f"{name}.{k + 1}")
                self.seq_dirs.append(str(seq_dir))
                self.anno_files.append(str(anno))
        if not self.seq_names and not self.missing:
            hint = ""
            if any((root / s / "list.txt").is_file() for s in ("train", "val", "test")):
                hint = " (this looks like a GOT-10k root: use --dataset got10k, or point at ROOT/val)"
            raise FileNotFoundError(
                f"no sequences found in {root}: expected SEQ/*.jpg with SEQ/groundtruth.txt (GOT-10k) "
                f"or SEQ/img/*.jpg with SEQ/groundtruth_rect.txt (OTB){hint}")

    def __len__(self) -> int:
        return len(self.seq_names)

    def __getitem__(self, index: int | str) -> tuple[list[str], np.ndarray]:
        if isinstance(index, str):
            index = self.seq_names.index(index)
        seq_dir = Path(self.seq_dirs[index])
        img_dir = seq_dir / "img" if (seq_dir / "img").is_dir() else seq_dir
        img_files = [str(p) for p in list_images(img_dir)]  # natural order, as `siamtrack track`
        anno = read_boxes(self.anno_files[index])
        absence = seq_dir / "absence.label"
        if absence.is_file() and img_dir == seq_dir:
            flags = np.loadtxt(absence, ndmin=1)
            if len(flags) == len(anno):
                anno[flags > 0] = np.nan
        name = self.seq_names[index]
        if len(img_files) < len(anno):
            raise ValueError(f"sequence {name}: {len(img_files)} frames but {len(anno)} boxes")
        img_files = img_files[:len(anno)]  # OTB convention: annotation length wins (e.g. Football1)
        if not valid_rows(anno[:1]).all():
            raise ValueError(f"sequence {name}: the first frame has no ground-truth box")
        return img_files, anno


class GOT10kExperiment(ExperimentGOT10k):
    """``ExperimentGOT10k`` with one repetition (deterministic trackers), no toolkit plots, absolute
    paths (its test-subset ``report`` changes directory) and SR0.75 / per-sequence curves captured."""

    protocol = "got10k"

    def __init__(self, root: str | os.PathLike[str], subset: str = "val",
                 result_dir: str | os.PathLike[str] = "results",
                 report_dir: str | os.PathLike[str] = "reports",
                 sequences: Sequence[str] | None = None, skip_bad: bool = False,
                 log: Any = print) -> None:
        if subset not in ("val", "test"):
            raise ValueError(f"GOT-10k subset must be val or test, got {subset!r}")
        list_file = Path(root) / subset / "list.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"no GOT-10k {subset} split at {Path(root) / subset} "
                                    f"({list_file.name} missing)")
        with quiet():
            super().__init__(str(root), subset=subset, result_dir=os.path.abspath(result_dir),
                             report_dir=os.path.abspath(report_dir))
        self.repetitions = 1
        select_sequences(self.dataset, sequences)
        # the toolkit only asserts (no sequence named) when frames and rows differ: check first;
        # the test split has the first box only
        check_sequences(self.dataset, subset == "val", skip_bad, log, pattern=(".jpg",))
        if subset == "val":
            self._check_meta()
        self._curves: list[np.ndarray] = []

    def _check_meta(self) -> None:
        # the val report needs each sequence's resolution and cover labels: fail before tracking
        for seq_dir in self.dataset.seq_dirs:
            for fname in ("groundtruth.txt", "meta_info.ini", "cover.label", "absence.label",
                          "cut_by_image.label"):
                if not os.path.isfile(os.path.join(seq_dir, fname)):
                    raise FileNotFoundError(
                        f"{os.path.join(seq_dir, fname)} missing: GOT-10k val scoring needs it "
                        f"(use --dataset folder for sequences without GOT-10k metadata)")

    @property
    def tag(self) -> str:
        return f"got10k-{self.subset}"

    # ---------------------------------------------------------------- results layout
    def record_file(self, tracker_name: str, seq_name: str) -> str:
        return os.path.join(self.result_dir, tracker_name, seq_name, f"{seq_name}_001.txt")

    def tracker_dir(self, tracker_name: str) -> str:
        return os.path.join(self.result_dir, tracker_name)

    def has_results(self, tracker_name: str) -> bool:
        return bool(glob.glob(os.path.join(self.tracker_dir(tracker_name), "*", "*_[0-9]*.txt")))

    def record(self, tracker_name: str, seq_name: str, boxes: np.ndarray, times: np.ndarray) -> None:
        record_file = self.record_file(tracker_name, seq_name)
        time_file = record_file[:record_file.rfind("_")] + "_time.txt"
        if os.path.exists(time_file):  # _record appends repetitions' times as columns
            os.remove(time_file)
        with quiet():
            self._record(record_file, boxes, times)

    # ---------------------------------------------------------------- scoring
    def plot_curves(self, report_files: Any, tracker_names: Any) -> None:
        """Disabled: :mod:`siamtrack.evaluation.plots` draws all trackers on one figure."""

    def _evaluate(self, ious: np.ndarray, times: Any) -> Any:
        out = super()._evaluate(ious, times)
        self._curves.append(out[3])
        return out

    def evaluate(self, tracker_name: str) -> Metrics:
        """``{"overall": metrics, "sequences": {seq: metrics}, "success_curve": [...], ...}``."""
        if self.subset == "test":
            return self._evaluate_test(tracker_name)
        self._curves = []
        with quiet():
            perf = self.report([tracker_name])[tracker_name]
        n = len(self.dataset.seq_names)
        if len(self._curves) != n + 1:  # the toolkit calls _evaluate once per sequence, then overall
            raise RuntimeError("unexpected got10k toolkit behaviour while scoring")
        i75 = _threshold_index(self.nbins_iou, 0.75)

        def metrics(d: dict[str, Any], curve: np.ndarray) -> Metrics:
            return {"ao": float(d["ao"]), "sr50": float(d["sr"]), "sr75": float(curve[i75]),
                    "auc": float(np.mean(curve)), "precision": None, "fps": _fps(d["speed_fps"])}

        seqs = {s: metrics(perf["seq_wise"][s], self._curves[k]) | {"frames": perf["seq_wise"][s]["length"]}
                for k, s in enumerate(self.dataset.seq_names)}
        overall = perf["overall"]
        return {"overall": metrics(overall, self._curves[n]), "sequences": seqs,
                "success_curve": [float(v) for v in overall["succ_curve"]], "precision_curve": None}

    def _evaluate_test(self, tracker_name: str) -> Metrics:
        # ground truth is withheld: the toolkit zips the results for the evaluation server
        with quiet():
            self.report([tracker_name])
        times = []
        for seq in self.dataset.seq_names:
            tf = os.path.join(self.result_dir, tracker_name, seq, f"{seq}_time.txt")
            if os.path.isfile(tf):
                t = np.loadtxt(tf, delimiter=",", ndmin=1).ravel()
                times.append(t[np.isfinite(t) & (t > 0)])
        t = np.concatenate(times) if times else np.zeros(0)
        none = {"ao": None, "sr50": None, "sr75": None, "auc": None, "precision": None,
                "fps": float(np.mean(1.0 / t)) if len(t) else None}
        return {"overall": none, "sequences": {}, "success_curve": None, "precision_curve": None,
                "archive": os.path.join(self.result_dir, f"{tracker_name}.zip")}


class OPEExperiment(ExperimentOTB):
    """OTB's one-pass evaluation (success curve over 21 IoU thresholds, precision at 20 px) on any
    toolkit-style dataset, never downloading. Frames without ground truth are left out of scoring."""

    protocol = "ope"

    def __init__(self, dataset: Any, name: str, result_dir: str | os.PathLike[str] = "results",
                 report_dir: str | os.PathLike[str] = "reports") -> None:
        # ExperimentOTB.__init__ would build OTB(..., download=True): set its fields ourselves
        self.dataset = dataset
        self.name = name
        self.result_dir = os.path.join(os.path.abspath(result_dir), name)
        self.report_dir = os.path.join(os.path.abspath(report_dir), name)
        self.nbins_iou = 21
        self.nbins_ce = 51
        self._mean_ious: list[float] = []

    @property
    def tag(self) -> str:
        return self.name.lower()

    def record_file(self, tracker_name: str, seq_name: str) -> str:
        return os.path.join(self.result_dir, tracker_name, f"{seq_name}.txt")

    def tracker_dir(self, tracker_name: str) -> str:
        return os.path.join(self.result_dir, tracker_name)

    def has_results(self, tracker_name: str) -> bool:
        return bool(glob.glob(os.path.join(self.tracker_dir(tracker_name), "*.txt")))

    def record(self, tracker_name: str, seq_name: str, boxes: np.ndarray, times: np.ndarray) -> None:
        with quiet():
            self._record(self.record_file(tracker_name, seq_name), boxes, times)

    def plot_curves(self, tracker_names: Any) -> None:
        """Disabled: :mod:`siamtrack.evaluation.plots` draws all trackers on one figure."""

    def _calc_metrics(self, boxes: np.ndarray, anno: np.ndarray) -> Any:
        valid = valid_rows(anno)
        ious, center_errors = super()._calc_metrics(boxes[valid], anno[valid])
        self._mean_ious.append(float(np.mean(ious)))
        return ious, center_errors

    def evaluate(self, tracker_name: str) -> Metrics:
        self._mean_ious = []
        with quiet():
            perf = self.report([tracker_name])[tracker_name]
        i50 = _threshold_index(self.nbins_iou, 0.5)
        i75 = _threshold_index(self.nbins_iou, 0.75)

        def metrics(d: dict[str, Any], ao: float) -> Metrics:
            curve = d["success_curve"]
            return {"ao": ao, "sr50": float(curve[i50]), "sr75": float(curve[i75]),
                    "auc": float(d["success_score"]), "precision": float(d["precision_score"]),
                    "fps": _fps(d["speed_fps"])}

        seqs = {}
        for k, s in enumerate(self.dataset.seq_names):
            seqs[s] = metrics(perf["seq_wise"][s], self._mean_ious[k])
            seqs[s]["frames"] = len(np.loadtxt(self.record_file(tracker_name, s), delimiter=",", ndmin=2))
        overall = perf["overall"]
        # AO like the OTB curves: averaged over sequences
        return {"overall": metrics(overall, float(np.mean(self._mean_ious))), "sequences": seqs,
                "success_curve": [float(v) for v in overall["success_curve"]],
                "precision_curve": [float(v) for v in overall["precision_curve"]]}


def otb_dataset(root: str | os.PathLike[str], version: int | str = 2015) -> OTB:
    """``got10k.datasets.OTB`` over whatever OTB sequences are present; never downloads."""
    if not Path(root).is_dir():
        raise FileNotFoundError(f"OTB folder not found: {root}")
    try:
        version = int(version)
    except (TypeError, ValueError):
        pass
    try:
        with quiet():  # one 'Warning: sequence X not exists.' line per absent sequence
            dataset = OTB(str(root), version, download=False)
    except AssertionError as exc:
        raise ValueError(f"unknown OTB version {version!r}; use 2013 or 2015") from exc
    except Exception as exc:  # the toolkit raises a bare Exception for an empty folder
        raise FileNotFoundError(f"no OTB sequences in {root} ({exc})".splitlines()[0]) from exc
    if not dataset.seq_names:
        raise FileNotFoundError(f"no OTB{version} sequences in {root} (expected NAME/img/*.jpg and "
                                f"NAME/groundtruth_rect.txt with OTB sequence names, e.g. Basketball)")
    return dataset


def make_experiment(dataset: str, root: str | os.PathLike[str], result_dir: str | os.PathLike[str],
                    report_dir: str | os.PathLike[str], subset: str = "val",
                    version: int | str = 2015,
                    sequences: Sequence[str] | None = None, skip_bad: bool = False,
                    log: Any = print) -> GOT10kExperiment | OPEExperiment:
    """The experiment for ``--dataset got10k|otb|folder`` (validates the data before any tracking;
    bad sequences raise ``ValueError``, or with ``skip_bad`` are left out and logged)."""
    if dataset == "got10k":
        return GOT10kExperiment(root, subset, result_dir, report_dir, sequences, skip_bad, log)
    if dataset == "otb":
        ds = otb_dataset(root, version)
        select_sequences(ds, sequences)
        return OPEExperiment(ds, f"OTB{version}", result_dir, report_dir)
    if dataset == "folder":
        ds = FolderDataset(root)
        select_sequences(ds, sequences)
        missing = [(n, why) for n, why in ds.missing if not sequences or n in sequences]
        check_sequences(ds, lambda d: not (Path(d) / "img").is_dir(), skip_bad, log, missing=missing)
        return OPEExperiment(ds, "Folder", result_dir, report_dir)
    raise ValueError(f"unknown dataset {dataset!r}; choose got10k, otb or folder")
