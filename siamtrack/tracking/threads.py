"""The thread policy for tracking: how many intra-op threads the network and OpenCV get.

Why one thread by default: a tracker's per-frame work is small (3 crops of 255x255 through a
network of a few hundred MMACs), so splitting it over threads gains little on a quiet machine and
loses badly on a busy one. With a CPU-bound process beside it, torch's OpenMP pool at 2 threads
waits at every operator's barrier for a thread the OS has given to the other process: the student
took 242 ms per update at 2 threads vs 4.7 ms at 1 (issue 15), and ``siamtrack track`` ran 7 fps by
default vs 118 fps with ``OMP_NUM_THREADS=1``. One thread has no barrier to wait at, so its time
degrades only by the CPU share it loses. onnxruntime sessions follow ``torch.get_num_threads()``
(:class:`~siamtrack.deploy.runtime.OrtEngine`) and never spin. ``--threads N`` on ``track``, ``demo``,
``benchmark`` and ``speed`` overrides the policy (e.g. a big teacher on a quiet many-core machine).
The Python API applies the same policy: ``SiamFCTracker.from_pretrained(..., threads=1)`` and
``TrackerSiamFC.create(..., threads=1)`` by default, ``threads=None`` to keep the process's setting
(an application that tunes torch itself); :func:`apply_threads` is exported as
``siamtrack.apply_threads``. Measured by ``experiments/busy_speed.py --api``.
"""
from __future__ import annotations

import argparse

#: Threads per tracker unless told otherwise (measured: see the module docstring and the README).
DEFAULT_THREADS = 1


def apply_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads and OpenCV's threads to ``threads`` (default
    :data:`DEFAULT_THREADS`); returns the number set. ``ValueError`` for fewer than 1."""
    import cv2
    import torch

    n = DEFAULT_THREADS if threads is None else int(threads)
    if n < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(n)
    cv2.setNumThreads(n)
    return n


def add_threads_option(p: argparse.ArgumentParser) -> None:
    """``--threads N`` for a sub-command: intra-op threads for the network and OpenCV."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"CPU threads for the network and OpenCV (default {DEFAULT_THREADS}: steady "
                        f"speed when other processes share the CPU; more helps only big networks on "
                        f"an idle many-core machine)")
