"""The behavioural suite: its pairs, their expectations, and how failures are counted."""

import numpy as np
import pytest

from pipeline.behaviour import (
    CAPABILITIES,
    build_suite,
    failed_tests,
    failure_rates,
    perturbation_failure_rates,
)


@pytest.fixture(scope="module")
def suite():
    return build_suite(seed=0)


def test_every_capability_has_a_hundred_or_more_distinct_tests(suite):
    counts = suite.groupby("capability").size()
    assert set(counts.index) == set(CAPABILITIES)
    assert counts.min() >= 100
    order_and_changes = suite[suite["expect"] != "same"]
    assert not order_and_changes.duplicated(["question1", "question2"]).any()


def test_same_seed_same_suite_and_questions_are_clean_text(suite):
    assert build_suite(seed=0).equals(suite)
    questions = np.concatenate([suite["question1"], suite["question2"]])
    assert all(q.strip() == q and "  " not in q and "{" not in q for q in questions)


def test_pairs_differ_exactly_as_their_capability_says(suite):
    def rows(name):
        return suite[suite["capability"] == name]

    for name in ("order_from_to", "order_conversion", "order_subject_object", "order_free_and"):
        for q1, q2 in rows(name)[["question1", "question2"]].itertuples(index=False):
            words1, words2 = q1.rstrip("?").split(), q2.rstrip("?").split()
            assert q1 != q2 and sorted(words1) == sorted(words2), (name, q1, q2)
    for q1, q2 in rows("negation")[["question1", "question2"]].itertuples(index=False):
        assert " not " in q2 and q2.replace(" not", "", 1) == q1
    for q1, q2 in rows("changed_year")[["question1", "question2"]].itertuples(index=False):
        assert [w for w in q1.split() if not w[:4].isdigit()] == [
            w for w in q2.split() if not w[:4].isdigit()
        ]
    invariance = suite[suite["expect"] == "same"]
    changed_one_side = (invariance["question1"] != invariance["base1"]) ^ (
        invariance["question2"] != invariance["base2"]
    )
    assert changed_one_side.all()


def test_failure_rates_count_wrong_labels_and_changed_predictions():
    suite = build_suite(seed=1, per_capability=10)
    expect = suite["expect"].to_numpy()
    perfect = np.where(expect == "1", 1, 0)
    base = np.zeros(len(suite), dtype=int)
    assert set(failure_rates(suite, failed_tests(suite, perfect, base)).values()) == {0.0}
    everything_duplicate = np.ones(len(suite), dtype=int)
    failed = failed_tests(suite, everything_duplicate, np.ones(len(suite), dtype=int))
    rates = failure_rates(suite, failed)
    for name, (_, expectation) in CAPABILITIES.items():
        assert rates[name] == (1.0 if expectation == 0 else 0.0), name
    flipped = failure_rates(
        suite, failed_tests(suite, np.zeros(len(suite), dtype=int), np.ones(len(suite)))
    )
    assert flipped["typo"] == 1.0 and flipped["order_free_and"] == 1.0
    with pytest.raises(ValueError, match="base_predicted"):
        failed_tests(suite, perfect)


def test_invariance_failures_are_also_counted_per_perturbation(suite):
    invariance = suite[suite["expect"] == "same"]
    assert invariance["perturbation"].notna().all()
    cases = invariance[invariance["capability"] == "case_and_punctuation"]
    assert set(cases["perturbation"]) == {
        "lowercase, no question mark",
        "uppercase",
        "question mark doubled",
    }
    changed = np.where(cases["question1"] != cases["base1"], cases["question1"], cases["question2"])
    assert all(
        text.isupper() == (how == "uppercase") and text.endswith("??") == how.endswith("doubled")
        for text, how in zip(changed, cases["perturbation"], strict=True)
    )
    # a model that fails exactly the uppercase tests
    failed = (suite["perturbation"] == "uppercase").to_numpy()
    rates = perturbation_failure_rates(suite, failed)
    assert set(rates) == {"typo", "case_and_punctuation", "polite_prefix"}
    assert rates["case_and_punctuation"] == {
        "lowercase, no question mark": 0.0,
        "uppercase": 1.0,
        "question mark doubled": 0.0,
    }
    openings = {"Can you tell me:", "Please help:", "Quick question:", "I wonder:"}
    assert set(rates["polite_prefix"]) == openings
    assert set(rates["polite_prefix"].values()) == {0.0}
