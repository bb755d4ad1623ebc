"""Deployment: ONNX export round trip, the onnxruntime backend, int8, cached exports and variant names.

Networks are tiny random students whose BN statistics and head scale are set so that BN folding is
exercised and the responses are O(1) (a freshly initialised net answers ~1e-7 everywhere, which
would make any parity check pass trivially).
"""
from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch

from siamtrack import SiamFCTracker, TrackerConfig
from siamtrack.checkpoint import save_checkpoint
from siamtrack.cli import main
from siamtrack.data.synthetic import make_sequence
from siamtrack.models import build_model, named_spec
from siamtrack.deploy.runtime import BackendUnavailable
from siamtrack.weights import parse_weights, resolve_variant, variant_name

CFG = TrackerConfig()


def tiny_net(seed: int = 0) -> torch.nn.Module:
    """A random ``student_x0.25`` with non-trivial BN statistics and responses of order 1."""
    torch.manual_seed(seed)
    net = build_model(named_spec("student", 0.25)).eval()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1.0, 1.0)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    x = torch.from_numpy(make_sequence(num_frames=2, seed=seed).frames[0][:255, :255].copy())
    with torch.no_grad():
        feats = net.backbone(x.permute(2, 0, 1)[None].float())
        response = net.head(feats[..., 8:14, 8:14], feats)
    net.head.out_scale *= 4.0 / float(response.abs().max())
    return net


@pytest.fixture(scope="module")
def ort():
    return pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def clip():
    return make_sequence(num_frames=16, frame_size=(240, 180), target_size=(36, 28), growth=1.2, seed=3)


@pytest.fixture(scope="module")
def exported(ort, tmp_path_factory):
    """A checkpoint and its export with int8 graphs, through the command line (generated-clip data)."""
    root = tmp_path_factory.mktemp("deploy")
    ckpt = root / "tiny.pth"
    save_checkpoint(ckpt, tiny_net(), CFG, meta={"note": "random"})
    out = root / "tiny_onnx"
    rc = main(["export", "--weights", str(ckpt), "--format", "onnx", "--output", str(out), "--int8",
               "--data", str(root / "no_data_here"), "--calibration-pairs", "12"])
    assert rc == 0
    return ckpt, out


def run(tracker: SiamFCTracker, frames: list[np.ndarray], box: np.ndarray) -> np.ndarray:
    tracker.init(frames[0], box)
    return np.array([np.asarray(box, float)] + [tracker.update(f) for f in frames[1:]])


# ------------------------------------------------------------------------------ export
def test_export_round_trip(exported, clip) -> None:
    ckpt, out = exported
    manifest = json.loads((out / "siamtrack.json").read_text())
    assert manifest["tracker"]["scale_num"] == CFG.scale_num and manifest["meta"] == {"note": "random"}
    fp32 = manifest["models"]["fp32"]
    assert (out / fp32["exemplar"]).is_file() and (out / fp32["search"]).is_file()
    check = fp32["check"]
    assert check["response_max_abs_diff"] < 1e-4 and check["response_max_abs"] > 0.5
    assert "synthetic" in check["data"]

    from siamtrack.deploy.runtime import load_exported

    engine, _ = load_exported(out)
    torch_tracker = SiamFCTracker.from_pretrained(ckpt, device="cpu")
    z = np.random.default_rng(0).integers(0, 256, (1, 3, 127, 127), dtype=np.uint8)
    for scales in (1, 3, 5):  # the search graph's batch is dynamic
        x = np.random.default_rng(scales).integers(0, 256, (scales, 3, 255, 255), dtype=np.uint8)
        ref = torch_tracker.engine.respond(torch_tracker.engine.embed_exemplar(z), x)
        got = engine.respond(engine.embed_exemplar(z), x)
        assert got.shape == (scales, 17, 17)
        np.testing.assert_allclose(got, ref, atol=1e-4)

    # the xcorr's shapes are constants but the batch: no Shape/Gather chain left to run every frame
    onnx = pytest.importorskip("onnx")
    assert "Shape" not in {node.op_type for node in onnx.load(str(out / fp32["search"])).graph.node}

    loaded = SiamFCTracker.from_pretrained(out)
    assert loaded.backend == "onnxruntime" and loaded.net is None and loaded.cfg == CFG
    assert loaded.name == "SiamFC-tiny_onnx" and loaded.arch == manifest["arch"]
    boxes = run(loaded, clip.frames[:4], clip.boxes[0])
    assert boxes.shape == (4, 4) and np.isfinite(boxes).all()


def test_stride4_lite_student_exports_with_the_std_folded(ort, tmp_path) -> None:
    """A narrow EfficientNet-Lite student with the stride-4 stem (student v4's shape) on a 207-pixel
    search crop: the graph has no division left (the std is in the stem) and matches PyTorch."""
    torch.manual_seed(0)
    widths = {"stem": 8, "stages": [{"out": 8, "hidden": [8]}, {"out": 16, "hidden": [16]},
                                    {"out": 32, "hidden": [48]}]}
    net = build_model(named_spec("efficientnet_lite0", adjust=32, stem_stride=4, widths=widths,
                                 frozen_stages=-1, freeze_bn=False)).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 2.0)
        net.head.out_scale = 5.0  # responses of order 1 (a random net answers ~1e-3 at 0.05)
    cfg = TrackerConfig(instance_sz=207, response_up=8)
    save_checkpoint(tmp_path / "v4.pth", net, cfg)
    assert main(["export", "--weights", str(tmp_path / "v4.pth"), "--output", str(tmp_path / "v4"),
                 "--data", str(tmp_path / "none")]) == 0
    manifest = json.loads((tmp_path / "v4" / "siamtrack.json").read_text())
    check = manifest["models"]["fp32"]["check"]
    assert check["response_max_abs"] > 0.1 and check["response_max_abs_diff"] < 1e-4
    onnx = pytest.importorskip("onnx")
    ops = [node.op_type for node in onnx.load(str(tmp_path / "v4" / "search.onnx")).graph.node]
    assert "Div" not in ops and "Sub" in ops
    tracker = SiamFCTracker.from_pretrained(tmp_path / "v4")
    assert tracker.geometry.response_sz == 19 and tracker.cfg == cfg


def test_backend_parity_on_generated_sequence(ort, clip) -> None:
    net = tiny_net(1)
    eager = run(SiamFCTracker(net, CFG, device="cpu"), clip.frames, clip.boxes[0])
    onnx = run(SiamFCTracker(net, CFG, device="cpu", backend="onnxruntime"), clip.frames, clip.boxes[0])
    assert np.abs(onnx - eager).max() < 1.0  # pixels, every frame and coordinate
    assert np.abs(eager[1:] - eager[0]).max() > 1.0  # the boxes moved: the check is not vacuous


def test_int8_graph_is_quantized_and_close(exported, clip) -> None:
    import onnx

    ckpt, out = exported
    int8 = json.loads((out / "siamtrack.json").read_text())["models"]["int8"]
    ops = {n.op_type for n in onnx.load(str(out / int8["search"])).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert "synthetic" in int8["calibration"]["data"] and int8["calibration"]["batches"] == 4
    # 8-bit rounding, judged against the response range (the accuracy change is measured by AO)
    assert int8["check"]["response_max_abs_diff"] < 0.25 * int8["check"]["response_max_abs"]
    tracker = SiamFCTracker.from_pretrained(f"{out}@int8")
    assert tracker.precision == "int8" and tracker.name == "SiamFC-tiny_onnx-int8"
    assert np.isfinite(run(tracker, clip.frames[:4], clip.boxes[0])).all()


@pytest.mark.parametrize("keep,reduce_range", [("depthwise", False), ("depthwise+stem", True)])
def test_int8_keep_fp32_leaves_the_chosen_convs_unquantized(exported, tmp_path, keep, reduce_range) -> None:
    import onnx

    from siamtrack.deploy.crops import sample_crops
    from siamtrack.deploy.export import export_onnx
    from siamtrack.deploy.quantize import quantize_int8

    net, crops = tiny_net(), sample_crops(6, CFG, None, seed=2)
    export_onnx(net, CFG, tmp_path, crops)
    manifest = quantize_int8(net, CFG, tmp_path, crops, crops, keep_fp32=keep, reduce_range=reduce_range)
    int8 = manifest["models"]["int8"]
    assert int8["calibration"]["keep_fp32"] == keep and int8["calibration"]["reduce_range"] is reduce_range
    graph = onnx.load(str(tmp_path / int8["search"])).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    grouped = {n.name for n in convs if any(a.name == "group" and a.i > 1 for a in n.attribute)}
    quantized = {n.name for n in convs if n.input[1] in dequantized}  # int8 weights
    assert grouped and not grouped & quantized  # depthwise stays fp32
    assert quantized  # the pointwise convs are int8
    assert (convs[0].name in quantized) == (keep == "depthwise")
    with pytest.raises(ValueError, match="keep_fp32"):
        quantize_int8(net, CFG, tmp_path, crops, crops, keep_fp32="everything")


def test_folder_of_another_export_format_is_refused_with_what_to_do(exported, tmp_path) -> None:
    _, out = exported
    old = tmp_path / "old_export"
    shutil.copytree(out, old)
    manifest = json.loads((old / "siamtrack.json").read_text())
    (old / "siamtrack.json").write_text(json.dumps(dict(manifest, format=1)))  # NHWC-input graphs
    with pytest.raises(ValueError, match="export format 1.*siamtrack export"):
        SiamFCTracker.from_pretrained(old)


def test_checkpoint_on_onnxruntime_is_exported_once_into_the_cache(ort, tmp_path, monkeypatch, clip) -> None:
    monkeypatch.setenv("SIAMTRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SIAMTRACK_DATA", str(tmp_path / "no_data_here"))
    ckpt = tmp_path / "net.pth"
    save_checkpoint(ckpt, tiny_net(2), CFG)
    first = SiamFCTracker.from_pretrained(f"{ckpt}@onnx")
    assert first.name == "SiamFC-net-onnx" and first.export_folder.parent == tmp_path / "cache" / "onnx"
    stamp = (first.export_folder / "search.onnx").stat().st_mtime_ns
    again = SiamFCTracker.from_pretrained(ckpt, backend="onnxruntime")
    assert again.export_folder == first.export_folder
    assert (again.export_folder / "search.onnx").stat().st_mtime_ns == stamp  # reused, not re-exported
    save_checkpoint(ckpt, tiny_net(3), CFG)  # new weights, same file name: a new export
    assert SiamFCTracker.from_pretrained(f"{ckpt}@onnx").export_folder != first.export_folder


def test_speed_table_has_the_onnx_variants_and_their_accuracy(exported, tmp_path, capsys) -> None:
    ckpt, out = exported
    scores = tmp_path / "benchmark.json"  # the part of `siamtrack benchmark --json` that speed reads
    scores.write_text(json.dumps({"dataset": "GOT-10k val", "trackers": {
        "SiamFC-tiny": {"ao": 0.123, "sr50": 0.1}, "SiamFC-tiny_onnx-int8": {"ao": 0.456, "sr50": 0.4}}}))
    rc = main(["speed", "--weights", f"{ckpt},{out},{out}@int8", "--frames", "3", "--warmup", "1",
               "--accuracy", str(scores), "--json", str(tmp_path / "speed.json")])
    assert rc == 0
    text = capsys.readouterr().out
    for name, engine, ao in (("SiamFC-tiny ", "torch fp32", "0.123"), ("SiamFC-tiny_onnx ", "onnxruntime fp32", "-"),
                             ("SiamFC-tiny_onnx-int8", "onnxruntime int8", "0.456")):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name}"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == engine and cells[-2] == ao
    models = json.loads((tmp_path / "speed.json").read_text())["models"]
    assert models["SiamFC-tiny_onnx-int8"]["ao"] == 0.456 and models["SiamFC-tiny"]["bytes"] == ckpt.stat().st_size


# ------------------------------------------------------------------------------ names and errors
def test_variant_suffixes(tmp_path) -> None:
    assert parse_weights("student@int8") == ("student", "onnxruntime", "int8")
    assert parse_weights("runs/a@b/best.pth@onnx") == ("runs/a@b/best.pth", "onnxruntime", "fp32")
    assert parse_weights("runs/a@b/best.pth") == ("runs/a@b/best.pth", None, None)  # unknown suffix kept
    ckpt = tmp_path / "net.pth"
    save_checkpoint(ckpt, tiny_net(), CFG)
    assert resolve_variant(f"{ckpt}@int8") == (ckpt, "onnxruntime", "int8")
    assert resolve_variant(ckpt) == (ckpt, "torch", "fp32")
    assert variant_name(f"{ckpt}@int8", ckpt, "onnxruntime", "int8") == "SiamFC-net-int8"
    with pytest.raises(ValueError, match="int8 runs on backend 'onnxruntime'"):
        resolve_variant(f"{ckpt}@int8", backend="torch")
    with pytest.raises(ValueError, match="unknown backend"):
        resolve_variant(ckpt, backend="tensorrt")


def test_missing_onnxruntime_says_how_to_install(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    with pytest.raises(BackendUnavailable, match=r"pip install -e '\.\[deploy\]'"):
        SiamFCTracker(tiny_net(), CFG, device="cpu", backend="onnxruntime")
    ckpt = tmp_path / "net.pth"
    save_checkpoint(ckpt, tiny_net(), CFG)
    assert main(["demo", "--weights", f"{ckpt}@onnx", "--frames", "3", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "onnxruntime" in err[0] and ".[deploy]" in err[0]
