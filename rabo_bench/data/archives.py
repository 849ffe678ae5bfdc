"""The data root and its three archives, with the array digests of ``data/PROVENANCE.md``.

Code reads real data only from the folder ``RABO_BENCH_DATA`` names (``make test`` points it
at ``../shared/data``). A missing root or file, an unreadable archive, a missing array, an
array of the wrong shape or dtype and a digest mismatch each raise :class:`DataError`, a
ValueError with one line that says what is expected and where.

Digests are the first 16 hex digits of sha256 over each array's raw bytes (C order), as
PROVENANCE.md gives them: the ``.npz`` files themselves carry zip timestamps, so their own
sha256 changes on a rebuild while the arrays do not.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ENV = "RABO_BENCH_DATA"


class DataError(ValueError):
    """Missing, unreadable or corrupt data; the message says what to fix."""


@dataclass(frozen=True)
class ArraySpec:
    shape: tuple[int, ...]
    dtype: str
    digest: str | None = None  # first 16 hex digits of sha256(raw bytes), where published


_OMNIGLOT_META = {
    "alphabet": ArraySpec((1623,), "<U41"),
    "character": ArraySpec((1623,), "<U11"),
    "background": ArraySpec((1623,), "bool"),
    "char_id": ArraySpec((1623,), "int16"),
}

ARCHIVES: dict[str, dict[str, ArraySpec]] = {
    "omniglot.npz": {
        "images_packed": ArraySpec((1623, 20, 1379), "uint8", "36fc02a2da7b2746"),
        "shape": ArraySpec((4,), "int64"),
        **_OMNIGLOT_META,
    },
    "omniglot28.npz": {
        "images": ArraySpec((1623, 20, 28, 28), "uint8", "e26469f5826cc15c"),
        **_OMNIGLOT_META,
    },
    "cifar10.npz": {
        "x_train": ArraySpec((50000, 32, 32, 3), "uint8", "bf3aabd52be912da"),
        "y_train": ArraySpec((50000,), "uint8", "a29f2a5ffc141bb1"),
        "x_test": ArraySpec((10000, 32, 32, 3), "uint8", "5a6aa8185204d80b"),
        "y_test": ArraySpec((10000,), "uint8", "a054c239a40ee7f2"),
    },
}


def data_root(root: str | Path | None = None) -> Path:
    """``root``, else ``$RABO_BENCH_DATA``; a clear DataError when neither names a folder."""
    value = root if root is not None else os.environ.get(ENV, "")
    expected = ", ".join(ARCHIVES)
    if not str(value):
        raise DataError(
            f"no data root: set {ENV} to the folder holding {expected} "
            "(make test uses ../shared/data)"
        )
    path = Path(value)
    if not path.is_dir():
        raise DataError(f"{ENV}={path} is not a folder; it should hold {expected}")
    return path


def array_digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def load_archive(
    name: str, root: str | Path | None = None, verify: bool = True
) -> dict[str, np.ndarray]:
    """The arrays of archive ``name`` (a key of :data:`ARCHIVES`), checked against their specs."""
    if name not in ARCHIVES:
        raise DataError(f"unknown archive {name!r}; expected one of {list(ARCHIVES)}")
    path = data_root(root) / name
    if not path.is_file():
        raise DataError(f"missing {path}: the data root ({ENV}) must hold {name}")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{path} is not a readable .npz archive ({err}); restore it") from None
    for key, spec in ARCHIVES[name].items():
        if key not in arrays:
            raise DataError(f"{path} has no array {key!r}; restore the file")
        array = arrays[key]
        if array.shape != spec.shape or array.dtype != np.dtype(spec.dtype):
            raise DataError(
                f"{path}: array {key!r} is {array.dtype}{list(array.shape)}, expected "
                f"{spec.dtype}{list(spec.shape)}; restore the file"
            )
        if verify and spec.digest is not None and array_digest(array) != spec.digest:
            raise DataError(
                f"{path}: array {key!r} fails its digest check (sha256 prefix "
                f"{array_digest(array)}, expected {spec.digest}); the file is corrupt"
            )
    return arrays
