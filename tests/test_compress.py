"""Pruning physically removes channels and matches masking; distillation losses; the whole
teacher -> distil -> prune -> fine-tune pipeline runs end to end on generated data."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import numpy as np
import torch

from siamtrack.checkpoint import load_model, read_checkpoint
from siamtrack.compress import (DistillModel, prune_step, prune_to_widths,
                                prune_units, response_kd_loss, select_keep, hint_loss)
from siamtrack.compress.distill import distill_loss, matching_taps
from siamtrack.config import CompressConfig, load_experiment
from siamtrack.data.synthetic import make_sequence
from siamtrack.models import build_model, count_parameters, model_spec, named_spec
from siamtrack.models.profile import count_macs


def masked_forward_equivalent(net, keep):
    """A full-size copy whose removed channels are zeroed after each block (the 'masked' network),
    to show that :func:`prune_to_widths` computes exactly what masking computes."""
    masked = copy.deepcopy(net)
    backbone = masked.backbone
    blocks = backbone.conv_blocks()
    for unit, idx in zip(prune_units(backbone), keep):
        for b in unit.blocks:
            mask = torch.zeros(blocks[b].out_channels)
            mask[idx] = 1.0
            blocks[b].register_forward_hook(
                lambda _m, _i, out, m=mask: out * m.to(out.device).view(1, -1, 1, 1))
    return masked

REPO = Path(__file__).resolve().parents[1]


def _randomise_bn(net):
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) + 0.1
            m.bias.data = torch.randn(m.bias.shape, generator=g)
            m.running_mean = torch.randn(m.running_mean.shape, generator=g)
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5
    return net.eval()


@pytest.mark.parametrize("arch", [("alexnet", 0.25), ("student", 0.5)])
def test_pruned_network_is_smaller_and_equals_the_masked_one(arch):
    net = _randomise_bn(build_model(named_spec(*arch)))
    units = prune_units(net.backbone)
    keep = [select_keep(torch.rand(u.channels), u.channels // 2, u.partitions) for u in units]
    small = prune_to_widths(net, keep).eval()
    masked = masked_forward_equivalent(net, keep).eval()
    # channels are really gone: fewer parameters, narrower feature maps, spec records the widths
    assert count_parameters(small) < 0.5 * count_parameters(net)
    z, x = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    assert small.backbone(z).shape[1] == keep[-1].numel() < net.backbone(z).shape[1]
    convs = [layer for layer in model_spec(small)["backbone"] if layer["type"] == "conv"]
    # one pruning unit per channel-producing conv; a depthwise conv follows its producer's width
    assert [c["out"] for c in convs if c["groups"] != "dw"] == [int(k.numel()) for k in keep]
    assert all(c["out"] == prev["out"] for prev, c in zip(convs, convs[1:]) if c["groups"] == "dw")
    # ... and the pruned network computes exactly what the masked full network computes
    with torch.no_grad():
        torch.testing.assert_close(small(z, x), masked(z, x), rtol=1e-4, atol=1e-4)
    # the spec rebuilds it
    again = build_model(model_spec(small))
    again.load_state_dict(small.state_dict())


def test_grouped_convs_keep_equal_groups():
    net = build_model(named_spec("alexnet", 0.25))
    units = prune_units(net.backbone)
    # conv1 feeds a groups=2 conv; conv2..conv4 are grouped or feed grouped convs
    assert [u.partitions for u in units] == [2, 2, 2, 2, 2]
    scores = torch.arange(units[0].channels, dtype=torch.float32)   # best channels all in group 2
    keep = select_keep(scores, units[0].channels // 2, 2)
    half = units[0].channels // 2
    assert (keep < half).sum() == (keep >= half).sum()


def test_prune_step_meets_mac_budget():
    net = build_model(named_spec("student", 1.0))
    before = count_macs(net)["per_frame"]
    small = prune_step(net, before / 4, "l1")
    after = count_macs(small)["per_frame"]
    assert after <= before / 4 and after > before / 8        # meets the budget without overshooting


def test_prune_step_round_to_keeps_widths_multiples_of_it():
    net = build_model(named_spec("student", 1.0))
    before = count_macs(net)["per_frame"]
    free = prune_step(net, before / 2, "l1")
    rounded = prune_step(net, before / 2, "l1", round_to=8)
    widths = [b.out_channels for b in rounded.backbone.conv_blocks()]
    assert all(w % 8 == 0 for w in widths), widths
    assert any(b.out_channels % 8 for b in free.backbone.conv_blocks())   # the rounding did something
    assert count_macs(rounded)["per_frame"] <= before / 2


def test_response_kd_loss_known_values():
    t = torch.randn(3, 1, 17, 17)
    assert response_kd_loss(t, t, 2.0).item() == pytest.approx(0.0, abs=1e-6)
    # a flat student against a one-hot-ish teacher: KL = log(N) - H(teacher) at T = 1
    teacher = torch.full((1, 1, 17, 17), -50.0)
    teacher[0, 0, 8, 8] = 50.0
    flat = torch.zeros(1, 1, 17, 17)
    assert response_kd_loss(flat, teacher, 1.0).item() == pytest.approx(torch.log(torch.tensor(289.0)).item(), rel=1e-4)
    assert response_kd_loss(flat, teacher, 2.0) > 0


def test_hint_loss_is_scale_free():
    t = torch.randn(2, 8, 5, 5)
    assert hint_loss(t, t).item() == 0.0
    assert hint_loss(torch.zeros_like(t), t).item() == pytest.approx(1.0, rel=1e-6)
    assert hint_loss(torch.zeros_like(t), 100 * t).item() == pytest.approx(1.0, rel=1e-6)


def test_distill_model_freezes_teacher_and_trains_student():
    teacher = build_model(named_spec("alexnet", 0.25))
    student = build_model(named_spec("student", 0.5))
    model = DistillModel(student, teacher).train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    # the pointwise outputs at 22x22 and 24x24 (blocks 10 and 8) face conv5 and conv4
    assert matching_taps(student.backbone, teacher.backbone) == [(10, 4), (8, 3)]
    z, x = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
    loss, stats = distill_loss(CompressConfig())(model, z, x)
    loss.backward()
    assert set(stats) == {"loss", "gt", "kd", "hint"} and all(v >= 0 for v in stats.values())
    assert student.backbone.conv_blocks()[0].conv.weight.grad is not None
    assert all(p.grad is None for p in teacher.parameters())


def test_fitted_adapters_beat_random_ones_and_zero():
    torch.manual_seed(0)
    teacher = build_model(named_spec("alexnet", 0.25)).eval()
    student = build_model(named_spec("student", 0.5))
    model = DistillModel(student, teacher).train()
    x = torch.from_numpy(np.stack(make_sequence(num_frames=6, frame_size=(255, 255), seed=1).frames[::2]))
    x = x.permute(0, 3, 1, 2).float()
    bn = student.backbone.conv_blocks()[0].bn
    stats = bn.running_mean.clone()
    with torch.no_grad():
        _, t_taps = teacher.backbone.forward_taps(x)
        _, s_taps = copy.deepcopy(student.backbone).forward_taps(x)   # training mode, as in the loss
        before = [hint_loss(a(s_taps[si]), t_taps[ti]).item() for a, (si, ti) in zip(model.adapters, model.taps)]
    after = model.fit_adapters(x)
    assert student.training and torch.equal(bn.running_mean, stats)   # the student is left as it was
    assert len(after) == 2 and all(0.0 <= a < 1.0 for a in after)   # better than predicting zeros
    assert all(a < b for a, b in zip(after, before))
    with torch.no_grad():  # the returned losses are those of the adapters as set
        again = [hint_loss(a(s_taps[si]), t_taps[ti]).item() for a, (si, ti) in zip(model.adapters, model.taps)]
    assert again == pytest.approx(after, rel=1e-4)


@pytest.mark.slow
def test_pipeline_end_to_end_on_generated_data(tmp_path):
    from siamtrack.pipeline import main
    cfg = str(REPO / "experiments" / "tiny_student.yaml")
    assert main(["--config", cfg, "--no-progress", f"out_dir={tmp_path}", "--speed-frames", "5",
                 "--ship", f"finetune={tmp_path / 'student.pth'}"]) == 0
    run = tmp_path / "tiny_student"
    report = json.loads((run / "report.json").read_text())["stages"]
    assert list(report) == ["teacher", "distill", "prune_oneshot", "prune", "finetune", "scratch"]
    assert all(row["ms"] > 0 and row["params"] > 0 for row in report.values())
    assert report["finetune"]["macs"] < report["distill"]["macs"]
    for stage in ("teacher", "distill", "prune_oneshot", "prune", "finetune", "scratch"):
        assert (run / stage / "final.pth").exists(), stage
    student, _, meta = load_model(tmp_path / "student.pth")
    distilled = load_model(run / "distill" / "final.pth")[0]
    budget = load_experiment(cfg).compress.prune_macs
    macs = count_macs(student)["per_frame"]
    assert macs <= budget < count_macs(distilled)["per_frame"]
    assert meta["summary"]["macs"] == macs and meta["stage"] == "finetune"
    scratch = read_checkpoint(run / "scratch" / "final.pth")
    assert scratch["arch"] == read_checkpoint(tmp_path / "student.pth")["arch"]
    # --resume on a finished pipeline reuses every stage and reports the same rows
    assert main(["--config", cfg, "--no-progress", f"out_dir={tmp_path}", "--resume", "--speed-frames", "0"]) == 0
    again = json.loads((run / "report.json").read_text())["stages"]
    assert list(again) == list(report) and all(row["reused"] for row in again.values())
    assert all(again[s]["macs"] == report[s]["macs"] for s in report)
