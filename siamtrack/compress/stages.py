"""Student stages of the training pipeline: ``distill``, ``prune``, ``finetune`` and the ``scratch``
ablation. Each takes the run's :class:`~siamtrack.training.stages.StageContext` (config, resume flag,
results and the networks of earlier stages; the pipeline implements it) and returns the stage's
network; :data:`STAGES` is what the pipeline registers; all of them write
``<run>/<stage>/final.pth`` and a summary row (cost and accuracy) into ``pipeline.results``.

Evidence that each technique earns its place comes from two extra rows:
``prune_oneshot`` (the distilled student pruned to the budget in one step, no fine-tuning) and
``scratch`` (the final student architecture trained from scratch on ground truth alone, for as many
epochs as the distilled one).

The student is ``compress.student`` (a :class:`~siamtrack.config.ModelConfig`: name, width, out_scale
and the builder's ``options``, e.g. ``{head: box}``); the teacher may have another backbone and head
(e.g. the ImageNet EfficientNet-Lite0, xcorr or box): :mod:`.distill` aligns the two. The
ground-truth loss, the Taylor pruning scores included, is the student's own (logistic or box head).
"""
from __future__ import annotations

from dataclasses import replace

import torch

from ..checkpoint import load_model, save_checkpoint
from ..models import SiamNet, build_configured, build_model, geometry, model_spec
from ..training.stages import Stage, StageContext
from .distill import DistillModel, distill_loss, ground_truth_loss
from .narrow import narrow_from
from .prune import per_frame_macs, prune_step, taylor_importance


def _net(p: StageContext, stage: str) -> SiamNet:
    """The network a finished earlier stage produced (this run, or its ``final.pth`` on disk)."""
    if stage in p.nets:
        return p.nets[stage]
    if stage == "teacher":
        return p.teacher()
    final = p.stage_dir(stage) / "final.pth"
    if not final.exists():
        raise ValueError(f"stage {stage!r} has not run yet (no {final}); list it earlier in `stages`")
    return load_model(final)[0]


def _geometry(p: StageContext, net: SiamNet):
    """``net``'s stride and offset at the run's crop sizes: the student's labels must agree with it."""
    crops = p.cfg.tracker
    return geometry(net, crops.exemplar_sz, crops.instance_sz)


def _loss(p: StageContext, net: SiamNet):
    """The distillation loss; labels use ``net``'s stride and offset (the student's, read from the network)."""
    t, geo = p.cfg.train, _geometry(p, net)
    return distill_loss(p.cfg.compress, t.r_pos, t.r_neg, geo.stride, geo.offset, t.hard_negatives, t.hard_share)


def _few_pairs(p: StageContext, count: int):
    """The first ``count`` training pairs of the run's data (for statistics, not for training)."""
    return p.dataset(replace(p.cfg.data, pairs_per_epoch=count))


def _distill_model(p: StageContext, student: SiamNet, teacher: SiamNet) -> DistillModel:
    """Student + frozen teacher with hint adapters fitted by least squares on
    ``compress.hint_fit_crops`` search crops of the stage's data (not left random: see :mod:`.distill`)."""
    model = DistillModel(student, teacher, p.cfg.compress.hint_layers)
    if model.taps:
        data = _few_pairs(p, p.cfg.compress.hint_fit_crops)
        x = torch.stack([data[i][1] for i in range(len(data))])
        losses = model.fit_adapters(x)
        print(f"hint adapters fitted on {len(x)} crops: hint losses {[round(v, 3) for v in losses]}", flush=True)
    return model


def initial_student(p: StageContext, teacher: SiamNet) -> tuple[SiamNet, dict]:
    """The student before distillation and where its weights came from (``compress.student_init``:
    random, the teacher's selected channels, or those of another checkpoint)."""
    cc = p.cfg.compress
    student = build_configured(cc.student)
    if cc.student_init in ("", "random"):
        return student, {"student_init": "random"}
    if cc.student_init == "teacher":
        return narrow_from(teacher, student), {"student_init": "teacher (|gamma|-selected channels)"}
    source, _, meta = load_model(cc.student_init)
    return narrow_from(source, student), {"student_init": {"path": cc.student_init, "selected": "|gamma|",
                                                           "init": meta.get("init")}}


def distill(p: StageContext) -> SiamNet:
    """Train the student with teacher supervision (response + hints + ground truth)."""
    done = p.finished("distill")
    if done is not None:
        return done
    torch.manual_seed(p.cfg.train.seed)
    teacher = _net(p, "teacher")
    student, origin = initial_student(p, teacher)
    model = _distill_model(p, student, teacher)
    return p.train_stage("distill", model, student, _loss(p, student), extra_meta=origin)


def _taylor_scores(p: StageContext, net: SiamNet, batches: int = 4):
    if p.cfg.compress.prune_criterion != "taylor":
        return None
    loader = torch.utils.data.DataLoader(_few_pairs(p, batches * p.cfg.train.batch_size),
                                         batch_size=p.cfg.train.batch_size)
    t, geo = p.cfg.train, _geometry(p, net)
    return taylor_importance(net.train(), loader, lambda out, targets: ground_truth_loss(
        out, targets, t.r_pos, t.r_neg, geo.stride, geo.offset, t.hard_negatives, t.hard_share)[0])


def prune(p: StageContext) -> SiamNet:
    """Prune the distilled student to ``compress.prune_macs`` per frame in ``prune_steps`` steps,
    distilling for ``step_pairs`` pairs after each; also records the one-shot, no-fine-tune ablation."""
    if p.resume and (p.stage_dir("prune") / "final.pth").exists():
        p.finished("prune_oneshot")          # its row belongs in the resumed run's table too
    done = p.finished("prune")
    if done is not None:
        return done
    cc = p.cfg.compress
    if cc.prune_macs <= 0:
        raise ValueError("the prune stage needs compress.prune_macs (MACs per tracked frame) > 0")
    scales = p.cfg.tracker.scale_num
    student, teacher = _net(p, "distill"), _net(p, "teacher")
    oneshot = prune_step(student, cc.prune_macs, cc.prune_criterion, _taylor_scores(p, student), scales,
                         cc.prune_round_to)
    p.finish_stage("prune_oneshot", oneshot, {"stage": "prune_oneshot", "note": "no fine-tuning"})

    net, start = student, per_frame_macs(student, scales)
    meta: dict = {}
    step_cfg = replace(p.cfg.train, epochs=1, lr=cc.step_lr, final_lr=cc.step_lr)
    step_data = replace(p.cfg.data, pairs_per_epoch=cc.step_pairs)
    for k in range(1, cc.prune_steps + 1):
        step_dir = p.stage_dir("prune") / f"step{k}"
        if p.resume and (step_dir / "final.pth").exists():
            net = load_model(step_dir / "final.pth")[0]
            continue
        target = start * (cc.prune_macs / start) ** (k / cc.prune_steps)
        net = prune_step(net, target, cc.prune_criterion, _taylor_scores(p, net), scales, cc.prune_round_to)
        net, meta = p.fit("prune", _distill_model(p, net, teacher), net, _loss(p, net),
                          train_cfg=step_cfg, data_cfg=step_data, run_dir=step_dir,
                          extra_meta={"prune_step": k, "target_macs": target})
        save_checkpoint(step_dir / "final.pth", net, p.cfg.tracker, meta)
    return p.finish_stage("prune", net, meta)


def finetune(p: StageContext) -> SiamNet:
    """Distil the pruned student further at a low learning rate."""
    done = p.finished("finetune")
    if done is not None:
        return done
    cc = p.cfg.compress
    net = _net(p, "prune")
    cfg = replace(p.cfg.train, epochs=cc.finetune_epochs, lr=cc.finetune_lr, final_lr=cc.finetune_lr / 10)
    return p.train_stage("finetune", _distill_model(p, net, _net(p, "teacher")), net,
                         _loss(p, net), train_cfg=cfg)


def scratch(p: StageContext) -> SiamNet:
    """Ablation: the final student architecture trained on ground truth only, no teacher."""
    done = p.finished("scratch")
    if done is not None:
        return done
    final_stage = next(s for s in ("finetune", "prune", "distill") if s in p.nets or
                       (p.stage_dir(s) / "final.pth").exists())
    torch.manual_seed(p.cfg.train.seed)
    net = build_model(model_spec(_net(p, final_stage)))
    epochs = p.cfg.train.epochs + p.cfg.compress.finetune_epochs
    return p.train_stage("scratch", net, net, train_cfg=replace(p.cfg.train, epochs=epochs))


#: The stages this package adds to the pipeline, by name (in the order they may run).
STAGES: dict[str, Stage] = {"distill": distill, "prune": prune, "finetune": finetune, "scratch": scratch}
