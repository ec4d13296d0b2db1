"""A NumPy/CuPy trainer for L-layer fully connected networks, written as the course notes teach.

Imports only numpy (and cupy, through `model.backend`, when asked for): never ray, optuna or
mlflow, so a trial task carries nothing but array code.
"""

from model.backend import Backend, get_backend
from model.config import TrainConfig
from model.network import Architecture, Network, NetworkState
from model.train import EpochShuffle, KeepBest, Outcome, TrainResult, evaluate, train

__all__ = [
    "Architecture",
    "Backend",
    "EpochShuffle",
    "KeepBest",
    "Network",
    "NetworkState",
    "Outcome",
    "TrainConfig",
    "TrainResult",
    "evaluate",
    "get_backend",
    "train",
]
