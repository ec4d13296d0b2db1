"""GPU trials (CuPy backend, fractional GPUs). Skipped where no CUDA device and CuPy are present;
run on a GPU machine with `pip install -e '.[test,cuda]'`."""

from __future__ import annotations

import pytest

cupy = pytest.importorskip("cupy")
try:
    GPUS = cupy.cuda.runtime.getDeviceCount()
except cupy.cuda.runtime.CUDARuntimeError:
    GPUS = 0
pytestmark = pytest.mark.skipif(GPUS == 0, reason="no CUDA device")


def test_four_trials_share_one_gpu_with_the_cupy_backend(ray_local, tmp_path, monkeypatch):
    from sweeper.run import sweep
    from tests.e2e.helpers import assert_exact, write_spec

    monkeypatch.chdir(tmp_path)
    path = write_spec(tmp_path, "gpu", "  - {name: only, trials: 8}", source="builtin:digits")
    path.write_text(path.read_text().replace("{concurrency: 2}", "{gpus_per_trial: 0.25}"))
    result = sweep.run(sweep.prepare(path))  # Ray finds the GPU itself
    assert_exact(tmp_path / "sweeps" / "gpu", "gpu", {"only": 8})
    assert result.stages[0].best > 0.9
