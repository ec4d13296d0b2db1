"""A CuPy stand-in for CPU-only machines: an array namespace whose arrays refuse host arrays.

CuPy raises when a NumPy array meets a CuPy array in one operation, or when a NumPy function is
handed a CuPy array. `DeviceArray` does the same on top of NumPy, so running the trainer through
`device_namespace` catches every place that would only work with NumPy: a stray `np.` call, a
host array mixed into device math, a missing `xp.asarray`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np


class HostDeviceMixError(TypeError):
    pass


class DeviceArray(np.ndarray):
    """An ndarray "on the device": arithmetic with plain ndarrays raises, as with CuPy."""

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        for operand in inputs + (out or ()):
            if isinstance(operand, np.ndarray) and not isinstance(operand, DeviceArray):
                raise HostDeviceMixError(f"host array passed to device operation {ufunc.__name__}")
        inputs = tuple(_host_view(a) for a in inputs)
        if out is not None:
            kwargs["out"] = tuple(_host_view(o) for o in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _to_device(result)

    def __array_function__(self, func, types, args, kwargs):
        raise HostDeviceMixError(f"numpy.{func.__name__} called on a device array; use xp")

    def get(self) -> np.ndarray:
        """Copy to the host, like cupy.ndarray.get()."""
        return np.array(self.view(np.ndarray))


def _host_view(value: Any) -> Any:
    return value.view(np.ndarray) if isinstance(value, DeviceArray) else value


def _to_device(value: Any) -> Any:
    if isinstance(value, np.ndarray) and not isinstance(value, DeviceArray):
        return value.view(DeviceArray)
    if isinstance(value, tuple):
        return tuple(_to_device(v) for v in value)
    return value


def _wrap(function):
    def device_function(*args, **kwargs):
        args = tuple(_host_view(a) for a in args)
        kwargs = {k: _host_view(v) for k, v in kwargs.items()}
        return _to_device(function(*args, **kwargs))

    device_function.__name__ = getattr(function, "__name__", "function")
    return device_function


class _Generator:
    """cupy.random.Generator's subset: results on the device."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def standard_normal(self, size, dtype=np.float64):
        return _to_device(self._rng.standard_normal(size, dtype=dtype))

    def random(self, size, dtype=np.float64, out=None):
        if out is not None:
            self._rng.random(size, dtype=dtype, out=_host_view(out))
            return out
        return _to_device(self._rng.random(size, dtype=dtype))


def asarray(value, dtype=None):
    """Host → device transfer (explicit, as cupy.asarray)."""
    return np.asarray(_host_view(value), dtype=dtype).view(DeviceArray)


def _build() -> types.ModuleType:
    module = types.ModuleType(__name__ + "_xp")
    for name in dir(np):
        if name.startswith("__"):
            continue  # keep the module's own identity (__name__ above all)
        attr = getattr(np, name)
        if callable(attr) and not isinstance(attr, type) and not isinstance(attr, np.ufunc):
            setattr(module, name, _wrap(attr))
        else:
            setattr(module, name, attr)  # ufuncs dispatch through DeviceArray; dtypes as is
    module.asarray = asarray
    module.linalg = types.SimpleNamespace(norm=_wrap(np.linalg.norm))
    module.random = types.SimpleNamespace(default_rng=_Generator)
    return module


xp = _build()
sys.modules[xp.__name__] = xp
