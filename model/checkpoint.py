"""A trained network as files, without pickle: its architecture as JSON, its arrays as `.npz`.

`architecture.json` holds the `Architecture` fields (layer sizes, activation, loss, batch norm,
keep_prob) and where each block (W1, b1, gamma1, …) lies in θ; `network.npz` holds θ and the
batch-norm running μ and σ² of each layer that has them (`running_mean_1`, `running_var_1`, …).
Both are read with `json` and `numpy.load(allow_pickle=False)`: loading runs no stored code.

Format 2 may add where training stands (`Progress`), so that it can go on exactly: the epoch
count, the options in force, the optimizer's step count t and moments (the notes' v and s, as
`optimizer_v`, `optimizer_s` in `network.npz`), and the state of the dropout and mini-batch-order
generators (NumPy's `bit_generator.state`, plain JSON) in `progress.json`. A format-1 folder
(θ and running statistics only) still loads, without progress.
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

FORMAT = 2
READABLE = (1, 2)
ARCHITECTURE_FILE = "architecture.json"
ARRAYS_FILE = "network.npz"
PROGRESS_FILE = "progress.json"
MOMENT_PREFIX = "optimizer_"


@dataclass(frozen=True)
class Progress:
    """Where training stands after `epoch` epochs: what continuing it exactly needs.

    Empty `moments` or `generators` (a checkpoint converted from a network alone) continue from
    zero moments and freshly seeded generators: the same start, not the same run.
    """

    epoch: int  # epochs done; the next is epoch + 1, so a decay schedule goes on where it was
    options: dict[str, Any]  # the TrainConfig in force (`TrainConfig.to_dict()`)
    t: int = 0  # optimizer steps taken (Adam's bias correction)
    moments: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # "v", "s"
    generators: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    initial_cost: float | None = None  # J of the untrained network: the divergence reference


@dataclass(frozen=True)
class Checkpoint:
    """What a network predicts with: its architecture and state, as host (NumPy) arrays."""

    arch: Architecture
    state: NetworkState
    blocks: dict[str, slice]  # where W1, b1, gamma1, … lie in θ (for readers of the files)
    progress: Progress | None = None  # where its training stands (None: a network alone)

    @classmethod
    def of(cls, network: Network, progress: Progress | None = None) -> Checkpoint:
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
            progress,
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
        if self.progress is not None:
            arrays |= {MOMENT_PREFIX + k: v for k, v in self.progress.moments.items()}
            stored = dataclasses.asdict(self.progress)
            del stored["moments"]
            (folder / PROGRESS_FILE).write_text(json.dumps(stored, indent=1))
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
        if described.get("format") not in READABLE:
            found = described.get("format")
            raise ValueError(f"{folder}: checkpoint format {found} is not one of {READABLE}")
        arch = Architecture(**_architecture_fields(described["architecture"]))
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as arrays:
            stats = lambda name: [  # noqa: E731
                arrays.get(f"{name}_{l}") for l in range(arch.L + 1)
            ]
            state = NetworkState(arrays["theta"], stats("running_mean"), stats("running_var"))
            moments = {
                name.removeprefix(MOMENT_PREFIX): arrays[name]
                for name in arrays.files
                if name.startswith(MOMENT_PREFIX)
            }
        blocks = {name: slice(*bounds) for name, bounds in described["blocks"].items()}
        progress = None
        if (folder / PROGRESS_FILE).is_file():
            stored = json.loads((folder / PROGRESS_FILE).read_text())
            known = {f.name for f in dataclasses.fields(Progress)} - {"moments"}
            progress = Progress(**{k: v for k, v in stored.items() if k in known}, moments=moments)
        return cls(arch, state, blocks, progress)


def _architecture_fields(stored: dict[str, Any]) -> dict[str, Any]:
    """JSON lists back to the tuples an Architecture holds."""
    fields = dict(stored)
    fields["layer_dims"] = tuple(fields["layer_dims"])
    if isinstance(fields.get("keep_prob"), list):
        fields["keep_prob"] = tuple(fields["keep_prob"])
    return fields
