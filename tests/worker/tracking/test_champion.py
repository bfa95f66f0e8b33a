"""The champion gate's decision: a threshold, and never below the current champion."""

from worker.tracking.champion import decide


def test_the_first_version_over_the_threshold_becomes_champion():
    decided = decide(0.9995, 0.99, None)
    assert decided.promoted and "the first champion" in decided.reason


def test_a_version_under_the_threshold_is_never_promoted():
    decided = decide(0.506, 0.99, None)
    assert not decided.promoted and decided.reason == "eval_echo_accuracy 0.506 < 0.99"


def test_a_version_below_the_champion_is_not_promoted_and_an_equal_or_better_one_is():
    assert decide(0.995, 0.99, ("7", 0.999)).reason == "champion v7 scores higher (0.9990 > 0.9950)"
    assert decide(0.999, 0.99, ("7", 0.999)).promoted
    assert "over champion v7" in decide(1.0, 0.99, ("7", 0.999)).reason
