"""The kept models are the top `keep` of a stage; a model pushed out is dropped, once."""

from sweeper.run.keep import KeptModels


def test_a_stage_keeps_its_best_models_and_drops_the_ones_pushed_out():
    kept = KeptModels(keep=2, maximize=True)
    assert kept.offer(0, 0.5) == (True, set())
    assert kept.offer(1, 0.7) == (True, set())
    assert kept.offer(2, 0.4) == (False, set())  # worse than both kept
    assert kept.offer(3, 0.9) == (True, {0})
    assert kept.offer(4, 0.7) == (False, set())  # a tie goes to the earlier trial (1)
    assert kept.kept == {1, 3}


def test_minimize_and_all():
    kept = KeptModels(keep=1, maximize=False)
    kept.offer(0, 2.0)
    assert kept.offer(1, 1.0) == (True, {0})
    everything = KeptModels(keep="all", maximize=True)
    assert [everything.offer(n, v)[0] for n, v in enumerate([0.1, 0.3, 0.2])] == [True] * 3
    assert everything.kept == {0, 1, 2}
