"""A trained network as files, without pickle: its architecture as JSON, its arrays as `.npz`.

`architecture.json` holds the `Architecture` fields (layer sizes, activation, loss, batch norm,
keep_prob) and where each block (W1, b1, gamma1, …) lies in θ; `network.npz` holds θ and the
batch-norm running μ and σ² of each layer that has them (`running_mean_1`, `running_var_1`, …).
Both are read with `json` and `numpy.load(allow_pickle=False)`: loading runs no stored code.

The format is versioned and open to more: a later version may add the optimizer's moments,
the epoch and the generator state as further arrays and keys (continuing training from a
checkpoint), and a reader of this version ignores keys it does not know.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.backend import Backend, get_backend
from model.network import Architecture, Network, NetworkState

FORMAT = 1
ARCHITECTURE_FILE = "architecture.json"
ARRAYS_FILE = "network.npz"


@dataclass(frozen=True)
class Checkpoint:
    """What a network predicts with: its architecture and state, as host (NumPy) arrays."""

    arch: Architecture
    state: NetworkState
    blocks: dict[str, slice]  # where W1, b1, gamma1, … lie in θ (for readers of the files)

    @classmethod
    def of(cls, network: Network) -> Checkpoint:
        """The network's current θ and running statistics, copied to the host."""
        host = network.backend.to_host
        state = network.state()
        stats = lambda s: [None if a is None else np.asarray(host(a)) for a in s]  # noqa: E731
        return cls(
            network.arch,
            NetworkState(
                np.asarray(host(state.theta)), stats(state.running_mean), stats(state.running_var)
            ),
            network.blocks(),
        )

    def network(self, backend: Backend | None = None) -> Network:
        """A network that predicts exactly as the one this checkpoint was taken from."""
        network = Network(self.arch, backend or get_backend(dtype=str(self.state.theta.dtype)))
        xp = network.backend.xp
        to_device = lambda s: [None if a is None else xp.asarray(a) for a in s]  # noqa: E731
        network.restore(
            NetworkState(
                xp.asarray(self.state.theta),
                to_device(self.state.running_mean),
                to_device(self.state.running_var),
            )
        )
        return network

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"theta": self.state.theta}
        for name, stats in (("running_mean", self.state.running_mean),
                            ("running_var", self.state.running_var)):  # fmt: skip
            arrays |= {f"{name}_{l}": a for l, a in enumerate(stats) if a is not None}
        np.savez(folder / ARRAYS_FILE, **arrays)
        arch = dataclasses.asdict(self.arch)
        described = {
            "format": FORMAT,
            "architecture": arch,
            "dtype": str(self.state.theta.dtype),
            "blocks": {name: [block.start, block.stop] for name, block in self.blocks.items()},
        }
        (folder / ARCHITECTURE_FILE).write_text(json.dumps(described, indent=1))

    @classmethod
    def load(cls, folder: Path) -> Checkpoint:
        described = json.loads((folder / ARCHITECTURE_FILE).read_text())
        if described.get("format") != FORMAT:
            raise ValueError(f"{folder}: checkpoint format {described.get('format')} != {FORMAT}")
        arch = Architecture(**_architecture_fields(described["architecture"]))
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
            stats = lambda name: [  # noqa: E731
                arrays.get(f"{name}_{l}") for l in range(arch.L + 1)
            ]
            state = NetworkState(arrays["theta"], stats("running_mean"), stats("running_var"))
        blocks = {name: slice(*bounds) for name, bounds in described["blocks"].items()}
        return cls(arch, state, blocks)


def _architecture_fields(stored: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples an Architecture holds."""
    fields = dict(stored)
    fields["layer_dims"] = tuple(fields["layer_dims"])
    if isinstance(fields.get("keep_prob"), list):
        fields["keep_prob"] = tuple(fields["keep_prob"])
    return fields
