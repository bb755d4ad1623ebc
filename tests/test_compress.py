"""Pruning physically removes channels and matches masking (box-head towers included); distillation
losses, also across teachers with other backbones, heads and map sizes (the padded EfficientNet-Lite0);
the whole teacher -> distil -> prune -> fine-tune pipeline runs end to end on generated data."""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import pytest
import numpy as np
import torch

from siamtrack.checkpoint import load_model, read_checkpoint, save_checkpoint
from siamtrack.compress import (DistillModel, prune_step, prune_to_widths,
                                prune_units, response_kd_loss, select_keep, hint_loss)
from siamtrack.compress.distill import (align_centres, box_kd_loss, distill_loss, ground_truth_loss,
                                        is_box_output, matching_taps)
from siamtrack.compress.prune import taylor_importance
from siamtrack.compress.prune_head import head_units, taylor_modules
from siamtrack.config import CompressConfig, TrackerConfig, load_experiment
from siamtrack.data.synthetic import make_sequence
from siamtrack.models import (ConvStack, SiamNet, XCorrHead, build_model, count_parameters, model_spec,
                              named_spec)
from siamtrack.models.heads import TOWER_BLOCK
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
        before = [hint_loss(a, b).item() for a, b in model.hint_pairs(s_taps, t_taps)]
    after = model.fit_adapters(x)
    assert student.training and torch.equal(bn.running_mean, stats)   # the student is left as it was
    assert len(after) == 2 and all(0.0 <= a < 1.0 for a in after)   # better than predicting zeros
    assert all(a < b for a, b in zip(after, before))
    with torch.no_grad():  # the returned losses are those of the adapters as set (what the loss sees)
        again = [hint_loss(a, b).item() for a, b in model.hint_pairs(s_taps, t_taps)]
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


# ---- the ImageNet teacher (padded EfficientNet-Lite0) and box-head students ----------------------

Z, X = torch.rand(2, 3, 127, 127) * 255, torch.rand(2, 3, 255, 255) * 255
TARGETS = torch.tensor([[4.0, -8.0, 40.0, 30.0], [-10.0, 6.0, 60.0, 50.0]])   # [dx, dy, w, h] search px


def test_align_centres_crops_the_larger_map_on_hand_made_maps():
    big = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32)
    small = torch.zeros(1, 1, 22, 22)
    a, b = align_centres(big, small)
    assert b is small and a.shape[-2:] == (22, 22)
    assert a[0, 0, 0, 0] == 5 * 32 + 5 and a[0, 0, -1, -1] == 26 * 32 + 26   # cells 5..26 of 0..31
    b2, a2 = align_centres(small, big)                                         # either argument order
    assert torch.equal(a2, a) and b2 is small
    # each axis on its own: 25 x 17 against 17 x 25
    r1, r2 = align_centres(torch.zeros(25, 17), torch.zeros(17, 25))
    assert r1.shape == r2.shape == (17, 17)
    with pytest.raises(ValueError, match="odd"):
        align_centres(big, torch.zeros(1, 1, 23, 23))


def _rf_centre(backbone, tap: int, cell: int) -> float:
    """Centre (x, input pixels) of the receptive field of ``cell`` of ``forward_taps`` map ``tap``:
    the middle of the span of input columns with a non-zero gradient."""
    x = (torch.rand(1, 3, 255, 255, generator=torch.Generator().manual_seed(0)) * 255).requires_grad_()
    out = backbone.eval().forward_taps(x)[1][tap]
    out[0, :, cell, cell].abs().sum().backward()
    cols = torch.nonzero(x.grad[0].abs().sum(dim=(0, 1))).flatten()
    return (cols.min().item() + cols.max().item()) / 2


def test_lite0_and_student_hint_taps_align_on_receptive_field_centres():
    """The centred crop pairs cells whose receptive fields are centred within half a cell (1.5 px
    measured) for both matched taps: Lite0's adjust / stage 3 (32x32) against the student's last
    two pointwise convs (22x22, 24x24)."""
    student = build_model(named_spec("student", 0.5)).backbone
    teacher = build_model(named_spec("efficientnet_lite0", adjust=32)).backbone
    taps = matching_taps(student, teacher)
    assert taps == [(10, 3), (8, 2)]                     # the embeddings, then block 8 / stage 3
    for si, ti in taps:
        s_side, t_side = student.tap_sizes(255)[si], teacher.tap_sizes(255)[ti]
        index = torch.arange(t_side).view(1, t_side).expand(t_side, t_side)   # column index of each cell
        cropped, _ = align_centres(index, torch.zeros(s_side, s_side))
        for j in (s_side // 2 - 2, s_side // 2 + 1):
            tj = int(cropped[0, j])
            assert tj == j + (t_side - s_side) // 2
            gap = abs(_rf_centre(student, si, j) - _rf_centre(teacher, ti, tj))
            assert gap < 8 / 2, (si, ti, j, gap)          # nearer than any other teacher cell


@pytest.mark.parametrize("spec", [named_spec("student", 0.5), named_spec("alexnet", 0.25),
                                  named_spec("efficientnet_lite0", adjust=32),
                                  named_spec("efficientnet_lite0", stages=4, adjust=32)],
                         ids=["student", "alexnet", "lite0", "lite0_s4"])
def test_tap_strides_and_sizes_describe_forward_taps(spec):
    backbone = build_model(spec).backbone.eval()
    with torch.no_grad():
        _, small = backbone.forward_taps(torch.zeros(1, 3, 255, 255))
        _, large = backbone.forward_taps(torch.zeros(1, 3, 319, 319))
    assert [t.shape[-1] for t in small] == backbone.tap_sizes(255)
    assert [t.shape[-1] for t in large] == backbone.tap_sizes(319)
    assert [64 // (b.shape[-1] - a.shape[-1]) for a, b in zip(small, large)] == backbone.tap_strides()
    assert backbone.tap_strides()[-1] == 8


def test_response_kd_across_sizes_and_strides():
    teacher = torch.randn(2, 1, 25, 25)
    assert response_kd_loss(teacher[..., 4:21, 4:21], teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert response_kd_loss(teacher, teacher[..., 4:21, 4:21]).item() == pytest.approx(0.0, abs=1e-6)
    assert response_kd_loss(teacher[..., 3:20, 4:21], teacher).item() > 0.01   # one cell off
    # the 17x17 student and the 25x25 Lite0 teacher: one stride, one centre
    DistillModel(build_model(named_spec("student", 0.5)), build_model(named_spec("efficientnet_lite0")), 0)
    layers = [layer for layer in named_spec("student", 0.5)["backbone"] if layer["type"] != "pool"]
    stride4 = SiamNet(ConvStack(layers), XCorrHead())
    with pytest.raises(ValueError, match="different strides"):
        DistillModel(stride4, build_model(named_spec("efficientnet_lite0")), 0)


def test_box_kd_loss_is_zero_on_the_teacher_and_weighted_by_its_score():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(1, 6, 5, 5, generator=g)
    teacher[:, 2:] = torch.rand(1, 4, 5, 5, generator=g) * 30 + 2
    q, b = box_kd_loss(teacher.clone(), teacher)
    assert q.item() == pytest.approx(0.0, abs=1e-6) and b.item() == pytest.approx(0.0, abs=1e-6)
    q, b = box_kd_loss(teacher[..., 1:4, 1:4].clone(), teacher)        # a smaller, centred student
    assert q.item() == pytest.approx(0.0, abs=1e-6) and b.item() == pytest.approx(0.0, abs=1e-6)
    teacher[0, :2] = -30.0                                              # the teacher sees nothing ...
    teacher[0, :2, 2, 2] = 8.0                                          # ... but at the centre cell
    student = teacher.clone()
    student[0, 1:, 0, 0] += 5.0                                         # wrong where it does not count
    assert all(v.item() < 1e-6 for v in box_kd_loss(student, teacher))
    student[0, 1, 2, 2] -= 10.0                                         # wrong where it does
    student[0, 2:, 2, 2] += 5.0
    q, b = box_kd_loss(student, teacher)
    assert q.item() > 0.01 and b.item() > 0.01


@pytest.mark.parametrize("teacher_head, student_head", [("xcorr", "xcorr"), ("xcorr", "box"),
                                                        ("box", "xcorr"), ("box", "box")])
def test_distill_model_with_lite0_teacher_forward_loss_backward(teacher_head, student_head):
    torch.manual_seed(0)
    teacher = build_model(named_spec("efficientnet_lite0", head=teacher_head))
    student = build_model(named_spec("student", 0.5, head=student_head))
    model = DistillModel(student, teacher).train()
    assert not teacher.training and all(not p.requires_grad for p in teacher.parameters())
    assert model.taps == [(10, 3), (8, 2)]
    out = model(Z, X)
    assert out["teacher"].shape[-1] == 25 and out["student"].shape[-1] == 17
    assert [h[0].shape for h in out["hints"]] == [h[1].shape for h in out["hints"]] == \
        [torch.Size([2, 128, 22, 22]), torch.Size([2, 40, 24, 24])]
    loss, stats = distill_loss(CompressConfig())(model, Z, X, TARGETS)
    loss.backward()
    assert torch.isfinite(loss) and all(np.isfinite(v) for v in stats.values())
    both_box = teacher_head == student_head == "box"
    assert {"kd_quality", "kd_box"} <= set(stats) if both_box else not {"kd_quality", "kd_box"} & set(stats)
    assert ("gt_iou" in stats) == (student_head == "box")
    assert is_box_output(out["student"]) == (student_head == "box")
    assert student.backbone.conv_blocks()[0].conv.weight.grad is not None
    assert all(a.weight.grad is not None for a in model.adapters)
    assert all(p.grad is None for p in teacher.parameters())
    if student_head == "box":
        with pytest.raises(ValueError, match="targets"):
            distill_loss(CompressConfig())(model, Z, X, None)


def test_fit_adapters_with_lite0_teacher_and_training_stays_finite():
    """Fitted adapters beat zeros on a random-init Lite0, whose taps have energy ~1e-9: the adapters
    predict the teacher's taps at unit RMS, so SGD at the distill stage's rate does not diverge."""
    torch.manual_seed(0)
    teacher = build_model(named_spec("efficientnet_lite0", head="box", adjust=32))
    student = build_model(named_spec("student", 0.5, head="box"))
    model = DistillModel(student, teacher).train()
    frames = make_sequence(num_frames=8, frame_size=(255, 255), seed=1).frames
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    fitted = model.fit_adapters(x, chunk=3)
    assert len(fitted) == 2 and all(0.0 <= v < 1.0 for v in fitted)
    assert (model.hint_scale > 0).all()
    opt = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    loss_fn = distill_loss(CompressConfig())
    z = torch.from_numpy(np.stack(frames[:4])[:, 64:191, 64:191]).permute(0, 3, 1, 2).float()
    hints = []
    for _ in range(3):
        loss, stats = loss_fn(model, z, x[:4], TARGETS.repeat(2, 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        hints.append(stats["hint"])
    assert all(np.isfinite(h) and h < 2.0 for h in hints), hints


def _masked_box_equivalent(net, keep, head_keep):
    """The full network with removed channels zeroed, backbone and box head (see
    :func:`masked_forward_equivalent`): each pruned channel is zeroed after every block that
    carries it, the towers' depthwise blocks included."""
    masked = masked_forward_equivalent(net, keep)
    head = masked.head

    def mask_hook(module, idx, channels):
        mask = torch.zeros(channels)
        mask[idx] = 1.0
        module.register_forward_hook(lambda _m, _i, out, m=mask: out * m.view(1, -1, 1, 1))

    for tower in ("cls_tower", "box_tower"):
        seq = getattr(head, tower)
        idx, channels = keep[-1], head.channels                  # the embedding, then each unit
        for k in range(head.tower):
            if idx is not None:
                mask_hook(seq[k * TOWER_BLOCK + 2], idx, channels)  # depthwise block: its input's channels
            idx = None
            if head_keep is not None:
                idx, channels = head_keep[head_units(head).index(f"{tower}.{k}")], head.width
                mask_hook(seq[k * TOWER_BLOCK + 5], idx, channels)  # pointwise block: the unit's
    return masked


@pytest.mark.parametrize("prune_towers", [True, False])
def test_pruned_box_head_student_equals_the_masked_one(prune_towers):
    net = _randomise_bn(build_model(named_spec("student", 0.5, head="box", tower=2)))
    units = prune_units(net.backbone)
    g = torch.Generator().manual_seed(1)
    keep = [select_keep(torch.rand(u.channels, generator=g), u.channels // 2, u.partitions) for u in units]
    head_keep = [select_keep(torch.rand(net.head.width, generator=g), 16, 1)
                 for _ in head_units(net.head)] if prune_towers else None
    small = prune_to_widths(net, keep, head_keep).eval()
    spec = model_spec(small)
    assert small.head.channels == keep[-1].numel() == 24
    assert small.head.width == (16 if prune_towers else 48)
    assert spec["head"]["width"] == small.head.width                # recorded: it differs from 24
    assert model_spec(build_model(spec)) == spec
    masked = _masked_box_equivalent(net, keep, head_keep).eval()
    with torch.no_grad():
        torch.testing.assert_close(small(Z, X), masked(Z, X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("criterion", ["bn", "l1", "taylor"])
def test_prune_box_head_student_to_a_mac_budget(criterion):
    torch.manual_seed(0)
    net = build_model(named_spec("student", head="box"))
    before = count_macs(net)["per_frame"]
    scores = None
    if criterion == "taylor":
        scores = taylor_importance(net.train(), [(Z, X, TARGETS)],
                                   lambda out, t: ground_truth_loss(out, t, stride=8)[0])
        assert set(scores) == set(range(len(net.backbone.conv_blocks()))) | set(taylor_modules(net.head))
        assert all(scores[k].sum() > 0 for k in head_units(net.head))
    budget = before / 3
    small = prune_step(net, budget, criterion, scores, round_to=8).eval()
    spec = model_spec(small)
    assert model_spec(build_model(spec)) == spec
    macs = count_macs(small)
    assert macs["scale_num"] == 1 and budget / 2 < macs["per_frame"] <= budget
    assert small.head.width < net.head.width and small.head.width % 8 == 0   # the towers shrank too
    with torch.no_grad():
        assert small(Z, X).shape == (2, 6, 17, 17)


@pytest.mark.slow
def test_pipeline_lite0_box_teacher_to_box_student(tmp_path):
    """distill -> prune -> finetune -> scratch from an EfficientNet-Lite0 box-head teacher checkpoint
    into a box-head student (``compress.student.options: {head: box}``), on generated data."""
    from siamtrack.pipeline import main
    torch.manual_seed(0)
    teacher = build_model(named_spec("efficientnet_lite0", head="box", adjust=32)).eval()
    save_checkpoint(tmp_path / "teacher.pth", teacher, TrackerConfig(), {"stage": "teacher"})
    budget = 6.0e6
    cfg = str(REPO / "experiments" / "tiny_student.yaml")
    assert main(["--config", cfg, "--no-progress", f"out_dir={tmp_path}", "--speed-frames", "0",
                 f"teacher_weights={tmp_path / 'teacher.pth'}", "stages=[teacher,distill,prune,finetune,scratch]",
                 "compress.student.options.head=box", f"compress.prune_macs={budget}",
                 "compress.hint_fit_crops=16"]) == 0
    run = tmp_path / "tiny_student"
    report = json.loads((run / "report.json").read_text())["stages"]
    assert list(report) == ["teacher", "distill", "prune_oneshot", "prune", "finetune", "scratch"]
    distilled = load_model(run / "distill" / "final.pth")[0]
    final = load_model(run / "finetune" / "final.pth")[0]
    assert distilled.head.kind == final.head.kind == "box"
    assert count_macs(final)["per_frame"] <= budget < count_macs(distilled)["per_frame"]
    assert report["finetune"]["search_crops"] == 1
    assert read_checkpoint(run / "scratch" / "final.pth")["arch"] == read_checkpoint(run / "finetune" / "final.pth")["arch"]
    log = [json.loads(line) for line in (run / "distill" / "log.jsonl").read_text().splitlines()]
    assert "kd_box" in log[0] and all(np.isfinite(v) for v in log[0].values() if isinstance(v, float))
