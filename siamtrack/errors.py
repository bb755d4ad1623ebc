"""What every command line of siamtrack shares: one-line errors (no siamtrack imports).

It sits at the bottom of the import order so ``cli``, ``evaluation.cli`` and ``pipeline`` (the
``train.py`` entry point) print failures the same way without importing each other.
"""
from __future__ import annotations

import argparse


class OneLineParser(argparse.ArgumentParser):
    """argparse with a one-line error (``<program>: error: ...``, exit 2) instead of usage + message.

    Shared by every siamtrack command line (``siamtrack``, ``experiments/train.py``), so a script
    driving them can rely on one stderr line per failure.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        program = self.prog.split()[0]  # sub-parsers are named "siamtrack track"
        self.exit(2, f"{program}: error: {message} (see '{self.prog} --help')\n")


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
