"""experiments/tune_tracker.py: the settings table on GOT-10k-layout roots, and ``--apply``, which
writes the chosen setting into a copy of the checkpoint with the record of why (student v4's
223-pixel search crop came this way)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from siamtrack import SiamFCTracker, TrackerConfig
from siamtrack.checkpoint import read_checkpoint, save_checkpoint
from siamtrack.data.synthetic import make_sequence
from siamtrack.models import build_model, named_spec

from dataset_writers import write_got10k_folder

REPO = Path(__file__).resolve().parents[1]


def _tune_module():
    spec = importlib.util.spec_from_file_location("tune_tracker", REPO / "experiments" / "tune_tracker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tune_costs(path: Path) -> int:
    from siamtrack.checkpoint import load_model
    from siamtrack.models.profile import tracker_costs

    net, cfg, _ = load_model(path)
    return tracker_costs(net, cfg)["macs"]


def test_apply_writes_the_setting_and_moves_the_stale_metrics(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    ckpt = tmp_path / "net.pth"
    save_checkpoint(ckpt, build_model(named_spec("student", 0.25)).eval(), TrackerConfig(),
                    meta={"metrics": {"ao": 0.5}, "summary": {"macs": 1}, "note": "kept"})
    write_got10k_folder(tmp_path / "data", [make_sequence(num_frames=6, frame_size=(200, 160), seed=s,
                                                          name=f"seq{s}") for s in (1, 2)], subset="train")
    out = tmp_path / "applied.pth"
    tune = _tune_module()
    assert tune.main(["--weights", str(ckpt), "--data", str(tmp_path), "--roots", "data/train", "--workers", "1",
                      "--grid", "instance_sz=255,223", "--apply", "instance_sz=223", "--output", str(out),
                      "--note", "why"]) == 0
    table = capsys.readouterr().out
    assert "| 255 |" in table and "| 223 |" in table and "2 sequences" in table
    saved = read_checkpoint(out)
    assert saved["tracker"]["instance_sz"] == 223 and read_checkpoint(ckpt)["tracker"]["instance_sz"] == 255
    search = saved["meta"]["tracker_search"]
    assert search["chosen"] == {"instance_sz": 223} and search["note"] == "why" and len(search["ao"]) == 2
    assert search["metrics_before"] == {"ao": 0.5} and search["summary_before"] == {"macs": 1}
    assert "metrics" not in saved["meta"] and saved["meta"]["note"] == "kept"  # nothing stale claimed
    summary = saved["meta"]["summary"]  # recounted at the new crop size: fewer MACs than at 255
    assert 0 < summary["macs"] < tune_costs(ckpt) and summary["search_crops"] == 3
    assert torch.equal(saved["state_dict"]["head.bias"], read_checkpoint(ckpt)["state_dict"]["head.bias"])
    assert SiamFCTracker.from_pretrained(str(out), device="cpu").geometry.response_sz == 13
    with pytest.raises(SystemExit, match="not TrackerConfig fields: crop"):
        tune.apply_setting(str(ckpt), str(tmp_path / "bad.pth"), {"crop": 1}, {})
    with pytest.raises(ValueError, match="scale_num"):
        tune.apply_setting(str(ckpt), str(tmp_path / "bad.pth"), {"scale_num": 2}, {})
    assert not (tmp_path / "bad.pth").exists()


def test_score_checkpoint_writes_metrics_and_a_recounted_summary(tmp_path) -> None:
    """experiments/score_checkpoint.py: a file trained where nothing could score it (the GPU image)
    gets the metrics and summary a finished stage has; weights and tracker settings untouched."""
    torch.manual_seed(0)
    ckpt = tmp_path / "net.pth"
    save_checkpoint(ckpt, build_model(named_spec("student", 0.25)).eval(), TrackerConfig(instance_sz=223),
                    meta={"stage": "distill", "note": "kept"})
    write_got10k_folder(tmp_path / "data", [make_sequence(num_frames=6, frame_size=(200, 160), seed=s,
                                                          name=f"seq{s}") for s in (1, 2)], subset="val")
    before = read_checkpoint(ckpt)
    spec = importlib.util.spec_from_file_location("score_checkpoint", REPO / "experiments" / "score_checkpoint.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main([str(ckpt), "--eval-root", str(tmp_path / "data")]) == 0
    saved = read_checkpoint(ckpt)
    metrics, summary = saved["meta"]["metrics"], saved["meta"]["summary"]
    assert 0.0 <= metrics["ao"] <= 1.0 and summary["ao"] == metrics["ao"] and summary["stage"] == "distill"
    assert summary["macs"] == tune_costs(ckpt) and summary["bytes"] > 0 and saved["meta"]["note"] == "kept"
    assert saved["tracker"] == before["tracker"]
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in before["state_dict"].items())
    with pytest.raises(SystemExit):
        script.main([str(tmp_path / "missing.pth"), "--eval-root", str(tmp_path / "data")])
