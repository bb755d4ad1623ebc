"""Dataset layouts on disk: image extensions and the natural frame order (no siamtrack imports).

One place for what a "folder of frames" is, so ``siamtrack track`` (``io``), the training sources
(``data``) and ``siamtrack benchmark --dataset folder`` (``evaluation``) read the same frames in the
same order: ``2.jpg`` before ``10.jpg`` (unpadded numbering sorts wrong as plain strings), which
for zero-padded GOT-10k / OTB names is the plain order too.
"""
from __future__ import annotations

import re
from pathlib import Path

#: Frame image extensions (lower case) of image folders and dataset sequences.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def natural_key(path: str | Path) -> list[object]:
    """Sort key of a file name with its digit runs compared as numbers (``2.jpg`` < ``10.jpg``)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", Path(path).name)]


def list_images(folder: str | Path) -> list[Path]:
    """The image files of ``folder`` in natural order (empty when it is not a folder)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
                  key=natural_key)
