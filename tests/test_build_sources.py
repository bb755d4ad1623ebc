"""The v3 data builder (siamtrack.data.build, experiments/data/build_sources.py) on tiny git repositories
made here: one sequence per ground-truth format, frames as image folders and as a video."""
from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from siamtrack.data.build import (BuildError, BuildOptions, build_sequence, find_git_dir, load_table,
                                  parse_boxes)
from siamtrack.data.sources import GOT10kSource

REPO = Path(__file__).resolve().parents[1]
FRAMES = 6


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          check=True, capture_output=True, text=True).stdout.strip()


def _frame(k: int, size: tuple[int, int] = (160, 120)) -> np.ndarray:
    rng = np.random.default_rng(k)
    img = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 0)


def _commit_repo(root: Path, files: dict[str, bytes]) -> str:
    root.mkdir(parents=True)
    _git(root, "init", "-q")
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "data")
    return _git(root, "rev-parse", "HEAD")


def _jpeg(img: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def _video_bytes(tmp: Path) -> bytes:
    path = tmp / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for k in range(FRAMES):
        writer.write(_frame(k))
    writer.release()
    return path.read_bytes()


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> tuple[Path, list[dict]]:
    """Two repositories in the layouts the builder reads (``owner+name/repo`` non-bare, ``owner/name``
    bare) holding one sequence per format, and the source table rows for them."""
    tmp = tmp_path_factory.mktemp("mirror")
    files = {f"otb/img/{k + 1:04d}.jpg": _jpeg(_frame(k)) for k in range(FRAMES)}
    files["otb/img/readme.txt"] = b"not a frame"
    files["otb/gt.txt"] = "".join(f"{11 + k},{21 + k},30,40\n" for k in range(FRAMES)).encode()
    files.update({f"vot/{k + 1:08d}.jpg": _jpeg(_frame(k + 10)) for k in range(FRAMES)})
    files["vot/groundtruth.txt"] = "".join(f"{10 + k},20,{50 + k},20,{50 + k},60,{10 + k},60\n"
                                           for k in range(FRAMES)).encode()
    files["tld/clip.avi"] = _video_bytes(tmp)
    files["tld/gt.txt"] = b"".join(b"NaN,NaN,NaN,NaN\n" if k == 2 else f"{5 + k},6,{44 + k},45\n".encode()
                                   for k in range(FRAMES))
    commit = _commit_repo(tmp / "src" / "alice+frames", files)
    (tmp / "mirror").mkdir()
    (tmp / "src" / "alice+frames").rename(tmp / "mirror" / "alice+frames")
    # the bare layout owner/name with only the json ground truth (a second repository)
    json_repo = tmp / "src" / "json"
    json_commit = _commit_repo(json_repo, {"OTB100.json": json.dumps(
        {"Seq": {"gt_rect": [[2 + k, 3, 10, 12] for k in range(FRAMES)]}}).encode()})
    subprocess.run(["git", "clone", "-q", "--bare", str(json_repo), str(tmp / "mirror" / "bob" / "gt.git")],
                   check=True)
    rows = [
        {"name": "T_otb", "repo": "alice/frames", "commit": commit, "frames_path": "otb/img", "frames": FRAMES,
         "gt": {"path": "otb/gt.txt", "format": "otb"}},
        {"name": "T_vot", "repo": "alice/frames", "commit": commit, "frames_path": "vot", "frames": FRAMES,
         "gt": {"path": "vot/groundtruth.txt", "format": "vot"}},
        {"name": "T_tld", "repo": "alice/frames", "commit": commit, "frames_path": "tld/clip.avi",
         "frames": FRAMES, "gt": {"path": "tld/gt.txt", "format": "tld"}},
        {"name": "T_json", "repo": "alice/frames", "commit": commit, "frames_path": "otb/img", "frames": FRAMES,
         "gt": {"path": "OTB100.json", "format": "otb-json", "key": "Seq", "repo": "bob/gt",
                "commit": json_commit}},
    ]
    return tmp / "mirror", rows


def _table(tmp: Path, rows: list[dict]) -> Path:
    path = tmp / "sources.yaml"
    path.write_text(yaml.safe_dump({"sequences": rows}), encoding="utf-8")
    return path


def test_parse_boxes_converts_every_convention_to_zero_based_xywh():
    assert parse_boxes(b"11,21,30,40\n", "otb").tolist() == [[10, 20, 30, 40]]
    assert parse_boxes(b"11\t21\t30\t40\r\n", "otb").tolist() == [[10, 20, 30, 40]]
    assert parse_boxes(b"10,20,50,20,50,60,10,60\n", "vot").tolist() == [[10, 20, 40, 40]]
    assert parse_boxes(b"10,20,40,40\n", "vot").tolist() == [[10, 20, 40, 40]]
    assert parse_boxes(b"5,6,44,45\n", "tld").tolist() == [[4, 5, 40, 40]]
    absent = parse_boxes(b"NaN,NaN,NaN,NaN\n1,1,0,5\n", "otb")
    assert np.isnan(absent).all()  # NaN row and a zero-width box: both absent
    assert parse_boxes(json.dumps({"S": {"gt_rect": [[2, 3, 10, 12]]}}).encode(), "otb-json", "S").tolist() \
        == [[1, 2, 10, 12]]
    with pytest.raises(ValueError, match="row 1 has 3 values"):
        parse_boxes(b"1,2,3\n", "otb")


def test_find_git_dir_reads_bare_and_non_bare_layouts(mirror):
    root, _ = mirror
    assert find_git_dir(root, "alice/frames") == root / "alice+frames" / ".git"
    assert find_git_dir(root, "bob/gt") == root / "bob" / "gt.git"
    assert find_git_dir(root, "carol/none") is None


def test_build_writes_got10k_layout_with_converted_boxes(mirror, tmp_path):
    root, rows = mirror
    entries = load_table(_table(tmp_path, rows))
    out = tmp_path / "out"
    out.mkdir()
    results = {e.name: build_sequence(e, root, out, BuildOptions(max_side=80)) for e in entries}
    assert {r.status for r in results.values()} == {"built"}
    otb = out / "T_otb"
    assert sorted(p.name for p in otb.glob("*.jpg")) == [f"{k:08d}.jpg" for k in range(1, FRAMES + 1)]
    # frames were 160x120 and scaled to a longer side of 80: boxes scale by 0.5 per axis
    assert cv2.imread(str(otb / "00000001.jpg")).shape[:2] == (60, 80)
    gt = np.loadtxt(otb / "groundtruth.txt", delimiter=",")
    np.testing.assert_allclose(gt[0], [5, 10, 15, 20])
    np.testing.assert_allclose(np.loadtxt(out / "T_vot" / "groundtruth.txt", delimiter=",")[1], [5.5, 10, 20, 20])
    tld = np.loadtxt(out / "T_tld" / "groundtruth.txt", delimiter=",")
    assert np.isnan(tld[2]).all() and np.isfinite(tld[[0, 1, 3]]).all()
    assert (out / "T_tld" / "absence.label").read_text().split() == ["0", "0", "1", "0", "0", "0"]
    assert (out / "T_tld" / "cover.label").read_text().split()[2] == "0"
    np.testing.assert_allclose(np.loadtxt(out / "T_json" / "groundtruth.txt", delimiter=",")[0], [0.5, 1, 5, 6])
    meta = (otb / "meta_info.ini").read_text().splitlines()
    assert meta[0] == "[METAINFO]" and meta[10] == "resolution: (80, 60)"
    # the training sources read it (absent frames unusable), with no warning about the layout
    (out / "list.txt").write_text("\n".join(results) + "\n")
    src = GOT10kSource(out)
    assert len(src) == 4
    rec = src.sequence([src.name(i) for i in range(4)].index("T_tld"))
    assert rec.valid.tolist()[2] is False


def test_second_build_reuses_verified_sequences_and_rebuilds_damaged_ones(mirror, tmp_path):
    root, rows = mirror
    entry = load_table(_table(tmp_path, rows[:1]))[0]
    out = tmp_path / "out"
    out.mkdir()
    first = build_sequence(entry, root, out)
    assert build_sequence(entry, root, out).status == "verified"
    (out / "T_otb" / "00000003.jpg").write_bytes(b"damaged")
    again = build_sequence(entry, root, out)
    assert again.status == "built" and again.source_sha256 == first.source_sha256
    assert cv2.imread(str(out / "T_otb" / "00000003.jpg")) is not None


@pytest.mark.parametrize("change, message", [
    ({"commit": "0" * 40}, "T_otb: commit 000000000000 is not in the snapshot"),
    ({"repo": "carol/none"}, "T_otb: no git snapshot of carol/none"),
    ({"frames": FRAMES + 1}, "T_otb: 6 ground-truth rows, the table says 7"),
    ({"gt": {"path": "otb/missing.txt", "format": "otb"}}, "T_otb: ground truth otb/missing.txt is missing"),
    ({"sha256": "f" * 64}, "T_otb: source SHA-256"),
])
def test_build_errors_name_the_sequence_and_leave_nothing(mirror, tmp_path, change, message):
    root, rows = mirror
    entry = load_table(_table(tmp_path, [dict(rows[0], **change)]))[0]
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BuildError, match=message.replace("(", r"\(")):
        build_sequence(entry, root, out)
    assert list(out.iterdir()) == []  # no half-built sequence, no temporary folder


def _script():
    spec = importlib.util.spec_from_file_location("build_sources", REPO / "experiments" / "data" / "build_sources.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_script_only_skip_missing_record_and_list(mirror, tmp_path, capsys):
    root, rows = mirror
    bad = dict(rows[1], name="T_gone", repo="carol/none")
    table = _table(tmp_path, rows + [bad])
    out = tmp_path / "built"
    script = _script()
    assert script.main(["--mirror", str(root), "--out", str(out), "--table", str(table), "--workers", "1",
                        "--only", "T_otb"]) == 0
    assert (out / "train" / "list.txt").read_text().split() == ["T_otb"]
    # a missing snapshot stops the build with one line naming the sequence ...
    assert script.main(["--mirror", str(root), "--out", str(out), "--table", str(table), "--workers", "1"]) == 2
    assert "build_sources: error: T_gone: no git snapshot of carol/none" in capsys.readouterr().err
    # ... or is left out with --skip-missing; --record writes the hashes of the built rows
    assert script.main(["--mirror", str(root), "--out", str(out), "--table", str(table), "--workers", "1",
                        "--skip-missing", "--record"]) == 0
    assert (out / "train" / "list.txt").read_text().split() == ["T_otb", "T_vot", "T_tld", "T_json"]
    recorded = {e.name: e.sha256 for e in load_table(table)}
    assert recorded["T_gone"] is None and all(len(recorded[n]) == 64 for n in ["T_otb", "T_vot", "T_tld"])
    # the recorded hashes are checked on the next run (all re-used)
    assert script.main(["--mirror", str(root), "--out", str(out), "--table", str(table), "--workers", "1",
                        "--skip-missing"]) == 0
    assert "4 re-used" in capsys.readouterr().out


def test_script_refuses_an_output_inside_the_repository(tmp_path, capsys):
    assert _script().main(["--mirror", str(tmp_path), "--out", str(REPO / "built")]) == 2
    assert "inside the repository" in capsys.readouterr().err


def test_shipped_table_lists_the_25_pinned_sequences_with_hashes():
    entries = load_table(REPO / "experiments" / "data" / "sources.yaml")
    assert len(entries) == 25 and sum(e.thermal for e in entries) == 2
    assert sum(e.frames for e in entries) == 12017
    assert sum(e.frames for e in entries if not e.thermal) == 11399
    assert all(e.sha256 and len(e.sha256) == 64 for e in entries)
