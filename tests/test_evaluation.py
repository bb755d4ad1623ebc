"""Benchmarks, baselines, speed and the MAC counter (siamtrack.evaluation), on small generated data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from siamtrack.checkpoint import save_checkpoint
from siamtrack.data import SyntheticSequence, make_sequence
from dataset_writers import write_got10k_folder, write_otb_folder
from siamtrack.evaluation.baselines import OpenCVTracker, baseline_status, make_baseline, to_int_rect
from siamtrack.evaluation.experiments import FolderDataset, GOT10kExperiment, OPEExperiment, otb_dataset
from siamtrack.models.profile import count_macs
from siamtrack.models import build_model, named_spec

FRAMES = 20


def _cli(argv: list[str]) -> int:
    """The real ``siamtrack`` entry point when it is there, else the evaluation sub-commands alone."""
    try:
        from siamtrack.cli import main
    except ImportError:
        from siamtrack.evaluation.cli import main
    return main(argv)


def _slow_sequence(seed: int, name: str, n: int = FRAMES) -> SyntheticSequence:
    # the first n frames of a long clip: gentle motion that a tracker can follow
    seq = make_sequence(num_frames=10 * n, frame_size=(320, 240), target_size=(30, 20), growth=1.2,
                        seed=seed, name=name)
    return SyntheticSequence(name, seq.frames[:n], seq.boxes[:n])


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaluation")
    seqs = [_slow_sequence(1, "Boy"), _slow_sequence(2, "Car4")]  # OTB names: --dataset otb finds them
    write_got10k_folder(root / "got10k", seqs, "val")
    write_otb_folder(root / "otb", seqs)
    ckpt = root / "tiny.pth"
    save_checkpoint(ckpt, build_model(named_spec("student", width=0.5)))
    return {"root": root, "got10k": root / "got10k", "otb": root / "otb", "ckpt": ckpt}


def _check_metrics(m: dict, precision: bool) -> None:
    for key in ("ao", "sr50", "sr75", "auc"):
        assert 0.0 <= m[key] <= 1.0, (key, m)
    assert m["fps"] > 0
    if precision:
        assert 0.0 <= m["precision"] <= 1.0
    else:
        assert m["precision"] is None


# ------------------------------------------------------------------ MACs
def test_count_macs_alexnet_matches_siamfc():
    macs = count_macs(build_model(named_spec("alexnet")))
    assert macs["per_crop"] == pytest.approx(2.72e9, rel=0.01)
    assert macs["exemplar"] == pytest.approx(0.46e9, rel=0.01)
    assert macs["search"] == pytest.approx(8.16e9, rel=0.01)
    assert macs["search"] == 3 * macs["per_crop"] == 3 * (macs["search_backbone"] + macs["xcorr"])
    assert macs["xcorr"] == 17 * 17 * 256 * 6 * 6
    assert count_macs(build_model(named_spec("alexnet")), scale_num=5)["search"] == 5 * macs["per_crop"]


# ------------------------------------------------------------------ benchmark end to end
def test_benchmark_got10k_val(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SIAMTRACK_MODELS", str(tmp_path))   # a shared folder without the ONNX files
    report = tmp_path / "report"
    argv = ["benchmark", "--dataset", "got10k", "--root", str(data["got10k"]), "--subset", "val",
            "--trackers", str(data["ckpt"]), "--baselines", "mil,nano", "--report-dir", str(report),
            "--json", str(tmp_path / "out.json"), "--no-progress"]
    assert _cli(argv) == 0
    out = json.loads((tmp_path / "out.json").read_text())
    assert set(out["trackers"]) == {"SiamFC-tiny", "MIL"}
    for m in out["trackers"].values():
        _check_metrics(m, precision=False)
    assert set(out["sequences"]) == {"Boy", "Car4"}
    for per in out["sequences"].values():
        assert set(per) == {"SiamFC-tiny", "MIL"}
        for m in per.values():
            _check_metrics(m, precision=False)
    assert out["trackers"]["MIL"]["ao"] > 0.3  # the adapter really tracks (gentle motion)
    # nano without its ONNX files (none given, none in the shared folder): skipped with the reason
    assert "NanoTrack" in out["skipped"] and "--nano-backbone" in out["skipped"]["NanoTrack"]
    assert (report / "success_plot.png").stat().st_size > 0
    assert (report / "report.md").read_text().count("SiamFC-tiny") >= 2
    assert json.loads((report / "benchmark.json").read_text())["trackers"] == out["trackers"]
    # the toolkit's own layout, so ExperimentGOT10k.report reads it
    assert (report / "results" / "GOT-10k" / "MIL" / "Boy" / "Boy_001.txt").is_file()
    text = capsys.readouterr().out
    assert "skipped NanoTrack" in text and "| MIL" in text

    # a second run reuses the results and says so
    assert _cli(argv) == 0
    text = capsys.readouterr().out
    assert "reusing results in" in text and "pass --overwrite to re-run" in text
    assert json.loads((tmp_path / "out.json").read_text())["trackers"] == out["trackers"]

    # new weights under the same name: refuse instead of mixing in stale results
    save_checkpoint(tmp_path / "tiny.pth", build_model(named_spec("student", width=0.5)))
    stale = ["benchmark", "--dataset", "got10k", "--root", str(data["got10k"]), "--trackers",
             str(tmp_path / "tiny.pth"), "--report-dir", str(report), "--no-progress"]
    assert _cli(stale) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _cli(stale + ["--overwrite", "--sequences", "Boy"]) == 0
    out2 = json.loads((report / "benchmark.json").read_text())
    assert list(out2["sequences"]) == ["Boy"] and "reusing" not in capsys.readouterr().out


def test_benchmark_otb_offline(data, tmp_path):
    report = tmp_path / "report"
    argv = ["benchmark", "--dataset", "otb", "--root", str(data["otb"]), "--version", "2015",
            "--trackers", str(data["ckpt"]), "--baselines", "mil", "--report-dir", str(report),
            "--no-progress"]
    assert _cli(argv) == 0
    out = json.loads((report / "benchmark.json").read_text())
    assert out["dataset"] == "otb2015" and set(out["sequences"]) == {"Boy", "Car4"}
    for m in out["trackers"].values():
        _check_metrics(m, precision=True)
    assert (report / "success_plot.png").is_file() and (report / "precision_plot.png").is_file()
    assert (report / "results" / "OTB2015" / "MIL" / "Car4.txt").is_file()


def test_benchmark_folder_in_parallel_workers(data, tmp_path):
    report = tmp_path / "report"
    argv = ["benchmark", "--dataset", "folder", "--root", str(data["got10k"] / "val"), "--baselines", "mil",
            "--workers", "2", "--report-dir", str(report), "--no-progress"]
    assert _cli(argv) == 0
    out = json.loads((report / "benchmark.json").read_text())
    assert set(out["sequences"]) == {"Boy", "Car4"}
    _check_metrics(out["trackers"]["MIL"], precision=True)


def test_benchmark_bad_input_is_one_line_error(data, tmp_path, capsys):
    assert _cli(["benchmark", "--dataset", "got10k", "--root", str(tmp_path / "nowhere"),
                 "--baselines", "mil"]) == 2
    assert "no GOT-10k val split" in capsys.readouterr().err
    assert _cli(["benchmark", "--dataset", "otb", "--root", str(data["otb"])]) == 2
    assert "nothing to benchmark" in capsys.readouterr().err
    assert _cli(["benchmark", "--dataset", "otb", "--root", str(data["otb"]), "--trackers",
                 str(tmp_path / "missing.pth")]) == 2
    assert "missing.pth" in capsys.readouterr().err
    assert _cli(["benchmark", "--dataset", "otb", "--root", str(data["otb"]), "--baselines", "mil",
                 "--sequences", "Nope", "--report-dir", str(tmp_path / "r")]) == 2
    assert "unknown sequence" in capsys.readouterr().err


def test_folder_dataset_reads_both_layouts(data):
    otb, got = FolderDataset(data["otb"]), FolderDataset(data["got10k"] / "val")
    toolkit = otb_dataset(data["otb"])
    assert otb.seq_names == got.seq_names == toolkit.seq_names == ["Boy", "Car4"]
    for name in otb.seq_names:
        (otb_files, otb_anno), (got_files, got_anno) = otb[name], got[name]
        np.testing.assert_array_equal(otb_anno, toolkit[name][1])
        np.testing.assert_allclose(otb_anno[:, :2] - 1, got_anno[:, :2], atol=1e-6)  # OTB is 1-based
        assert len(otb_files) == len(got_files) == FRAMES
    with pytest.raises(FileNotFoundError, match="use --dataset got10k"):
        FolderDataset(data["got10k"])


# ------------------------------------------------------------------ metrics against a hand computation
def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return np.minimum(inter / (a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter), 1.0)  # no 1 + ulp


def _known_results(exp, max_shift: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Perfect boxes on the first sequence, boxes shifted right by 0..max_shift widths on the other."""
    out = {}
    for k, seq in enumerate(exp.dataset.seq_names):
        img_files, anno = exp.dataset[seq][:2]
        boxes = anno.copy()
        if k == 1:
            boxes[:, 0] += np.linspace(0, max_shift, len(boxes)) * boxes[:, 2]
        exp.record("Oracle", seq, boxes, np.full(len(boxes), 0.01))
        out[seq] = (anno, np.round(boxes, 3))  # results files keep 3 decimals
    return out


def test_got10k_metrics_match_hand_computation(data, tmp_path):
    exp = GOT10kExperiment(data["got10k"], "val", tmp_path / "results", tmp_path / "reports")
    known = _known_results(exp, max_shift=0.6)
    for anno, boxes in known.values():  # inside the frame, so the toolkit's clipping is a no-op
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 0] + boxes[:, 2] <= 320).all()
    # GOT-10k: all frames but the first, pooled over sequences
    ious = np.concatenate([_iou(b[1:], a[1:]) for a, b in known.values()])
    thr = np.linspace(0, 1, 101)
    res = exp.evaluate("Oracle")
    m = res["overall"]
    assert m["ao"] == pytest.approx(ious.mean(), abs=1e-9)
    assert m["sr50"] == pytest.approx((ious > 0.5).mean(), abs=1e-9)
    assert m["sr75"] == pytest.approx((ious > 0.75).mean(), abs=1e-9)
    assert m["auc"] == pytest.approx(np.mean([(ious > t).mean() for t in thr]), abs=1e-9)
    assert 0.0 < m["sr75"] < m["sr50"] < 1.0  # the shifted sequence crosses both thresholds
    assert m["fps"] == pytest.approx(100.0)
    assert res["sequences"]["Boy"]["ao"] == pytest.approx(1.0)
    car = _iou(known["Car4"][1][1:], known["Car4"][0][1:])
    assert res["sequences"]["Car4"]["sr75"] == pytest.approx((car > 0.75).mean(), abs=1e-9)


def test_otb_metrics_match_hand_computation(data, tmp_path):
    exp = OPEExperiment(otb_dataset(data["otb"], 2015), "OTB2015", tmp_path / "results", tmp_path / "reports")
    known = _known_results(exp, max_shift=1.2)
    thr_iou, thr_ce = np.linspace(0, 1, 21), np.arange(51)
    succ, prec, aos = [], [], []
    for anno, boxes in known.values():  # OTB: every frame, curves averaged over sequences
        ious = _iou(boxes, anno)
        ce = np.abs(boxes[:, 0] - anno[:, 0])  # shifted along x only
        succ.append([(ious > t).mean() for t in thr_iou])
        prec.append([(ce <= t).mean() for t in thr_ce])
        aos.append(ious.mean())
    succ_curve, prec_curve = np.mean(succ, axis=0), np.mean(prec, axis=0)
    res = exp.evaluate("Oracle")
    m = res["overall"]
    assert m["auc"] == pytest.approx(succ_curve.mean(), abs=1e-9)
    assert m["sr50"] == pytest.approx(succ_curve[10], abs=1e-9)
    assert m["sr75"] == pytest.approx(succ_curve[15], abs=1e-9)
    assert m["precision"] == pytest.approx(prec_curve[20], abs=1e-9)
    assert m["ao"] == pytest.approx(np.mean(aos), abs=1e-9)
    assert 0.5 < m["precision"] < 1.0
    np.testing.assert_allclose(res["precision_curve"], prec_curve, atol=1e-9)


# ------------------------------------------------------------------ baselines
def test_unavailable_baselines_report_a_reason(tmp_path):
    assert "--nano-backbone" in baseline_status("nano", {})
    assert "--vit-model" in baseline_status("vit", {})
    assert "not found" in baseline_status("vit", {"vit_model": str(tmp_path / "none.onnx")})
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert baseline_status("vit", {"vit_model": str(bad)}) is not None
    assert baseline_status("mil") is None


def test_adapter_converts_boxes_and_keeps_last_box_when_lost():
    calls: list = []

    class Fake:  # found on the first update, lost afterwards
        def init(self, image, rect):
            calls.append((image[0, 0].tolist(), rect))

        def update(self, image):
            calls.append("update")
            return (True, (5, 6, 7, 8)) if len(calls) == 2 else (False, (0, 0, 0, 0))

    tracker = OpenCVTracker("fake", Fake)
    frame = np.zeros((10, 10, 3), np.uint8)
    frame[..., 0] = 200  # red in RGB
    tracker.init(frame, [1.4, 2.6, 3.5, 0.2])
    assert calls[0] == ([0, 0, 200], (1, 3, 4, 1))  # BGR frame, int rect with sides >= 1
    assert tracker.update(frame).tolist() == [5, 6, 7, 8]
    assert tracker.update(frame).tolist() == [5, 6, 7, 8] and tracker.score == 0.0
    assert to_int_rect([0.5, 1.5, 0.4, 9.6]) == (0, 2, 1, 10)


def test_nanotrack_adapter_tracks(shared_models):
    files = {"nano_backbone": str(shared_models / "nanotrackv2_backbone_sim.onnx"),
             "nano_head": str(shared_models / "nanotrackv2_head_sim.onnx")}
    if baseline_status("nano", files) is not None:
        pytest.skip(f"NanoTrack unavailable: {baseline_status('nano', files)}")
    seq = _slow_sequence(4, "nano", n=10)
    tracker = make_baseline("nano", files)
    tracker.init(seq.frames[0], seq.boxes[0])
    boxes = np.array([seq.boxes[0]] + [tracker.update(f) for f in seq.frames[1:]])
    assert boxes.shape == (10, 4) and np.isfinite(boxes).all()
    assert _iou(boxes, seq.boxes).mean() > 0.3


# ------------------------------------------------------------------ speed
def test_speed_two_models(tmp_path, capsys):
    paths = []
    for name, width in (("small", 0.5), ("smaller", 0.25)):
        paths.append(tmp_path / f"{name}.pth")
        save_checkpoint(paths[-1], build_model(named_spec("student", width=width)))
    out_json = tmp_path / "speed.json"
    assert _cli(["speed", "--weights", ",".join(map(str, paths)), "--threads", "1", "--frames", "5",
                 "--warmup", "1", "--json", str(out_json)]) == 0
    models = json.loads(out_json.read_text())["models"]
    assert set(models) == {"SiamFC-small", "SiamFC-smaller"}
    for m in models.values():
        assert m["ms"] > 0 and m["p90_ms"] >= m["ms"] * 0.999 and m["fps"] > 0
        assert m["threads"] == 1 and m["frames"] == 5 and m["bytes"] > 0 and m["params"] > 0
        assert m["macs"] > m["exemplar_macs"] > 0
    assert models["SiamFC-small"]["macs"] > models["SiamFC-smaller"]["macs"]
    assert "exemplar" in capsys.readouterr().out


@pytest.fixture
def shared_baselines(shared_models, monkeypatch) -> Path:
    """The shared NanoTrack / vitTrack files as ``speed``'s default (``$SIAMTRACK_MODELS``); skips
    when this OpenCV build cannot run them."""
    from siamtrack.evaluation.baselines import with_shared_files

    monkeypatch.setenv("SIAMTRACK_MODELS", str(shared_models))
    files = with_shared_files({})
    for key in ("nano", "vit"):
        reason = baseline_status(key, files)
        if reason is not None:
            pytest.skip(f"baseline {key} unavailable: {reason}")
    return shared_models


def test_benchmark_takes_nanotrack_and_vittrack_from_the_shared_folder(data, shared_baselines, tmp_path):
    """No ONNX options: NanoTrack and vitTrack still run, from ``$SIAMTRACK_MODELS`` as in ``speed``."""
    out = tmp_path / "out.json"
    assert _cli(["benchmark", "--dataset", "got10k", "--root", str(data["got10k"]), "--subset", "val",
                 "--sequences", "Boy", "--baselines", "nano,vit", "--report-dir", str(tmp_path / "r"),
                 "--json", str(out), "--no-progress"]) == 0
    result = json.loads(out.read_text())
    assert set(result["trackers"]) == {"NanoTrack", "vitTrack"} and not result.get("skipped")
    for m in result["trackers"].values():
        _check_metrics(m, precision=False)


def test_speed_with_opencv_baselines(shared_baselines, tmp_path, capsys):
    out_json = tmp_path / "speed.json"
    assert _cli(["speed", "--weights", "student", "--baselines", "nano,vit", "--frames", "3", "--warmup", "1",
                 "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    out = json.loads(out_json.read_text())
    models = out["models"]
    assert set(models) == {"SiamFC-student", "NanoTrack", "vitTrack"} and out["skipped"] == {}
    for m in models.values():
        assert m["ms"] > 0 and m["fps"] > 0 and m["p90_ms"] >= m["ms"] * 0.999 and m["frames"] == 3
    onnx = {"NanoTrack": ["nanotrackv2_backbone_sim.onnx", "nanotrackv2_head_sim.onnx"],
            "vitTrack": ["vitTracker.onnx"]}
    for name, files in onnx.items():  # size = the ONNX files; MACs and parameters unknown
        m = models[name]
        assert m["engine"] == "OpenCV DNN" and m["macs"] is None and m["params"] is None
        assert m["bytes"] == sum((shared_baselines / f).stat().st_size for f in files)
        row = next(line for line in text.splitlines() if line.startswith(f"| {name} "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "OpenCV DNN" and cells[6:9] == ["-", "-", "-"] and cells[9].endswith(" MiB")
    assert "| SiamFC-student " in text
    nano = models["SiamFC-student"]["fps"] / models["NanoTrack"]["fps"]
    assert out["relative"]["NanoTrack"]["SiamFC-student"] == pytest.approx(nano)
    assert f"fps relative to NanoTrack at 1 thread(s): SiamFC-student {nano:.2f}x" in text
    assert "fps relative to vitTrack" in text
    assert "speed-up over SiamFC-student at 1 thread(s): NanoTrack: " in text


def test_speed_baselines_only_and_an_unavailable_one(shared_baselines, tmp_path, capsys):
    # no --weights; nano pointed at a missing file: skipped with the reason, vitTrack still timed
    out_json = tmp_path / "speed.json"
    assert _cli(["speed", "--baselines", "nano,vit", "--nano-backbone", str(tmp_path / "nonexistent.onnx"),
                 "--frames", "3", "--warmup", "1", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    out = json.loads(out_json.read_text())
    assert list(out["models"]) == ["vitTrack"] and out["models"]["vitTrack"]["ms"] > 0
    assert "not found" in out["skipped"]["NanoTrack"]
    assert "skipped NanoTrack: --nano-backbone" in text and "| vitTrack " in text


def test_speed_needs_weights_or_baselines(tmp_path, capsys, monkeypatch):
    assert _cli(["speed", "--frames", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--weights" in err and "--baselines" in err
    # every baseline skipped and no model: nothing to time, one line naming why
    monkeypatch.setenv("SIAMTRACK_MODELS", str(tmp_path))  # an empty model folder
    assert _cli(["speed", "--baselines", "vit", "--frames", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "vitTrack" in err and "--vit-model" in err


def test_folder_dataset_reads_frames_in_natural_order(tmp_path) -> None:
    """``benchmark --dataset folder`` and ``track`` order unpadded frame numbers alike: 1, 2, ..., 11
    (not 1, 10, 11, 2 as plain strings), so frame i meets ground-truth row i."""
    import cv2

    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(1, 12):
        cv2.imwrite(str(seq / f"{i}.jpg"), np.full((8, 8, 3), i * 20, np.uint8))
    (seq / "groundtruth.txt").write_text("".join(f"{i},1,4,4\n" for i in range(1, 12)))
    img_files, anno = FolderDataset(tmp_path)[0]
    assert [Path(f).name for f in img_files] == [f"{i}.jpg" for i in range(1, 12)]
    assert anno[:, 0].tolist() == list(range(1, 12))
