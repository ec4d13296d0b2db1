"""What a continued run may change: the pure part of `sweeper train --from`."""

from __future__ import annotations

import pytest

from model import TrainConfig
from model.checkpoint import Progress
from sweeper.errors import UserError
from sweeper.run.lineage import RUN_SOURCE, continued_options

BASE = TrainConfig(hidden_units=[8, 4], epochs=5, learning_rate=0.01).to_dict()


def test_options_go_on_from_the_epoch_with_the_changes_named():
    options, changed = continued_options(
        Progress(epoch=5, options=BASE),
        {"learning_rate": 0.001, "keep_prob_2": 0.5, "hidden_units": [8, 4]},
        more_epochs=3,
    )
    assert options["epochs"] == 8  # epochs are counted on: 6, 7, 8
    assert options["keep_prob"] == [1.0, 0.5]
    assert changed == {"learning_rate": (0.01, 0.001), "keep_prob": (1.0, [1.0, 0.5])}


@pytest.mark.parametrize(
    "override",
    [{"hidden_units_1": 16}, {"num_layers": 3}, {"batch_norm": True}, {"optimizer": "gd"},
     {"seed": 1}, {"activation": "tanh"}],
)  # fmt: skip
def test_what_would_change_the_network_or_its_streams_is_refused_by_name(override):
    ((given, _),) = override.items()
    with pytest.raises(UserError, match=f"--set {given}: a continued run keeps"):
        continued_options(Progress(epoch=5, options=BASE), override, more_epochs=1)


def test_bad_values_are_the_trainers_message():
    with pytest.raises(UserError, match="learning_rate=-1 must be > 0"):
        continued_options(Progress(epoch=5, options=BASE), {"learning_rate": -1}, more_epochs=1)


@pytest.mark.parametrize("more", [0, -2, 2.5, True, "abc", None])
def test_how_many_more_epochs_is_a_whole_number_of_at_least_one(more):
    """`--from RUN --set epochs=0` started training and failed in it (exit 1, "ValueError:
    epochs=3 must exceed the checkpoint's epoch 3"); epochs=true trained one more epoch, 2.5
    was "epochs=7.5 must be a whole number" and abc Python's "unsupported operand type(s)"."""
    with pytest.raises(UserError, match=f"--set epochs={more!r}: with --from, epochs is how many"):
        continued_options(Progress(epoch=5, options=BASE), {}, more_epochs=more)


def test_a_run_source_is_a_32_hex_id_with_an_optional_epoch():
    assert RUN_SOURCE.match("0123456789abcdef0123456789abcdef@12")["epoch"] == "12"
    assert RUN_SOURCE.match("digits-quick") is None
