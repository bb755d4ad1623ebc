"""Loss, resumable trainer (stop/kill and resume reach the same weights), train.py's one-line errors
and a 2-process DDP run."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from siamtrack import pipeline
from siamtrack.checkpoint import read_checkpoint, sha256_file
from siamtrack.compress.kd import ground_truth_loss
from siamtrack.config import TrainConfig
from siamtrack.training.losses import (balanced_logistic_loss, box_targets, hard_negative_weights,
                                       logistic_labels, shifted_logistic_labels)

REPO = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, str(REPO / "experiments" / "train.py"), "--config",
         str(REPO / "experiments" / "tiny.yaml"), "--no-progress", "--speed-frames", "0"]


def test_labels_positive_disc_and_balanced_weights():
    labels, weights = logistic_labels(17, r_pos=16, stride=8)
    # radius 16 px = 2 cells: the 13 cells of the discrete disc of radius 2 around (8, 8)
    assert labels.sum().item() == 13
    assert labels[8, 8] == 1 and labels[8, 10] == 1 and labels[8, 11] == 0 and labels[9, 10] == 0
    assert torch.isclose(weights[labels == 1].sum(), torch.tensor(0.5))
    assert torch.isclose(weights[labels == 0].sum(), torch.tensor(0.5))


def test_absent_target_is_all_background_in_both_heads_labels():
    """A negative pair's ``[0, 0, 0, 0]`` target: no positive cell, every cell a weighted negative;
    a present target in the same batch keeps its disc; a centre-only ``(B, 2)`` batch is unchanged."""
    targets = torch.tensor([[8.0, 0.0, 30.0, 40.0], [0.0, 0.0, 0.0, 0.0]])
    labels, weights = shifted_logistic_labels(17, targets)
    assert labels[0].sum() == 13 and labels[1].sum() == 0
    assert torch.isclose(weights[1].sum(), torch.tensor(0.5)) and bool((weights[1] > 0).all())
    assert torch.equal(shifted_logistic_labels(17, targets[:, :2])[0][0], labels[0])
    assert shifted_logistic_labels(17, targets[:, :2])[0][1].sum() == 13  # no size: present
    pos, _, _ = box_targets(17, targets, stride=8)
    assert pos[0].any() and not pos[1].any()
    # the loss of an absent target falls as the response falls everywhere, wherever the peak is
    flat = torch.zeros(1, 1, 17, 17)
    peaked = flat.clone()
    peaked[0, 0, 8, 8] = 5.0
    absent = targets[1:]
    assert balanced_logistic_loss(flat - 3, offsets=absent) < balanced_logistic_loss(flat, offsets=absent)
    assert balanced_logistic_loss(peaked, offsets=absent) > balanced_logistic_loss(flat, offsets=absent)


def test_loss_prefers_centred_peaks():
    labels, _ = logistic_labels(17)
    good = (labels * 20 - 10).expand(2, 1, 17, 17)
    bad = -good
    flat = torch.zeros(2, 1, 17, 17)
    lg, lb, lf = (balanced_logistic_loss(t).item() for t in (good, bad, flat))
    assert lg < 1e-3 < lf < lb
    assert lf == pytest.approx(torch.log(torch.tensor(2.0)).item(), rel=1e-5)   # BCE of p = 0.5


def test_hard_negatives_lean_on_the_background_that_scores_like_the_target():
    """With hard-negative mining the negatives keep their half of the weight, but half of it sits on
    the k best-scoring background cells: a map with one bright distractor beside the target costs
    more than with uniform negatives, and the gradient on that cell is 20 times larger or more (k 4); positives
    and an absent target's all-background map keep their totals; k 0 is SiamFC's loss exactly."""
    targets = torch.tensor([[0.0, 0.0, 40.0, 40.0], [0.0, 0.0, 0.0, 0.0]])
    labels, weights = shifted_logistic_labels(17, targets)
    logits = torch.full((2, 1, 17, 17), -4.0)
    logits[0, 0, 8, 8] = 4.0
    logits[:, :, 8, 13] = 3.0                                    # a look-alike 5 cells beside the target
    hard = hard_negative_weights(logits, labels, weights, k=4, share=0.5)
    for b in range(2):
        for part in (labels[b] == 1, labels[b] == 0):
            assert torch.isclose(hard[b][part].sum(), weights[b][part].sum())
    assert hard[0, 0, 8, 13] > 20 * weights[0, 0, 8, 13]
    assert torch.equal(hard_negative_weights(logits, labels, weights, k=0, share=0.5), weights)
    distractor = logits.clone().requires_grad_()
    balanced_logistic_loss(distractor, offsets=targets, hard_negatives=4).backward()
    plain = logits.clone().requires_grad_()
    balanced_logistic_loss(plain, offsets=targets).backward()
    assert distractor.grad[0, 0, 8, 13] > 20 * plain.grad[0, 0, 8, 13] > 0
    assert (balanced_logistic_loss(logits, offsets=targets, hard_negatives=4)
            > balanced_logistic_loss(logits, offsets=targets))
    # the student's ground-truth term reads the same settings
    assert torch.isclose(ground_truth_loss(logits, targets, hard_negatives=4)[0],
                         balanced_logistic_loss(logits, offsets=targets, hard_negatives=4))
    with pytest.raises(ValueError, match="hard_share"):
        TrainConfig(hard_share=1.5)


def _train(out: Path, *extra: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(TRAIN + [f"out_dir={out}", *extra], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"))


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)["state_dict"]


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def uninterrupted_final(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("full")
    proc = _train(out)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out / "tiny" / "teacher" / "final.pth"


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_final) -> dict[str, torch.Tensor]:
    return _weights(uninterrupted_final)


def test_warm_start_trains_on_from_given_weights_under_a_fresh_schedule(tmp_path, uninterrupted_final):
    proc = _train(tmp_path, f"warm_start={uninterrupted_final}", "train.epochs=1", "train.lr=0.004",
                  "train.log_every=1")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = read_checkpoint(tmp_path / "tiny" / "teacher" / "final.pth")
    origin = ckpt["meta"]["warm_start"]
    assert origin["path"] == str(uninterrupted_final)
    assert origin["sha256"] == sha256_file(uninterrupted_final)
    assert origin["pairs_seen"] == read_checkpoint(uninterrupted_final)["meta"]["pairs_seen"]
    # the new schedule starts at its own peak, not where the parent's decayed to
    first = json.loads((tmp_path / "tiny" / "teacher" / "log.jsonl").read_text().splitlines()[0])
    assert first["lr"] == pytest.approx(0.004)
    start, end = _weights(uninterrupted_final), _weights(tmp_path / "tiny" / "teacher" / "final.pth")
    assert start.keys() == end.keys()
    # it trained on from the parent: moved away from it, but far less than a fresh init would be
    moved = max((end[k].float() - start[k].float()).abs().max().item() for k in start if "weight" in k)
    assert 0 < moved < 0.5


def test_warm_start_parts_moves_the_backbone_under_a_new_head(tmp_path, uninterrupted_final):
    """A box head trained on the backbone of an xcorr run: the backbone's weights come from the
    parent (an lr of ~0 keeps them there), the head is new, and the meta says which parts were taken."""
    proc = _train(tmp_path, f"warm_start={uninterrupted_final}", "warm_start_parts=[backbone]",
                  "model.options={head: box}", "train.epochs=1", "train.lr=1e-12")
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = read_checkpoint(tmp_path / "tiny" / "teacher" / "final.pth")
    assert ckpt["meta"]["warm_start"]["parts"] == ["backbone"]
    assert ckpt["arch"]["head"]["type"] == "box"
    parent, child = _weights(uninterrupted_final), ckpt["state_dict"]
    backbone = [k for k in parent if k.startswith("backbone.")]
    assert backbone and all(k in child for k in backbone)
    # learned tensors only: BN running statistics move with every training batch, whatever the lr
    for k in (k for k in backbone if "running_" not in k and "num_batches" not in k):
        torch.testing.assert_close(child[k].float(), parent[k].float(), rtol=0, atol=1e-6, msg=k)
    assert any(k.startswith("head.box_out") for k in child)


def test_warm_start_parts_refuses_a_backbone_that_does_not_fit():
    from siamtrack.models import build_model, named_spec

    narrow = build_model(named_spec("alexnet", 0.25))
    wide = build_model(named_spec("alexnet", 0.5))
    with pytest.raises(ValueError, match="'backbone' of the warm-start weights does not fit"):
        pipeline.warm_start_parts(narrow, wide, ["backbone"])
    with pytest.raises(ValueError, match="'neck' is not a submodule"):
        pipeline.warm_start_parts(narrow, wide, ["neck"])


def test_stop_mid_epoch_then_resume_matches_uninterrupted(tmp_path, uninterrupted):
    first = _train(tmp_path, "--max-steps", "3")          # 4 steps per epoch: stops inside epoch 1
    assert first.returncode == 0, first.stderr[-2000:]
    state = read_checkpoint(tmp_path / "tiny" / "teacher" / "last.pth")["training"]
    assert (state["epoch"], state["step_in_epoch"]) == (0, 3)
    second = _train(tmp_path, "--resume")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "resumed at epoch 0, step 3" in second.stdout
    _assert_same(_weights(tmp_path / "tiny" / "teacher" / "final.pth"), uninterrupted)


def _saved_at(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def _logged_steps(log: Path, offset: int) -> int:
    """Highest ``step`` among the log lines written after byte ``offset`` (0 when none yet)."""
    if not log.exists():
        return 0
    with open(log, "rb") as fh:
        fh.seek(offset)
        lines = fh.read().decode("utf-8", "replace").splitlines()
    steps = [json.loads(ln).get("step", 0) for ln in lines if ln.startswith("{\"epoch\": ") and ln.endswith("}")]
    return max(steps, default=0)


def test_repeated_sigkill_at_random_points_then_resume_matches_uninterrupted(tmp_path, uninterrupted):
    """SIGKILL three times; each kill is sent as soon as the (re)started run has saved a checkpoint
    and logged a randomly chosen step (2..6 of the 8, increasing), so it lands inside the run by
    construction (at least two steps and their saves are still to come), in a step or inside a save.
    After every kill the latest checkpoint loads and progress never goes back; a last --resume
    reaches the same weights. (A timer after the first save raced the run's end on a busy machine.)"""
    rng = random.Random(5)
    last = tmp_path / "tiny" / "teacher" / "last.pth"
    log = tmp_path / "tiny" / "teacher" / "log.jsonl"
    targets = sorted(rng.sample(range(2, 7), 3))
    steps = []
    for attempt, target in enumerate(targets):
        before = _saved_at(last)
        offset = log.stat().st_size if log.exists() else 0
        proc = subprocess.Popen(TRAIN + [f"out_dir={tmp_path}", "train.checkpoint_every_s=0",
                                         "train.log_every=1"]  # logging only: same weights
                                + (["--resume"] if attempt else []),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
        deadline = time.time() + 180
        while (time.time() < deadline and proc.poll() is None
               and (_saved_at(last) == before or _logged_steps(log, offset) < target)):
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL, f"kill {attempt + 1} came after the run ended"
        steps.append(read_checkpoint(last)["training"]["global_step"])  # the latest always loads
    assert steps == sorted(steps) and steps[0] >= 1, steps
    resumed = _train(tmp_path, "--resume", "train.checkpoint_every_s=0")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same(_weights(tmp_path / "tiny" / "teacher" / "final.pth"), uninterrupted)
    assert not list(last.parent.glob(".last.pth.*.tmp"))  # partial saves were cleaned up


TINY = str(REPO / "experiments" / "tiny.yaml")


def _bad_train_args(tmp: Path) -> dict[str, tuple[list[str], str]]:
    return {
        "no --config": ([], "the following arguments are required: --config"),
        "unknown option": (["--config", TINY, "--bogus"], "unrecognized arguments: --bogus"),
        "--max-steps not a number": (["--config", TINY, "--max-steps", "ten"], "invalid int value: 'ten'"),
        "--max-steps 0": (["--config", TINY, "--max-steps", "0"], "--max-steps must be at least 1"),
        "missing config": (["--config", str(tmp / "nope.yaml")], "nope.yaml"),
        "unknown override key": (["--config", TINY, "train.nope=1"], "nope"),
        "unknown stage": (["--config", TINY, "--stages", "teacher,polish"], "unknown stage(s) ['polish']"),
        "--ship without =": (["--config", TINY, "--ship", "teacher"], "--ship takes STAGE=PATH"),
        "missing teacher_weights": (["--config", TINY, f"out_dir={tmp}", f"teacher_weights={tmp / 'no.pth'}"],
                                    f"weights file not found: {tmp / 'no.pth'}"),
        "missing warm_start": (["--config", TINY, f"out_dir={tmp}", f"warm_start={tmp / 'gone.pth'}"],
                               f"weights file not found: {tmp / 'gone.pth'}"),
        "warm_start_parts without warm_start": (["--config", TINY, f"out_dir={tmp}", "warm_start_parts=[backbone]"],
                                                "warm_start_parts=['backbone'] needs warm_start=PATH"),
        "corrupt last.pth on --resume": (["--config", TINY, f"out_dir={tmp}", "--resume", "--no-progress"],
                                         f"{tmp / 'tiny' / 'teacher' / 'last.pth'}: corrupt or truncated"),
    }


@pytest.mark.parametrize("case", list(_bad_train_args(Path("/x"))))
def test_train_bad_input_is_one_line_and_exit_code_2(case, tmp_path, capfd, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may land in the default ./runs, whatever happens
    argv, message = _bad_train_args(tmp_path)[case]
    (tmp_path / "tiny" / "teacher").mkdir(parents=True)
    (tmp_path / "tiny" / "teacher" / "last.pth").write_bytes(b"PK\x03\x04 cut short by a full disk")
    rc = pipeline.main(argv)
    err = capfd.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert err[0].startswith("train.py: error:") and message in err[0], err[0]


def test_two_process_ddp_run(tmp_path):
    # --standalone: a free port of its own (a fixed port failed once, in a suite run right after another)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] \
        + TRAIN[1:] + [f"out_dir={tmp_path}", "--max-steps", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = read_checkpoint(tmp_path / "tiny" / "teacher" / "last.pth")
    # 2 ranks x batch 4 per step: 2 steps saw 16 pairs
    assert ckpt["meta"]["pairs_seen"] == 16
    assert ckpt["training"]["global_step"] == 2
