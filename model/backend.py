"""Array backend: the one place that chooses NumPy or CuPy.

Every other module receives the array namespace `xp` as an argument, so a kernel is written once
and runs on either library. Nothing else in the project imports cupy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

DEFAULT_DTYPE = "float32"


@dataclass(frozen=True)
class Backend:
    """An array namespace and its float dtype."""

    xp: ModuleType
    dtype: Any

    @property
    def name(self) -> str:
        return self.xp.__name__

    def rng(self, seed: int | None) -> Any:
        """A seeded random generator of this backend (`numpy.random.Generator` or CuPy's)."""
        return self.xp.random.default_rng(seed)

    def coefficient(self, value: Any) -> Any:
        """A hyperparameter in this backend's dtype, for an elementwise op with its arrays.

        A Python number passes through: NumPy casts it to the array's dtype. The per-network
        (K, 1, …) rows of a stacked pack are kept in float64 (α_k's schedule, 1 − β_k, λ_k/m
        are computed there, as they are for one network in Python floats) and are cast here the
        same way, so network k computes in float32 what it would alone, and at float32's speed:
        a float64 row made the pack's L2 decay 10× and its Adam step 2× slower (float64
        broadcast over float32 θ).
        """
        return value.astype(self.dtype, copy=False) if hasattr(value, "astype") else value

    def to_host(self, array: Any) -> Any:
        """A NumPy copy of `array` (no copy when it already is one)."""
        return array.get() if hasattr(array, "get") else array


def get_backend(name: str = "numpy", dtype: str = DEFAULT_DTYPE) -> Backend:
    """Backend by name: "numpy", "cupy", or any module exposing the NumPy array API."""
    if name == "auto":
        name = "cupy" if cuda_available() else "numpy"
    try:
        xp = importlib.import_module(name)
    except ImportError as error:
        raise RuntimeError(
            f"array backend {name!r} is not installed"
            + (" (pip install 'sweeper[cuda]')" if name == "cupy" else "")
        ) from error
    return Backend(xp=xp, dtype=xp.dtype(dtype))


def cuda_available() -> bool:
    """True when CuPy is installed and sees at least one GPU."""
    try:
        cupy = importlib.import_module("cupy")
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # no cupy, no driver, or no device: all mean "no GPU here"
        return False
