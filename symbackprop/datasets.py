"""Data sets for the examples: MNIST from its IDX files, and scikit-learn's bundled digits.

Nothing is downloaded: MNIST is read from files the user already has (``--mnist DIR``),
the digits ship inside scikit-learn (the optional ``examples`` extra).
"""
from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from .errors import SymbackpropError

#: IDX type codes (the third byte of the magic number) and their big-endian numpy types.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte",
}


class DataError(SymbackpropError):
    """A data file is missing or not what it claims to be."""


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not), the format of the MNIST files.

    The header is two zero bytes, a type code, the number of dimensions ``d``, then
    ``d`` big-endian 32-bit sizes; the data follow in row-major order.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path}: expected {expected} bytes of data for shape {shape}, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise DataError(f"{directory}: no {stem} (or {stem}.gz)")


def load_mnist(directory: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, t_train, x_test, t_test)``: images flattened to 784 values in [0, 1],
    labels as integers, from the four standard MNIST IDX files in ``directory``."""
    directory = Path(directory)
    data = {key: read_idx(_find(directory, stem)) for key, stem in MNIST_FILES.items()}
    for split in ("train", "test"):
        if len(data[f"{split}_images"]) != len(data[f"{split}_labels"]):
            raise DataError(f"{directory}: {split} images and labels differ in number")
    flat = {k: v.reshape(len(v), -1).astype(np.float64) / 255.0 for k, v in data.items() if "images" in k}
    return (flat["train_images"], data["train_labels"].astype(np.int64),
            flat["test_images"], data["test_labels"].astype(np.int64))


def load_digits(test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled 8x8 digits (1797 images), scaled to [0, 1] and split at random."""
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataError('the digits data set needs scikit-learn: pip install ".[examples]"') from None
    digits = sk_load_digits()
    x, t = digits.data / 16.0, digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = order[:n_test], order[n_test:]
    return x[train], t[train], x[test], t[test]
