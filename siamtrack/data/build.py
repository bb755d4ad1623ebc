"""Build GOT-10k-layout training sequences from pinned commits of public git repositories.

Tracking data that is too large for the repository is rebuilt locally from a *source table* (data:
``experiments/data/sources.yaml``): each row names a sequence, the repository and commit that hold
it, where its frames are (an image folder or a video) and its ground truth with the file's box
convention. The builder reads the blobs straight out of local git snapshots (``git cat-file``; bare
or non-bare repositories, no checkout), converts every box to 0-based ``x, y, w, h`` (``NaN`` rows
for an absent target), scales frames to a longer side of at most ``max_side`` pixels, re-encodes them
as JPEG and writes the same layout as ``../shared/data/got10k`` (``list.txt``, ``00000001.jpg``...,
``groundtruth.txt``, ``absence.label``, ``cover.label``, ``cut_by_image.label``, ``meta_info.ini``).

What it checks: the commit and every blob exist, frame count = ground-truth rows = the table's
``frames``, and the SHA-256 of the source bytes (ground truth, then every frame blob in order) equals
the table's ``sha256``. Each built sequence gets a ``.build.json`` manifest with that hash and the
hash of what was written, so a second run re-uses a sequence whose files still match and rebuilds
only what is missing or changed. Sequences are written to a temporary folder and renamed into
place: a crash never leaves a half-built sequence that looks whole.

Box conventions (``gt.format``):

* ``otb``: 1-based ``x, y, w, h`` (OTB, UAV123, DTB70): ``x - 1, y - 1``;
* ``vot``: VOT polygons (8 values: their axis-aligned bounding rectangle) or ``x, y, w, h``, 0-based;
* ``tld``: ``x1, y1, x2, y2``, 1-based inclusive (TLD): ``x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1``;
* ``otb-json``: a pysot-style ``OTB100.json`` (``gt.key``'s ``gt_rect``), 1-based like ``otb``.

Any row with a ``NaN`` (or a non-positive side) marks the target absent in that frame.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import cv2
import numpy as np

from ..layouts import IMAGE_EXTENSIONS, natural_key

GT_FORMATS = ("otb", "vot", "tld", "otb-json")
VIDEO_EXTENSIONS = (".mpg", ".mpeg", ".mp4", ".avi", ".mov", ".mkv")
MANIFEST = ".build.json"
BUILD_VERSION = 1  # bump when the conversion changes: manifests of older builds stop matching


class BuildError(RuntimeError):
    """A sequence cannot be built (missing snapshot, commit or blob; counts or hash disagree).

    The message is one line that starts with the sequence's name."""


# ----------------------------------------------------------------------------------------------
# the source table


@dataclass(frozen=True)
class GroundTruth:
    """Where a sequence's boxes are: a file at ``repo@commit`` (defaults: the frames' own)."""

    path: str
    format: str
    repo: str | None = None
    commit: str | None = None
    key: str | None = None          # otb-json: the sequence's key in the json file


@dataclass(frozen=True)
class SourceEntry:
    """One row of the source table: a sequence and where its frames and boxes live."""

    name: str
    repo: str                       # owner/name
    commit: str                     # 40 hex digits
    frames_path: str                # an image folder or a video file inside the repository
    gt: GroundTruth
    frames: int                     # expected frame count (= ground-truth rows)
    sha256: str | None = None       # of the source bytes; None: not recorded yet (printed by the build)
    dataset: str = ""
    object_class: str = "unknown"
    fps: float = 30.0
    thermal: bool = False

    @staticmethod
    def from_dict(row: dict[str, Any]) -> "SourceEntry":
        row = dict(row)
        gt = row.pop("gt")
        if not isinstance(gt, dict) or "path" not in gt or "format" not in gt:
            raise ValueError(f"{row.get('name', '?')}: gt needs 'path' and 'format', got {gt!r}")
        if gt["format"] not in GT_FORMATS:
            raise ValueError(f"{row.get('name', '?')}: gt.format {gt['format']!r} is not one of {GT_FORMATS}")
        frames_path = row.pop("frames_path")
        missing = {"name", "repo", "commit", "frames"} - set(row)
        if missing:
            raise ValueError(f"{row.get('name', '?')}: missing keys {sorted(missing)}")
        if not re.fullmatch(r"[0-9a-f]{40}", str(row["commit"])):
            raise ValueError(f"{row['name']}: commit must be 40 hex digits, got {row['commit']!r}")
        return SourceEntry(frames_path=frames_path, gt=GroundTruth(**gt), **row)

    @property
    def is_video(self) -> bool:
        return Path(self.frames_path).suffix.lower() in VIDEO_EXTENSIONS


def load_table(path: str | Path) -> list[SourceEntry]:
    """The source table (YAML: ``sequences: [row, ...]``); names must be unique."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    rows = doc.get("sequences", doc) if isinstance(doc, dict) else doc
    entries = [SourceEntry.from_dict(r) for r in rows]
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: duplicate sequence names {dupes}")
    return entries


# ----------------------------------------------------------------------------------------------
# git snapshots


def find_git_dir(mirror: str | Path, repo: str) -> Path | None:
    """The git directory of ``owner/name`` under ``mirror``, bare or not, in the layouts people use:
    ``owner+name/repo`` (the search tool's snapshots), ``owner/name``, ``owner/name.git``, ``name``."""
    owner, _, name = repo.partition("/")
    base = Path(mirror)
    for folder in (base / f"{owner}+{name}" / "repo", base / f"{owner}+{name}", base / owner / name,
                   base / owner / f"{name}.git", base / name, base / f"{name}.git"):
        for candidate in (folder / ".git", folder):
            if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
                return candidate
    return None


class GitReader:
    """Blobs and folder listings of one git directory through a long-lived ``git cat-file --batch``."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = Path(git_dir)
        self._proc = subprocess.Popen(["git", "--git-dir", str(self.git_dir), "cat-file", "--batch"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def has_commit(self, commit: str) -> bool:
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), "cat-file", "-t", commit],
                             capture_output=True, text=True)
        return out.returncode == 0 and out.stdout.strip() == "commit"

    def blob(self, commit: str, path: str) -> bytes | None:
        """The bytes of ``commit:path``, or ``None`` when that blob is not there."""
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(f"{commit}:{path}\n".encode())
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().decode().split()
        if len(header) != 3 or header[1] != "blob":
            return None
        data = self._proc.stdout.read(int(header[2]))
        self._proc.stdout.read(1)  # the newline after the content
        return data

    def list_folder(self, commit: str, path: str) -> list[str]:
        """Paths of the files directly in folder ``path`` at ``commit`` (empty when absent)."""
        out = subprocess.run(["git", "--git-dir", str(self.git_dir), "ls-tree", commit,
                              path.rstrip("/") + "/"], capture_output=True, text=True)
        if out.returncode != 0:
            return []
        files = []
        for line in out.stdout.splitlines():
            meta, _, name = line.partition("\t")
            if meta.split()[1:2] == ["blob"]:
                files.append(name)
        return files

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait()

    def __enter__(self) -> "GitReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------
# ground truth


def _rows(text: str) -> list[list[float]]:
    rows = []
    for line in text.strip().splitlines():
        parts = [p for p in re.split(r"[,\s;]+", line.strip()) if p]
        rows.append([float(p) for p in parts])  # "NaN" parses to nan
    return rows


def parse_boxes(data: bytes, fmt: str, key: str | None = None) -> np.ndarray:
    """``(N, 4)`` 0-based ``[x, y, w, h]`` from a ground-truth file in ``fmt`` (see the module
    docstring); absent frames (any NaN, a non-positive side) are ``NaN`` rows."""
    text = data.decode("utf-8", errors="replace")
    if fmt == "otb-json":
        if key is None:
            raise ValueError("otb-json ground truth needs gt.key")
        rows = [list(map(float, r)) for r in json.loads(text)[key]["gt_rect"]]
        fmt = "otb"
    else:
        rows = _rows(text)
    boxes = np.full((len(rows), 4), np.nan)
    for i, r in enumerate(rows):
        if fmt == "vot" and len(r) == 8:
            xs, ys = r[0::2], r[1::2]
            box = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        elif len(r) != 4:
            raise ValueError(f"row {i + 1} has {len(r)} values, expected 4" + (" or 8" if fmt == "vot" else ""))
        elif fmt == "otb":
            box = [r[0] - 1, r[1] - 1, r[2], r[3]]
        elif fmt == "tld":
            box = [r[0] - 1, r[1] - 1, r[2] - r[0] + 1, r[3] - r[1] + 1]
        else:  # vot, 4 values
            box = list(r)
        if np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0:
            boxes[i] = box
    return boxes


# ----------------------------------------------------------------------------------------------
# frames


def _decode_video(data: bytes, suffix: str) -> list[np.ndarray]:
    """Every frame (BGR) of a video given as bytes; OpenCV needs a file, so a temporary one."""
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        cap = cv2.VideoCapture(tmp.name)
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
    return frames


def _resized(img: np.ndarray, max_side: int) -> tuple[np.ndarray, tuple[float, float]]:
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img, (1.0, 1.0)
    s = max_side / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    return cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA), (nw / w, nh / h)


# ----------------------------------------------------------------------------------------------
# building one sequence


@dataclass
class BuildOptions:
    max_side: int = 640
    quality: int = 70

    def key(self) -> dict[str, Any]:
        return {"max_side": self.max_side, "quality": self.quality, "version": BUILD_VERSION}


@dataclass
class BuildResult:
    name: str
    status: str                 # built | verified (re-used)
    frames: int = 0
    absent: int = 0
    source_sha256: str = ""
    seconds: float = 0.0
    resolution: tuple[int, int] = (0, 0)


def _files_sha256(folder: Path, names: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for n in names:
        digest.update((folder / n).read_bytes())
    return digest.hexdigest()


def _built_files(frames: int) -> list[str]:
    return ["groundtruth.txt", "absence.label"] + [f"{k:08d}.jpg" for k in range(1, frames + 1)]


def verified_manifest(entry: SourceEntry, folder: Path, options: BuildOptions) -> dict[str, Any] | None:
    """The manifest of ``folder`` when it holds a finished build of ``entry`` with these options
    whose files still hash to what the manifest recorded (so the build can be re-used), else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if manifest.get("options") != options.key() or manifest.get("commit") != entry.commit:
        return None
    if entry.sha256 and manifest.get("source_sha256") != entry.sha256:
        return None
    try:
        same = _files_sha256(folder, _built_files(int(manifest["frames"]))) == manifest.get("built_sha256")
    except (OSError, KeyError, ValueError):
        return None
    return manifest if same else None


def _read_frames(entry: SourceEntry, git: GitReader, digest: "hashlib._Hash") -> Iterator[np.ndarray]:
    """The sequence's frames as BGR arrays, hashing the source bytes as they are read."""
    if entry.is_video:
        data = git.blob(entry.commit, entry.frames_path)
        if data is None:
            raise BuildError(f"{entry.name}: video {entry.frames_path} is missing at {entry.repo}@{entry.commit[:8]}")
        digest.update(data)
        yield from _decode_video(data, Path(entry.frames_path).suffix)
        return
    paths = sorted((p for p in git.list_folder(entry.commit, entry.frames_path)
                    if Path(p).suffix.lower() in IMAGE_EXTENSIONS), key=natural_key)
    if not paths:
        raise BuildError(f"{entry.name}: no frames in {entry.frames_path}/ at {entry.repo}@{entry.commit[:8]}")
    if len(paths) != entry.frames:
        raise BuildError(f"{entry.name}: {len(paths)} frames in {entry.frames_path}/, the table says {entry.frames}")
    for p in paths:
        data = git.blob(entry.commit, p)
        if data is None:
            raise BuildError(f"{entry.name}: blob {p} is missing at {entry.repo}@{entry.commit[:8]}")
        digest.update(data)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise BuildError(f"{entry.name}: {p} does not decode as an image")
        yield img


def _meta_ini(entry: SourceEntry, frames: int, resolution: tuple[int, int], original: tuple[int, int],
              scale: tuple[float, float], options: BuildOptions, source_sha256: str) -> str:
    """GOT-10k's 11 ``meta_info.ini`` lines in its order (loaders read them by position), then ours."""
    secs = int(round(frames / entry.fps))
    lines = ["[METAINFO]",
             f"url: https://github.com/{entry.repo}/tree/{entry.commit}/{entry.frames_path}",
             "begin: 00:00:00", f"end: {secs // 3600:02d}:{secs // 60 % 60:02d}:{secs % 60:02d}",
             f"anno_fps: {entry.fps:g}Hz", f"object_class: {entry.object_class}", "motion_class: unknown",
             f"major_class: {entry.object_class}", "root_class: unknown", "motion_adverb: unknown",
             f"resolution: ({resolution[0]}, {resolution[1]})",
             f"source_dataset: {entry.dataset}", f"source_repo: {entry.repo}@{entry.commit}",
             f"source_path: {entry.frames_path}", f"source_frames: 1-{frames}", "frame_step: 1",
             f"box_convention: 0-based x,y,w,h (converted from {entry.gt.format})",
             f"original_resolution: ({original[0]}, {original[1]})",
             f"box_scale: ({scale[0]:.6f}, {scale[1]:.6f})", f"source_sha256: {source_sha256}",
             f"jpeg_quality: {options.quality}"]
    return "\n".join(lines) + "\n"


def build_sequence(entry: SourceEntry, mirror: str | Path, out_dir: str | Path,
                   options: BuildOptions | None = None) -> BuildResult:
    """Build (or re-use) ``out_dir/<entry.name>``; raises :class:`BuildError` on any mismatch."""
    import time

    options = options or BuildOptions()
    start = time.perf_counter()
    final = Path(out_dir) / entry.name
    manifest = verified_manifest(entry, final, options)
    if manifest is not None:
        return BuildResult(entry.name, "verified", int(manifest["frames"]), int(manifest.get("absent", 0)),
                           manifest["source_sha256"], time.perf_counter() - start,
                           resolution=tuple(manifest.get("resolution", (0, 0))))
    git_dir = find_git_dir(mirror, entry.repo)
    if git_dir is None:
        raise BuildError(f"{entry.name}: no git snapshot of {entry.repo} under {mirror}")
    gt_repo = entry.gt.repo or entry.repo
    gt_commit = entry.gt.commit or entry.commit
    gt_dir = git_dir if gt_repo == entry.repo else find_git_dir(mirror, gt_repo)
    if gt_dir is None:
        raise BuildError(f"{entry.name}: no git snapshot of {gt_repo} (its ground truth) under {mirror}")

    digest = hashlib.sha256()
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", dir=out_dir))
    try:
        with GitReader(git_dir) as git, GitReader(gt_dir) as gt_git:
            for reader, repo, commit in ((git, entry.repo, entry.commit), (gt_git, gt_repo, gt_commit)):
                if not reader.has_commit(commit):
                    raise BuildError(f"{entry.name}: commit {commit[:12]} is not in the snapshot of {repo} ({reader.git_dir})")
            gt_bytes = gt_git.blob(gt_commit, entry.gt.path)
            if gt_bytes is None:
                raise BuildError(f"{entry.name}: ground truth {entry.gt.path} is missing at {gt_repo}@{gt_commit[:8]}")
            digest.update(gt_bytes)
            try:
                boxes = parse_boxes(gt_bytes, entry.gt.format, entry.gt.key)
            except (ValueError, KeyError) as exc:
                raise BuildError(f"{entry.name}: ground truth {entry.gt.path}: {exc}") from exc
            if len(boxes) != entry.frames:
                raise BuildError(f"{entry.name}: {len(boxes)} ground-truth rows, the table says {entry.frames} frames")
            count, original, resolution, scale = 0, (0, 0), (0, 0), (1.0, 1.0)
            for count, img in enumerate(_read_frames(entry, git, digest), start=1):
                if count > entry.frames:
                    break
                original = (img.shape[1], img.shape[0])
                img, scale = _resized(img, options.max_side)
                resolution = (img.shape[1], img.shape[0])
                if not cv2.imwrite(str(tmp / f"{count:08d}.jpg"), img,
                                   [cv2.IMWRITE_JPEG_QUALITY, options.quality]):
                    raise BuildError(f"{entry.name}: could not write frame {count} to {tmp}")
                boxes[count - 1] *= [scale[0], scale[1], scale[0], scale[1]]
            if count != entry.frames:
                raise BuildError(f"{entry.name}: {count} frames decoded, {entry.frames} ground-truth rows")
        source_sha = digest.hexdigest()
        if entry.sha256 and source_sha != entry.sha256:
            raise BuildError(f"{entry.name}: source SHA-256 {source_sha[:16]}... differs from the table's "
                             f"{entry.sha256[:16]}... (different commit content?)")
        absent = ~np.all(np.isfinite(boxes), axis=1)
        gt_lines = ["NaN,NaN,NaN,NaN" if a else ",".join(f"{v:.2f}" for v in b) for b, a in zip(boxes, absent)]
        (tmp / "groundtruth.txt").write_text("\n".join(gt_lines) + "\n", encoding="utf-8")
        (tmp / "absence.label").write_text("".join(f"{int(a)}\n" for a in absent), encoding="utf-8")
        (tmp / "cover.label").write_text("".join("0\n" if a else "8\n" for a in absent), encoding="utf-8")
        (tmp / "cut_by_image.label").write_text("0\n" * entry.frames, encoding="utf-8")
        (tmp / "meta_info.ini").write_text(_meta_ini(entry, entry.frames, resolution, original, scale,
                                                     options, source_sha), encoding="utf-8")
        manifest = {"name": entry.name, "repo": entry.repo, "commit": entry.commit, "frames": entry.frames,
                    "absent": int(absent.sum()), "source_sha256": source_sha, "resolution": list(resolution),
                    "built_sha256": _files_sha256(tmp, _built_files(entry.frames)), "options": options.key()}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(entry.name, "built", entry.frames, int(absent.sum()), source_sha,
                       time.perf_counter() - start, resolution=resolution)


def write_list(out_dir: str | Path, names: Sequence[str]) -> None:
    """``list.txt`` (one sequence a line), written atomically."""
    path = Path(out_dir) / "list.txt"
    tmp = path.with_name(f".list.txt.{os.getpid()}")
    tmp.write_text("".join(f"{n}\n" for n in names), encoding="utf-8")
    os.replace(tmp, path)

