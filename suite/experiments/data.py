"""Datasets for the training experiment: a real IDX reader (Fashion-MNIST) and an offline default.

The default is scikit-learn's 8x8 handwritten digits, which ship inside the scikit-learn wheel, so
the experiment runs with no network. Fashion-MNIST is read from the four IDX files a user has
downloaded (gzip-compressed or not) with ``--data-dir``.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"): data are big-endian.
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"

# (train images, train labels, test images, test labels), as Fashion-MNIST and MNIST name them.
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DatasetError(ValueError):
    """A dataset is missing or malformed; the message names the file and what is wrong."""


@dataclass(frozen=True)
class Dataset:
    """Train/test split with float32 inputs in [0, 1] and int64 labels 0..n_classes-1."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    source: str

    @property
    def n_features(self) -> int:
        return int(self.x_train.shape[1])

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "source": self.source, "n_train": int(len(self.y_train)),
                "n_test": int(len(self.y_test)), "n_features": self.n_features, "n_classes": self.n_classes}


def parse_idx(raw: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file's bytes (gzip-compressed or plain) into a native-endian array."""
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{name}: corrupt gzip data ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{name}: not an IDX file (the first two bytes must be zero)")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DatasetError(f"{name}: unknown IDX type code 0x{code:02x}")
    if ndim == 0:
        raise DatasetError(f"{name}: IDX header declares zero dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{name}: truncated IDX header ({len(raw)} bytes, need {header})")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"{name}: {len(raw)} bytes, but header {shape} of {dtype.name} needs {expected}")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file from disk (``.gz`` or not; detected by content, not by name)."""
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{source}: cannot read ({exc.strerror or exc})") from None
    return parse_idx(raw, str(source))


def find_idx_file(data_dir: Path, stem: str) -> Path:
    for candidate in (data_dir / f"{stem}.gz", data_dir / stem):
        if candidate.is_file():
            return candidate
    raise DatasetError(f"{data_dir}: no {stem} or {stem}.gz (Fashion-MNIST IDX files expected)")


def _images_and_labels(images: np.ndarray, labels: np.ndarray, names: tuple[Path, Path]) -> tuple[np.ndarray, np.ndarray]:
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(f"{names[0]}: expected 3-D uint8 images, got {images.ndim}-D {images.dtype}")
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(f"{names[1]}: expected 1-D uint8 labels, got {labels.ndim}-D {labels.dtype}")
    if len(images) != len(labels):
        raise DatasetError(f"{names[0]} has {len(images)} images but {names[1]} has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise DatasetError(f"{names[1]}: label {int(labels.max())} outside 0..9")
    x = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
    return x, labels.astype(np.int64)


def load_idx_dataset(data_dir: str | Path, name: str = "fashion-mnist") -> Dataset:
    """The four (Fashion-)MNIST IDX files in ``data_dir`` as a flattened, [0, 1]-scaled Dataset."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a directory")
    paths = [find_idx_file(folder, stem) for stem in IDX_FILES]
    arrays = [read_idx(p) for p in paths]
    x_train, y_train = _images_and_labels(arrays[0], arrays[1], (paths[0], paths[1]))
    x_test, y_test = _images_and_labels(arrays[2], arrays[3], (paths[2], paths[3]))
    if x_train.shape[1] != x_test.shape[1]:
        raise DatasetError(f"{folder}: train images are {arrays[0].shape[1:]}, test images {arrays[2].shape[1:]}")
    return Dataset(name, x_train, y_train, x_test, y_test, 10, f"IDX files in {folder}")


def load_digits_dataset(test_fraction: float = 0.25, split_seed: int = 0) -> Dataset:
    """scikit-learn's 8x8 digits (1797 images, shipped in the wheel), pixels 0..16 scaled to [0, 1].

    The split is a fixed permutation (seeded), the same for every framework and every run.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetError("the default dataset needs scikit-learn (pip install scikit-learn), "
                           f"or pass --data-dir with Fashion-MNIST IDX files ({exc})") from None
    bunch = load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0))
    y = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(split_seed).permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return Dataset("digits", x[train], y[train], x[test], y[test], 10,
                   f"sklearn.datasets.load_digits (scikit-learn), {1 - test_fraction:.0%}/{test_fraction:.0%} split seed {split_seed}")


def load_dataset(data_dir: str | Path | None) -> Dataset:
    """Fashion-MNIST from ``data_dir`` when given, else the offline digits."""
    return load_idx_dataset(data_dir) if data_dir else load_digits_dataset()
