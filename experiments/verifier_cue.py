"""Can a second network tell the teacher's wrong boxes apart? The teacher tracks every frame of the
training roots and val (re-detection off); per frame the confidence's features, the IoU and a second
network's appearance of the teacher's box (student v5's exemplar embedding of a 127 crop at the box
against its first frame's, whole and on the central half). ``--analyse`` fits the confidence without
and with those terms (grouped 5-fold by sequence, the shipped rules) and prints ROC AUC and flag rates::

    PYTHONPATH=. python experiments/verifier_cue.py --output runs/dev5/ver_val.npz ../shared/data/got10k/val
    PYTHONPATH=. python experiments/verifier_cue.py --output runs/dev5/ver_train.npz \
        ../shared/data/got10k/train ../shared/data/got10k-extra/train ../data/sources-v3/train
    PYTHONPATH=. python experiments/verifier_cue.py --analyse runs/dev5/ver_train.npz runs/dev5/ver_val.npz

Result (weights/MODEL_CARD.md): the core term alone separates the teacher's val frames at ROC AUC
0.904, but fitted with the rest on the training roots (which student v5 trained on, so its embedding
looks more reliable there than on new video) val reaches 0.822 and the flag catches fewer lost val
frames (14 %): not shipped.
"""
from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import torch

from cue_study import fit_line

from siamtrack.evaluation import calibrate
from siamtrack.geometry import context_size, crop_squares
from siamtrack.tracking.confidence import appearance_terms
from siamtrack.tracking.tracker import SiamFCTracker


class Verifier:
    """A second network's appearance of the tracked box against its first frame's (a
    ``calibrate.collect`` cue): ``embed(image, tracker)`` is that network's embedding of the box."""

    def __init__(self, embed: Callable[[np.ndarray, SiamFCTracker], np.ndarray]) -> None:
        self.embed = embed

    def start(self, img: np.ndarray, tracker: SiamFCTracker) -> None:
        self.reference = self.embed(img, tracker)

    def __call__(self, img: np.ndarray, tracker: SiamFCTracker) -> tuple[float, float]:
        return appearance_terms(self.embed(img, tracker), self.reference)


def embedder(name: str) -> Callable[[np.ndarray, SiamFCTracker], np.ndarray]:
    """The verifier's embedding of the tracker's box: a tracker's exemplar branch (weights ``name``,
    a 127 crop with its context) or, for ``imagenet``, EfficientNet-Lite0's pooled ImageNet features
    of a 128-pixel crop with a quarter of the context."""
    if name == "imagenet":  # never trained on tracking data
        from siamtrack.models.efficientnet import load_imagenet_classifier

        net = load_imagenet_classifier("lite0")[0]

        @torch.no_grad()
        def imagenet(img: np.ndarray, tracker: SiamFCTracker) -> np.ndarray:
            side = context_size(*tracker.target_sz, 0.25)
            x = torch.from_numpy(crop_squares(img, tracker.center, [side], 128, tracker.avg_color)).float()
            return net.head(net.stages(net.stem((x - net.mean) / net.std))).mean(dim=(2, 3)).numpy()[0]
        return imagenet
    second = SiamFCTracker.from_pretrained(name, threads=1)

    def exemplar_branch(img: np.ndarray, tracker: SiamFCTracker) -> np.ndarray:
        side = context_size(*tracker.target_sz, second.cfg.context)
        z = crop_squares(img, tracker.center, [side], second.cfg.exemplar_sz, tracker.avg_color)
        return np.asarray(second.engine.embed_exemplar(z), dtype=np.float32)
    return exemplar_branch


def collect(roots: list[Path], weights: str, verifier: str) -> dict[str, np.ndarray]:
    tracker = SiamFCTracker.from_pretrained(weights, device="cpu", threads=1)
    out = calibrate.collect(tracker, roots, cue=Verifier(embedder(verifier)), log=functools.partial(print, flush=True))
    out["verifier"] = out.pop("cue")
    return out


def analyse(train_path: str, val_path: str) -> None:
    train, val = dict(np.load(train_path)), dict(np.load(val_path))
    for label, extra in (("confidence features", None), ("+ verifier, whole and core", [0, 1]),
                         ("+ verifier core", [1])):
        print(fit_line(label, train, val, None if extra is None else train["verifier"][:, extra],
                       None if extra is None else val["verifier"][:, extra]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="*", type=Path)
    parser.add_argument("--output")
    parser.add_argument("--weights", default="teacher")
    parser.add_argument("--verifier", default="student@onnx",
                        help="weights of the second network, or 'imagenet' (EfficientNet-Lite0's ImageNet features)")
    parser.add_argument("--analyse", nargs=2, metavar=("TRAIN_NPZ", "VAL_NPZ"))
    args = parser.parse_args(argv)
    if args.analyse:
        analyse(*args.analyse)
        return 0
    if not args.roots or not args.output:
        parser.error("give the roots to track and --output (or --analyse TRAIN_NPZ VAL_NPZ)")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    np.savez(args.output, **collect(args.roots, args.weights, args.verifier))
    print("wrote", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
