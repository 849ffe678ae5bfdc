"""Omniglot (SPEC §7.1): 1623 characters x 20 drawings, background (30 alphabets) and
evaluation (20 alphabets) sets, from ``omniglot28.npz`` (28x28) or ``omniglot.npz`` (105x105).

Images are float32 in [0, 1] with ink = 1 (both archives; polarity per PROVENANCE.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rabo_bench.data.archives import DataError, load_archive

ARCHIVES = {28: "omniglot28.npz", 105: "omniglot.npz"}  # image size -> archive


@dataclass(frozen=True)
class Omniglot:
    images: np.ndarray  # float32 [characters, 20, size, size], ink = 1
    alphabet: np.ndarray  # str per character
    background: np.ndarray  # bool per character: True = background (training) set

    def split(self, background: bool) -> Omniglot:
        keep = self.background == background
        return Omniglot(self.images[keep], self.alphabet[keep], self.background[keep])

    @property
    def alphabets(self) -> list[str]:
        return sorted(set(self.alphabet.tolist()))


def load_omniglot(size: int = 28, root: str | Path | None = None) -> Omniglot:
    """The whole data set at ``size`` 28 or 105, checked (see :func:`load_archive`)."""
    if size == 28:
        arrays = load_archive(ARCHIVES[28], root)
        images = arrays["images"].astype(np.float32) / 255.0
    elif size == 105:
        arrays = load_archive(ARCHIVES[105], root)
        count = int(np.prod(arrays["shape"][2:]))
        bits = np.unpackbits(arrays["images_packed"], axis=-1, count=count)
        images = bits.reshape(tuple(arrays["shape"])).astype(np.float32)
    else:
        raise DataError(f"Omniglot comes at size 28 or 105, not {size}")
    return Omniglot(images, arrays["alphabet"], arrays["background"])
