"""Benchmarks and profiling: the got10k experiments run offline, OpenCV baselines, speed and MACs.
Imports: tracking, weights, deploy, data, models, checkpoint, layouts, errors (never cli or pipeline).

Modules (each small, imported on demand by the ``siamtrack benchmark`` / ``speed`` sub-commands):

* :mod:`.experiments`: GOT-10k and OTB-style experiments that never download and return the
  toolkit's own numbers (AO, SR0.5, SR0.75, success AUC, precision, fps);
* :mod:`.baselines`: one adapter around OpenCV trackers (MIL, KCF, CSRT, NanoTrack, vitTrack);
* :mod:`.benchmark`: parallel runs, result reuse, report; :mod:`.report`, :mod:`.plots`: outputs;
* :mod:`.speed`: latency per ``update``; MACs per tracked frame come from :mod:`siamtrack.models.profile` (``count_macs``).

Importing this package stays cheap (the main ``siamtrack`` command imports :mod:`.cli` to register
its sub-commands); :mod:`.plots` selects matplotlib's Agg backend only when a benchmark draws.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["count_macs"]

if TYPE_CHECKING:
    from ..models.profile import count_macs


def __getattr__(name: str) -> Any:
    """``count_macs`` on first use: the command line imports this package for its sub-commands, and
    ``siamtrack --help`` must not wait for torch."""
    if name == "count_macs":
        from ..models.profile import count_macs

        return count_macs
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
