"""How many trials one task trains together (`resources.pack`), and which params they share.

A pack is K trials whose networks share `model.stacked.pack_key` (layer sizes, batch size,
optimizer, activation, init, loss, batch norm), trained in lock-step by `train_members`. The
driver fills a pack by asking a leader trial as usual and K − 1 followers whose structural params
are the leader's (see `StudyServer.ask_like`); everything else is sampled per trial.

`auto` chooses K from the leader's size. Measured on one core (benchmarks/packing.py): packing
pays 1.4–6× for small networks from K = 4 up (2-16-16-1: 6.0× at K = 64; 64-32-10: 2.6×), and
gains nothing or loses once the pack's parameters, gradients and optimizer states outgrow the
cache (64-128-128-10: 0.8–1.1×; 784→256→10: 0.70–0.95×); a pack of one is not meaningfully
faster than `model.train` (0.66–1.03×), so the task trains a lone trial with `model.train`.
Hence K is the number of networks whose θ, dθ and optimizer states fit in `CACHE_BYTES`, at
most `AUTO_MAX`, and 1 where fewer than `AUTO_MIN` would fit.

Followers share their leader's structure, so a stage of N trials in packs of K samples only
about N / K structures. Where the stage searches a param that shapes the pack, `auto` therefore
trains one trial per task: benchmarks/search_quality.py --pack (the recipe through the
sweeper, best dev against pack 1, paired seeds) lost on five interleaved spirals, where the
architecture matters most, with every cap tried: pack 16 −10 to −22 points, at least 8
structures per stage −14 ± 9 (64 trials, 5 seeds), at least 16 −5.5 ± 1.8 (128 trials, 3
seeds), while packing with the structure fixed lost nothing beyond noise (digits +0.19 ± 0.09,
spirals −1.0 ± 1.5 over 6 seeds). A number K shares the structure as asked: the user chose
that trade.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np

from model.backend import DEFAULT_DTYPE
from model.config import TrainConfig, per_layer_key
from model.optimizers import OPTIMIZERS
from model.stacked import PACK_OPTIONS
from model.train import architecture

CACHE_BYTES = 1 << 20  # a core's L2, about: where the benchmark's winning packs fit
AUTO_MIN = 4  # below this many networks a pack did not pay in the benchmark
AUTO_MAX = 64  # the largest K measured
DEADLINE_ROUNDS = 4  # packs per task slot a stage's trials at least come in, under a deadline


def shapes_the_pack(name: str) -> bool:
    """Whether trainer option `name` (e.g. `hidden_units_2`) must be equal across a pack."""
    layer = per_layer_key(name)
    return (layer[0] if layer else name) in PACK_OPTIONS


def members_per_task(
    pack: int | Literal["auto"],
    config: TrainConfig,
    n_x: int,
    n_classes: int | None,
    structure_searched: bool = False,
) -> int:
    """K for a pack led by `config`: `pack` itself, or for `auto` what fits the cache, and 1
    where the stage searches the structure (its followers would share it)."""
    if pack != "auto":
        return pack
    if structure_searched:
        return 1
    dims = architecture(config, n_x, n_classes).layer_dims
    parameters = sum(n_l * (n_prev + 1) for n_prev, n_l in itertools.pairwise(dims))  # W and b
    states = OPTIMIZERS[config.optimizer].n_state  # v, s, …
    network_bytes = parameters * (2 + states) * np.dtype(DEFAULT_DTYPE).itemsize  # θ, dθ, states
    fits = CACHE_BYTES // network_bytes
    return min(fits, AUTO_MAX) if fits >= AUTO_MIN else 1


def balanced(size: int, open_trials: int, free_tasks: int) -> int:
    """A pack no larger than its share of the trials still to start, so that the last packs
    keep every task slot busy rather than one long pack and idle cores."""
    return max(1, min(size, open_trials, math.ceil(open_trials / max(1, free_tasks))))


def before_a_deadline(size: int, open_trials: int, tasks: int) -> int:
    """Under `budget.hours`, a pack of at most 1/DEADLINE_ROUNDS of a task slot's share of the
    trials still to start. The deadline stops the stage between packs, and a pack balanced
    alone took a whole stage at once (40 trials on 2 slots: 2 packs of 20), so the launch ran
    every trial past its time, where one trial per task stopped after 2."""
    return max(1, min(size, math.ceil(open_trials / (max(1, tasks) * DEADLINE_ROUNDS))))
