"""A sweep's stages as space.yaml writes them: sampler, pruner and zoom of each."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Seed = Annotated[int, Field(ge=0, lt=2**32)]  # what NumPy's and Optuna's generators accept


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Pruner(Strict):
    type: Literal["none", "median", "asha", "successive_halving", "hyperband"] = "median"
    min_epochs: int = Field(1, ge=1)
    warmup_epochs: int = Field(0, ge=0)
    reduction_factor: int = Field(3, ge=2)


class Zoom(Strict):
    top: float = Field(0.2, gt=0, le=1)
    margin: float = Field(0.1, ge=0)


class Stage(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    trials: int = Field(ge=1, le=1_000_000)
    sampler: Literal["random", "qmc", "tpe", "gp", "grid"] = "random"
    pruner: Pruner = Pruner(type="none")
    zoom: Zoom | None = None
    # a trial whose objective has not improved for this many epochs ends, COMPLETE, its best
    # epoch kept (sweeper.search.patience); None: trials run until done or pruned
    patience: int | None = Field(None, ge=1)
    seed: Seed | None = None

    def describe(self) -> str:
        """One line for `sweeper status`: how the stage samples, prunes and zooms."""
        parts = [f"{self.sampler} sampler"]
        p = self.pruner
        if p.type == "median":
            parts.append(f"median pruner after {_epochs(p.warmup_epochs)}")
        elif p.type != "none":
            parts.append(f"{p.type} pruner from epoch {p.min_epochs}, η={p.reduction_factor}")
        if self.patience is not None:
            parts.append(f"a trial ends after {_epochs(self.patience)} without improving")
        if self.zoom is not None:
            parts.append(
                f"zoomed on the top {self.zoom.top:.0%} of the previous stage "
                f"(+{self.zoom.margin:.0%} of each range), warm-started"
            )
        return ", ".join(parts)


def _epochs(n: int) -> str:
    return f"{n} epoch" if n == 1 else f"{n} epochs"
