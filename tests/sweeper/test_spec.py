"""space.yaml loading: the shipped examples load, all problems at once, the fingerprint.

The malformed-input corpus (file:line: field errors through the CLI) is in test_bad_input.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from sweeper.cli.commands import app
from sweeper.errors import UserError
from sweeper.run.folder import SweepFolder, check_same_spec
from sweeper.run.ownership import Identity, claim
from sweeper.search.recipe import recipe
from sweeper.search.study import stage_seed
from sweeper.spec import schema as spec
from sweeper.spec.stages import Pruner, Stage, Zoom

ROOT = Path(__file__).resolve().parents[2]
GOOD = """\
name: t
data:
  source: builtin:flower
train:
  epochs: 3
space:
  learning_rate: {scale: log, low: 1.0e-3, high: 1.0e-1}
  beta: {scale: one_minus_log, low: 0.9, high: 0.999}
stages:
  - {name: coarse, trials: 4}
"""


@pytest.mark.parametrize(
    "path", sorted((ROOT / "search_spaces").glob("*.yaml")), ids=lambda p: p.name
)
def test_shipped_search_spaces_load(path):
    assert spec.load(path).stages


def _written(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> str:
    with pytest.raises(UserError) as info:
        spec.load(_written(tmp_path, text))
    return str(info.value)


def test_every_problem_is_listed_at_once(tmp_path):
    text = GOOD.replace("low: 1.0e-3", "low: 0").replace("trials: 4", "trials: 0")
    message = _error(tmp_path, text)
    assert len(message.splitlines()) == 2


def test_fingerprint_ignores_storage_but_not_space(tmp_path):
    path = tmp_path / "a.yaml"
    path.write_text(GOOD)
    a = spec.load(path)
    path.write_text(GOOD + "resources: {concurrency: 1}\n")
    assert spec.load(path).fingerprint() == a.fingerprint()
    path.write_text(GOOD.replace("1.0e-1", "2.0e-1"))
    assert spec.load(path).fingerprint() != a.fingerprint()


def test_a_test_metric_as_objective_is_refused_with_its_line(tmp_path):
    text = GOOD.replace("stages:", "objective: {metric: test_accuracy}\nstages:")
    message = _error(tmp_path, text)
    line = text.splitlines().index("objective: {metric: test_accuracy}") + 1
    assert message.startswith(
        f"{tmp_path / 'space.yaml'}:{line}: objective.metric: 'test_accuracy'"
    )
    assert "dev_accuracy" in message


@pytest.mark.parametrize(
    ("objective", "field", "says"),
    [
        (
            "{metric: dev_acuracy}",
            "metric",
            "reports no 'dev_acuracy' (did you mean 'dev_accuracy'?)",
        ),
        ("{metric: dev_loss, direction: maximize}", "direction", "direction must be minimize"),
        ("{metric: dev_accuracy, direction: minimize}", "direction", "direction must be maximize"),
    ],
)
def test_an_objective_the_trainer_does_not_report_or_turned_upside_down_is_refused(
    tmp_path, objective, field, says
):
    """A misspelled metric failed every trial ("no finite dev_acuracy") and the stage asked for
    new ones without end (4,012 trials in two minutes); a maximized loss kept the worst model."""
    text = GOOD.replace("stages:", f"objective: {objective}\nstages:")
    message = _error(tmp_path, text)
    line = text.splitlines().index(f"objective: {objective}") + 1
    assert message.startswith(f"{tmp_path / 'space.yaml'}:{line}: objective.{field}: "), message
    assert says in message


@pytest.mark.parametrize(
    ("objective", "direction"),
    [
        ("{metric: dev_loss}", "minimize"),
        ("{metric: minibatch_cost}", "minimize"),
        ("{}", "maximize"),
    ],
)
def test_an_objective_without_a_direction_takes_its_metrics_own(tmp_path, objective, direction):
    """`{metric: dev_loss}` was refused ("direction must be minimize"): the default was
    maximize whatever the metric. The default objective's fingerprint is unchanged."""
    before = spec.load(_written(tmp_path, GOOD))
    path = _written(tmp_path, GOOD.replace("stages:", f"objective: {objective}\nstages:"))
    loaded = spec.load(path)
    assert loaded.objective.direction == direction
    assert (loaded.fingerprint() == before.fingerprint()) == (objective == "{}")


@pytest.mark.parametrize(
    ("line", "where", "says"),
    [
        ("  epochs: 2.5", "train", "epochs=2.5 must be a whole number"),
        ("  batch_norm: 'no'", "train", "batch_norm='no' must be true or false"),
        ("  l2: 1e-3", "train", "l2='1e-3' must be a number (YAML reads 1e-3 as text"),
        ("  seed: -1", "train", "seed=-1 must be >= 0"),
        ("  hidden_units: 16.5", "train", "hidden_units=16.5 must be a whole number"),
        # null for an option with a value by default: "'>=' not supported between instances
        # of 'NoneType' and 'int'", naming no option
        ("  l2: null", "train", "l2=None must be a number"),
        ("  batch_size: null", "train", "batch_size=None must be a whole number"),
    ],
)
def test_a_trainer_option_of_the_wrong_kind_is_refused_at_load(tmp_path, line, where, says):
    """They were taken as given: 2.5 epochs failed every trial in its task (exit 1, a sweep
    folder left behind), and batch_norm: 'no' turned batch norm on."""
    text = GOOD.replace("  epochs: 3", f"  epochs: 3\n{line}" if "epochs" not in line else line)
    message = _error(tmp_path, text)
    number = text.splitlines().index("train:") + 1
    assert message.startswith(f"{tmp_path / 'space.yaml'}:{number}: {where}: "), message
    assert says in message


def test_a_whole_number_option_searched_on_a_continuous_scale_is_refused(tmp_path):
    searched = "  epochs: {scale: uniform, low: 1, high: 3}"
    text = GOOD.replace("train:\n  epochs: 3\n", "").replace("space:\n", f"space:\n{searched}\n")
    message = _error(tmp_path, text)
    number = text.splitlines().index(searched) + 1
    assert message == (
        f"{tmp_path / 'space.yaml'}:{number}: space.epochs: epochs takes whole numbers: "
        "search it on an int, log_int or pow2 scale, not uniform"
    )
    pow2 = GOOD.replace("space:\n", "space:\n  batch_size: {scale: pow2, low: 16, high: 64}\n")
    (tmp_path / "space.yaml").write_text(pow2)
    assert spec.load(tmp_path / "space.yaml").space["batch_size"].scale == "pow2"


def test_per_layer_architecture_options_load(tmp_path):
    """A fixed list in train:, a list-valued categorical and per-layer widths in space:."""
    path = tmp_path / "space.yaml"
    path.write_text(
        GOOD.replace("  epochs: 3", "  epochs: 3\n  keep_prob: [0.8, 1.0]").replace(
            "stages:",
            "  hidden_units: {scale: categorical, choices: [[20, 3], [64, 8]]}\n"
            "  hidden_units_1: {scale: pow2, low: 4, high: 64}\nstages:",
        )
    )
    loaded = spec.load(path)
    assert loaded.space["hidden_units"].choices == [[20, 3], [64, 8]]
    assert "hidden_units_1" in loaded.space


def test_num_layers_disagreeing_with_a_width_list_is_refused(tmp_path):
    text = GOOD.replace("  epochs: 3", "  epochs: 3\n  num_layers: 3\n  hidden_units: [20, 3]")
    message = _error(tmp_path, text)
    assert "train: num_layers=3 disagrees with hidden_units=[20, 3]" in message
    assert message.startswith(f"{tmp_path / 'space.yaml'}:4:")  # the train: section


def test_split_without_a_test_set_loads(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(
        GOOD.replace("  source: builtin:flower", "  source: builtin:flower\n  split: {test: 0}")
    )
    assert spec.load(path).data.split.test == 0


BUDGET = GOOD.replace("train:\n  epochs: 3\n", "").replace(
    "stages:\n  - {name: coarse, trials: 4}\n", "budget: {trials: 24, epochs: 12}\n"
)


def test_a_budget_expands_into_the_recommended_plan(tmp_path):
    """24 trials of 12 epochs: 10 quasi-random trials with ASHA from epoch 3 (a fifth), then 14
    TPE trials zoomed on the top quarter, median-pruned after epoch 4 (a third), each ending
    after 3 epochs (a fifth) without improving."""
    path = tmp_path / "space.yaml"
    path.write_text(BUDGET)
    loaded = spec.load(path)
    assert loaded.train == {"epochs": 12}
    assert loaded.stages == [
        Stage(
            name="coarse",
            trials=10,
            sampler="qmc",
            pruner=Pruner(type="asha", min_epochs=3, reduction_factor=3),
        ),
        Stage(
            name="fine",
            trials=14,
            sampler="tpe",
            pruner=Pruner(type="median", warmup_epochs=4),
            zoom=Zoom(top=0.25, margin=0.15),
            patience=3,
        ),
    ]
    # without budget.epochs, the trainer's epochs set them: 30 → ASHA from 6, median after 10,
    # patience 6
    path.write_text(
        BUDGET.replace(", epochs: 12}", "}").replace("data:", "train: {epochs: 30}\ndata:")
    )
    coarse, fine = spec.load(path).stages
    assert (coarse.pruner.min_epochs, fine.pruner.warmup_epochs, fine.patience) == (6, 10, 6)
    assert coarse.patience is None
    assert [s.name for s in recipe(1, 10)] == ["coarse"]  # one trial: nothing to zoom into


def test_from_64_trials_a_fine_trial_may_stall_a_quarter_of_the_epochs():
    """Patience ⌈E/4⌉ from 64 trials, ⌈E/5⌉ below (docs/search.md, "Patience by budget");
    nothing else of the plan changes with the budget but the stages' trial counts."""
    below, at = recipe(63, 15), recipe(64, 15)
    assert (below[1].patience, at[1].patience) == (3, 4)
    assert (below[0].trials, below[1].trials, at[0].trials, at[1].trials) == (26, 37, 26, 38)
    assert at[0] == below[0]
    assert at[1].model_copy(update={"patience": 3, "trials": 37}) == below[1]
    assert recipe(200, 30)[1].patience == 8


def test_a_thorough_budget_is_one_gp_stage_of_full_length_trials(tmp_path):
    """`search: thorough`: every trial all its epochs (no pruner, no patience), sampled by the
    Gaussian process; a different sweep from the frugal plan of the same budget."""
    path = tmp_path / "space.yaml"
    path.write_text(BUDGET.replace("epochs: 12}", "epochs: 12, search: thorough, seed: 3}"))
    thorough = spec.load(path)
    assert thorough.train == {"epochs": 12}
    assert thorough.stages == [Stage(name="gp", trials=24, sampler="gp", seed=3)]
    path.write_text(BUDGET.replace("epochs: 12}", "epochs: 12, seed: 3}"))
    assert thorough.fingerprint() != spec.load(path).fingerprint()
    assert spec.SweepSpec.model_validate_json(thorough.model_dump_json()) == thorough
    folder = tmp_path / "sweeps" / "t"
    claim(folder, Identity("t", "0"))
    (folder / "spec.yaml").write_text(
        BUDGET.replace("epochs: 12}", "epochs: 12, search: thorough}")
    )
    shown = json.loads(CliRunner().invoke(app, ["status", str(folder), "--json"]).output)
    assert shown["budget"] == {"trials": 24, "epochs": 12, "search": "thorough"}
    assert (
        "budget: 24 trials, the thorough plan"
        in CliRunner().invoke(app, ["status", str(folder)]).output
    )


def test_a_budgets_seed_seeds_each_stage_and_is_part_of_the_sweeps_identity(tmp_path):
    """Without `seed` each stage is seeded by its index (`study.stage_seed`), so the same spec
    samples the same trials; `seed: 7` gives the stages 7 and 8, a different sweep."""
    path = tmp_path / "space.yaml"
    path.write_text(BUDGET)
    unseeded = spec.load(path)
    assert [s.seed for s in unseeded.stages] == [None, None]
    assert [stage_seed(s, i) for i, s in enumerate(unseeded.stages)] == [0, 1]
    path.write_text(BUDGET.replace("epochs: 12}", "epochs: 12, seed: 7}"))
    seeded = spec.load(path)
    assert [stage_seed(s, i) for i, s in enumerate(seeded.stages)] == [7, 8]
    assert [s.model_copy(update={"seed": None}) for s in seeded.stages] == unseeded.stages
    assert seeded.fingerprint() != unseeded.fingerprint()


def test_status_shows_the_plan_a_budget_expanded_into(tmp_path):
    folder = tmp_path / "sweeps" / "t"
    claim(folder, Identity("t", "0"))
    (folder / "spec.yaml").write_text(BUDGET)
    shown = CliRunner().invoke(app, ["status", str(folder), "--json"])
    assert shown.exit_code == 0, shown.output
    summary = json.loads(shown.output)
    assert summary["budget"] == {"trials": 24, "epochs": 12}
    plans = [(s["name"], s["target"], s["plan"]) for s in summary["stages"]]
    assert plans == [(s.name, s.trials, s.describe()) for s in recipe(24, 12)]
    table = CliRunner().invoke(app, ["status", str(folder)]).output
    assert "budget: 24 trials, the recommended plan" in table
    assert "plan" in table


def test_an_expanded_budget_spec_reads_back_as_itself(tmp_path):
    """The StudyServer and the sweep folder read the spec back from its JSON/YAML dump."""
    path = tmp_path / "space.yaml"
    path.write_text(BUDGET)
    loaded = spec.load(path)
    again = spec.SweepSpec.model_validate_json(loaded.model_dump_json())
    assert again == loaded and again.fingerprint() == loaded.fingerprint()


def test_hours_limit_a_launch_and_are_not_part_of_the_sweep(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(BUDGET)
    without = spec.load(path)
    path.write_text(BUDGET.replace("epochs: 12}", "epochs: 12, hours: 1.5}"))
    timed = spec.load(path)
    assert timed.budget.hours == 1.5 and timed.stages == without.stages
    assert timed.fingerprint() == without.fingerprint()  # a launch may change its time limit
    folder = tmp_path / "sweeps" / "t"
    claim(folder, Identity("t", "0"))
    (folder / "spec.yaml").write_text(path.read_text())
    table = CliRunner().invoke(app, ["status", str(folder)]).output
    assert "budget: 24 trials, at most 1.5 h a launch, the recommended plan" in table


def test_a_launch_keeps_its_hours_and_resources_in_the_sweeps_copy(tmp_path):
    """The copy was written once: after a relaunch with other hours and packs, `status` showed
    the first launch's and `resume` ran with them. The plan stays the copy's own."""
    path = tmp_path / "space.yaml"
    path.write_text(BUDGET.replace("epochs: 12}", "epochs: 12, hours: 1.0}"))
    first = spec.load(path)
    folder = SweepFolder(tmp_path / "sweeps" / first.name)
    claim(folder.path, Identity(first.name, first.fingerprint()))
    earlier = [first.stages[0].model_copy(update={"trials": 8}), first.stages[1]]
    folder.keep_spec(first.model_copy(update={"stages": earlier}), [])
    path.write_text(
        BUDGET.replace("epochs: 12}", "epochs: 12, hours: 0.5}") + "resources: {pack: auto}\n"
    )
    folder.keep_spec(spec.load(path), [])
    kept = folder.load_spec()
    assert kept.budget.hours == 0.5 and kept.resources.pack == "auto"
    assert kept.stages == earlier
    assert not (folder.path / "spec.yaml.partial").exists()


def test_a_sweep_planned_by_an_earlier_recipe_keeps_its_plan(tmp_path):
    """The sweep's own copy holds the stages an earlier version's recipe made: it still loads
    (resume keeps the plan), and launching the budget again says what happened."""
    earlier = [
        s.model_copy(update={"trials": t}) for s, t in zip(recipe(24, 12), (8, 16), strict=True)
    ]
    path = tmp_path / "space.yaml"
    path.write_text(BUDGET)
    planned = spec.load(path).model_copy(update={"stages": earlier})
    folder = tmp_path / "sweeps" / "budget-sweep"
    claim(folder, Identity(planned.name, planned.fingerprint()))
    dumped = planned.model_dump(mode="json", exclude_none=True)
    (folder / "spec.yaml").write_text(yaml.safe_dump(dumped, sort_keys=False))
    assert SweepFolder(folder).load_spec().stages == earlier
    assert spec.read_back(planned.model_dump_json()).stages == earlier  # as the StudyServer
    with pytest.raises(UserError, match=r"give `stages` .* or `budget` .*, not both"):
        spec.load(folder / "spec.yaml")  # as a user's space.yaml: both is ambiguous
    with pytest.raises(UserError, match="planned for its budget by an earlier version's recipe"):
        check_same_spec(SweepFolder(folder), spec.load(path))


def test_a_device_is_refused_unread():
    """/dev/zero passed the size check (0 bytes) and was read until memory ran out."""
    with pytest.raises(UserError, match="/dev/zero: not a file"):
        spec.load("/dev/zero")


def test_a_per_layer_option_deeper_than_any_network_is_refused(tmp_path):
    """hidden_units_9 with the default 2 hidden layers was sampled, recorded, never used."""
    searched = "  hidden_units_9: {scale: pow2, low: 8, high: 64}"
    text = GOOD.replace("space:\n", f"space:\n{searched}\n")
    message = _error(tmp_path, text)
    number = text.splitlines().index(searched) + 1
    assert message == (
        f"{tmp_path / 'space.yaml'}:{number}: space.hidden_units_9: hidden_units_9 sets hidden "
        "layer 9, but no network of this space has more than 2 hidden layers (num_layers)"
    )
    deeper = text.replace("space:\n", "space:\n  num_layers: {scale: int, low: 1, high: 9}\n")
    (tmp_path / "space.yaml").write_text(deeper)
    assert "hidden_units_9" in spec.load(tmp_path / "space.yaml").space


def test_a_value_no_member_of_a_union_takes_is_one_line_naming_the_field(tmp_path):
    """pack: 0 gave two lines in pydantic's words (resources.pack.constrained-int: …,
    resources.pack.literal['auto']: …)."""
    text = GOOD + "resources: {pack: 0}\n"
    message = _error(tmp_path, text)
    assert message == (
        f"{tmp_path / 'space.yaml'}:{len(text.splitlines())}: resources.pack: Input should be "
        "greater than or equal to 1, or 'auto'"
    )


def test_pack_yes_is_refused_not_read_as_one_trial_per_task(tmp_path):
    """`pack: yes` (or true, on) is YAML's True, which pydantic took for the integer 1: the
    sweep launched without a word and trained one trial per task, no packing."""
    for word in ("yes", "true", "on"):
        text = GOOD + f"resources: {{pack: {word}}}\n"
        assert _error(tmp_path, text) == (
            f"{tmp_path / 'space.yaml'}:{len(text.splitlines())}: resources.pack: Input should "
            "be a valid integer, or 'auto'"
        )


def test_budget_epochs_with_epochs_searched_is_one_message_at_the_budget(tmp_path):
    """budget.epochs writes train.epochs, so `epochs` searched in `space` was also told it is
    'both fixed in `train` and searched in `space`', at the space's line, in a spec with no
    `train:` at all: two lines, the first about a section the user never wrote."""
    text = BUDGET.replace("space:\n", "space:\n  epochs: {scale: int, low: 2, high: 6}\n")
    line = text.splitlines().index("budget: {trials: 24, epochs: 12}") + 1
    assert _error(tmp_path, text) == (
        f"{tmp_path / 'space.yaml'}:{line}: budget.epochs: epochs is searched in `space`: "
        "budget.epochs cannot fix it"
    )
