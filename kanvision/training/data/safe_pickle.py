"""A restricted unpickler for data files: only the types that pickled array datasets hold may be loaded.

Unpickling an arbitrary file runs any callable it names, so a crafted dataset file could run code. Data pickles
(the CIFAR python release, written by Python 2 and by numpy) need only dicts, lists, strings, bytes, numbers and
numpy arrays; everything else is refused with an error that names the file.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

__all__ = ["UnsafePickleError", "load_data_pickle"]

# The globals a numpy array pickle refers to (numpy 1.x spells the module numpy.core, numpy 2.x numpy._core), and
# _codecs.encode, which Python 3 uses for bytes pickled at protocol 2.
_ALLOWED = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class UnsafePickleError(pickle.UnpicklingError):
    """A data pickle refers to a global outside the allowed types."""


class _DataUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str, **kwargs: Any):
        super().__init__(file, **kwargs)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._path} refers to {module}.{name}; a data pickle may only hold dicts, lists, strings, bytes, "
            "numbers and numpy arrays, so it was not loaded"
        )


def load_data_pickle(path: str | os.PathLike, encoding: str = "latin1") -> Any:
    """Unpickle ``path`` admitting only plain containers, numbers, strings, bytes and numpy arrays/dtypes."""
    with open(path, "rb") as f:
        return _DataUnpickler(f, str(path), encoding=encoding).load()
