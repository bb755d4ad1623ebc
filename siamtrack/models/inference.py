"""Inference-time rewrites that keep a network's outputs and make the per-frame path cheaper.

Training and checkpoints use the plain network; the tracker runs a rewritten copy:

* every ``Conv2d`` directly followed by a ``BatchNorm2d`` (eval statistics) becomes one conv, which
  removes a full pass over each feature map;
* weights and activations go ``channels_last`` on CPU, where oneDNN's convolutions and, above all,
  max-pooling are several times faster than in NCHW for these small networks (measured in the
  commit that added this module).

It also holds the :class:`Engine` interface the tracking loop talks to and its PyTorch
implementation, :class:`TorchEngine` (the onnxruntime one lives in :mod:`siamtrack.deploy.runtime`).
An engine takes the tracker's crops as they come out of ``crop_squares`` (planar RGB ``uint8``
``(N, 3, H, W)`` batches) and owns everything after that: dtype, device and the network itself.
"""
from __future__ import annotations

import copy
from typing import Any, Protocol

import numpy as np

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fuse_conv_bn(module: nn.Module) -> nn.Module:
    """In place: fold each eval-mode ``BatchNorm2d`` into the ``Conv2d`` right before it in a
    ``nn.Sequential`` (the BN is replaced by ``nn.Identity``). Returns ``module``."""
    for child in module.children():
        fuse_conv_bn(child)
    if isinstance(module, nn.Sequential):
        for i in range(len(module) - 1):
            conv, bn = module[i], module[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                module[i] = fuse_conv_bn_eval(conv.eval(), bn.eval())
                module[i + 1] = nn.Identity()
    return module


def fold_for_inference(net: nn.Module) -> nn.Module:
    """In place: conv+BN pairs folded (:func:`fuse_conv_bn`) and, for a backbone that normalises its
    input (``fold_input_std``), the input std folded into its first convolution. Returns ``net``."""
    fuse_conv_bn(net)
    for module in net.modules():
        fold = getattr(module, "fold_input_std", None)
        if callable(fold):
            fold()
    return net


def inference_copy(net: nn.Module, device: torch.device | str = "cpu") -> nn.Module:
    """A folded (:func:`fold_for_inference`), eval-mode copy of ``net`` on ``device`` (``channels_last``
    on CPU); ``net`` is untouched."""
    fast = fold_for_inference(copy.deepcopy(net).eval()).to(device)
    if torch.device(device).type == "cpu":
        fast = fast.to(memory_format=torch.channels_last)
    return fast.eval()


#: Backends an engine may be (``Engine.backend``).
BACKENDS = ("torch", "onnxruntime")


class Engine(Protocol):
    """The network side of the tracking loop.

    * ``embed_exemplar(z)``: ``(1, 3, ez, ez)`` uint8 -> the exemplar embedding (opaque to the
      tracker, computed once at ``init``);
    * ``respond(kernel, x)``: ``(S, 3, iz, iz)`` uint8 -> ``(S, r, r)`` float32 numpy logits (xcorr
      head), or ``(S, 6, r, r)`` float32 (box head: ``siamtrack.models.heads.BOX_OUTPUTS``);
    * ``respond_features(kernel, x)``: the same and the search embedding it came from, ``(S, C, h, w)``
      float32 numpy: the tracker's appearance term reads the chosen box's embedding from it instead
      of running the backbone on one more crop.
    """

    backend: str

    def embed_exemplar(self, z: np.ndarray) -> Any: ...

    def respond(self, kernel: Any, x: np.ndarray) -> np.ndarray: ...

    def respond_features(self, kernel: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


class TorchEngine:
    """PyTorch eager on ``device`` with a fused (conv+BN), ``channels_last`` copy of ``net``."""

    backend = "torch"
    precision = "fp32"

    def __init__(self, net: nn.Module, device: torch.device) -> None:
        self.device = device
        self.net = inference_copy(net, device)

    def _to_batch(self, crops: np.ndarray) -> torch.Tensor:
        """``(N, 3, H, W)`` uint8 -> float 0..255 on the device (the net's contract)."""
        return torch.from_numpy(crops).to(self.device, non_blocking=True).float()

    def embed_exemplar(self, z: np.ndarray) -> torch.Tensor:
        from .siamese import exemplar_embedding

        with torch.inference_mode():
            return exemplar_embedding(self.net, self._to_batch(z))

    def _search(self, kernel: torch.Tensor, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """``(engine_output(head output), search features)`` on the device."""
        features = self.net.backbone(self._to_batch(x))
        return engine_output(self.net.head(kernel, features)), features

    def respond(self, kernel: torch.Tensor, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            # one device -> host copy (one sync on CUDA); the post-processing is faster on the host
            return self._search(kernel, x)[0].float().cpu().numpy()

    def respond_features(self, kernel: torch.Tensor, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with torch.inference_mode():
            out, features = self._search(kernel, x)
            return out.float().cpu().numpy(), features.float().cpu().contiguous().numpy()


def engine_output(out: torch.Tensor) -> torch.Tensor:
    """A head's ``(S, C, r, r)`` output as engines return it: ``(S, r, r)`` for the one-channel xcorr
    head, ``(S, 6, r, r)`` as it is for the box head (:class:`Engine`)."""
    return out[:, 0] if out.shape[1] == 1 else out
