"""Generated train pairs (pipeline.augment) and the features stage that adds them."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from pipeline.augment import (
    COURTESY,
    PERTURBATIONS,
    RECIPES,
    generated_pairs,
    rewrites,
    subject_object_swaps,
)
from pipeline.io import InputError
from pipeline.text import TextConfig, canonical
from pipeline.word_vectors import spacy_pipeline


def key(texts):
    return canonical(texts, TextConfig())


def rewrite(question: str, recipe: str) -> str | None:
    positions, swapped = rewrites(pa.array([question]), RECIPES[recipe])
    return swapped[0].as_py() if len(positions) else None


@pytest.mark.parametrize(
    ("recipe", "question", "expected"),
    [
        (
            "from_to",
            "Why do people move from India to the United States?",
            "Why do people move from the United States to India?",
        ),
        ("comparative", "Is Python better than Java?", "Is Java better than Python?"),
        (
            "comparative",
            "Why is pyridine more basic than pyrrole?",
            "Why is pyrrole more basic than pyridine?",
        ),
        (
            "entity_swap",
            "Why did Germany declare war on the United States?",
            "Why did the United States declare war on Germany?",
        ),
        (
            "between",
            "What is the difference between a virus and a bacterium?",
            "What is the difference between a bacterium and a virus?",
        ),
        (
            "conjunct",
            "Should I learn Swift or Kotlin first?",
            "Should I learn Kotlin or Swift first?",
        ),
        ("convert_to", "How do I convert PDF to Word?", "How do I convert Word to PDF?"),
        (
            "convert_to",
            "How can I convert my dollars into rupees online?",
            "How can I convert my rupees into dollars online?",
        ),
        (
            "convert_to",
            "What is the best way to exchange dollars for euros?",
            "What is the best way to exchange euros for dollars?",
        ),
    ],
)
def test_each_recipe_swaps_the_two_phrases(recipe, question, expected):
    assert rewrite(question, recipe) == expected


@pytest.mark.parametrize(
    ("recipe", "question", "expected"),
    [
        ("antonym", "Is it better to rent or buy?", "Is it worse to rent or buy?"),
        (
            "comparative_opposite",
            "Why is gold more expensive than silver?",
            "Why is gold cheaper than silver?",
        ),
        ("comparative_opposite", "Is Python safer than C?", "Is Python more dangerous than C?"),
        ("negation", "Why is the sky blue?", "Why isn't the sky blue?"),
        ("negation_not", "Why is Python so popular?", "Why is Python not so popular?"),
        ("negation_not", "How can I lose weight?", "How can I not lose weight?"),
        ("negation_not", "Will Jon Stewart run in 2016?", "Will Jon Stewart not run in 2016?"),
    ],
)
def test_each_change_recipe_writes_the_opposite(recipe, question, expected):
    assert rewrite(question, recipe) == expected


@pytest.mark.parametrize(
    ("recipe", "question"),
    [
        ("from_to", "How do I get from here to there?"),  # not phrases a swap can move
        ("comparative", "Which is better than this?"),
        ("entity_swap", "Is Apple or Google better to work for?"),  # joined, not related
        ("entity_swap", "How do I move from Canada to Canada?"),  # the same name twice
        ("conjunct", "Who sang Yo Yo Honey Singh and Daler Mehndi?"),  # a name cut in two
        ("between", "What is the difference?"),
        ("convert_to", "Why is lingerie such a turn on for men?"),  # a particle, not a phrase
        ("convert_to", "How do I convert PDF to Word documents for free?"),  # a longer name
        ("comparative_opposite", "Which is better, Python or Java?"),  # no "than": no comparison
        ("negation", "Why isn't the sky blue?"),  # negated already: a second would not flip it
        ("antonym", "Why can't I sleep after coffee?"),
        ("negation_not", "Why is Python not popular?"),
        ("negation_not", "What is Python?"),  # nothing after the subject to negate
        ("negation_not", "Why is the sky blue?"),  # a subject longer than a name or pronoun
        ("negation_not", "What is The Big Bang Theory about?"),  # a name cut in two
    ],
)
def test_recipes_leave_alone_what_they_cannot_swap(recipe, question):
    assert rewrite(question, recipe) is None


@pytest.fixture(scope="module")
def parser():
    return spacy_pipeline("en_core_web_md", "augment.parser", exclude=["ner", "lemmatizer"])


def test_subject_object_swaps_a_verbs_noun_subject_and_object(parser):
    questions = [
        "Does cognition affect perception?",
        "How many years Britain ruled India?",
        "How do I learn Python?",  # a pronoun subject: nothing to swap
        "What universities does Rexnord recruit new grads from?",  # a question word in a phrase
        "Why is the sky blue?",  # no object
        "Why do people hate people?",  # the same phrase twice
    ]
    positions, swapped = subject_object_swaps(pa.array(questions), parser)
    assert positions.tolist() == [0, 1]
    assert swapped.to_pylist() == [
        "Does perception affect cognition?",
        "How many years India ruled Britain?",
    ]


def test_the_parsed_recipe_draws_labelled_pairs_and_names_a_missing_parser(parser):
    train = pd.DataFrame(
        {
            "question1": ["Does cognition affect perception?", "Why do cats chase mice?"],
            "question2": ["How can I cook well?", "What is a good diet?"],
            "is_duplicate": [0, 0],
        }
    )
    pairs = generated_pairs(train, ["subject_object"], 1.0, 1, key, parser="en_core_web_md")
    assert set(pairs["recipe"]) == {"subject_object"} and set(pairs["is_duplicate"]) == {0}
    assert ("Does cognition affect perception?", "Does perception affect cognition?") in set(
        zip(pairs["question1"], pairs["question2"], strict=True)
    )
    with pytest.raises(InputError, match="augment.parser='no_such_pipeline'"):
        generated_pairs(train, ["subject_object"], 1.0, 1, key, parser="no_such_pipeline")


def train_split():
    questions = [
        "Why do people move from India to Canada?",
        "How do I convert from dollars to euros?",
        "Is Python better than Java?",
        "Are cats smarter than dogs?",
        "Why did Germany declare war on France?",
        "What is the difference between a virus and a bacterium?",
        "What is the difference between Hindi and Urdu?",
        "Should I learn Swift or Kotlin first?",
        "What should I eat before a run?",
        "How do I learn to cook?",
        "How do I convert PDF to Word?",
    ]
    return pd.DataFrame(
        {
            "question1": questions,
            "question2": ["How can I cook well?"] * len(questions),
            "is_duplicate": [0] * len(questions),
        }
    )


def test_generated_pairs_carry_each_recipes_label_and_respect_the_share():
    train = train_split()
    pairs = generated_pairs(train, list(RECIPES), 0.99, seed=1, key=key)
    assert set(pairs["recipe"]) == set(RECIPES)
    labels = dict(zip(pairs["recipe"], pairs["is_duplicate"], strict=True))
    assert labels == {name: recipe.label for name, recipe in RECIPES.items()}
    assert set(pairs["question1"]) <= set(train["question1"])
    assert len(pairs) <= 0.99 * len(train)
    capped = generated_pairs(train, ["between"], 0.12, seed=1, key=key)  # 1 of the 2 it can make
    assert len(capped) == 1
    assert generated_pairs(train, list(RECIPES), 0.0, seed=1, key=key).empty
    assert generated_pairs(train, [], 0.5, seed=1, key=key).empty


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_a_perturbation_rewrites_one_question_of_a_real_pair_and_keeps_its_label(name):
    train = train_split()
    train.loc[::2, "is_duplicate"] = 1
    train.loc[3, "question2"] = None  # a pair without a second question is never drawn
    pairs = generated_pairs(train, [name], 1.0, seed=3, key=key)
    assert len(pairs) == len(train) - 1 and set(pairs["recipe"]) == {name}
    real = {(q1, q2): label for q1, q2, label in train.itertuples(index=False)}
    questions = set(train["question1"]) | set(train["question2"].dropna())
    rows = pairs[["question1", "question2", "is_duplicate"]].itertuples(index=False)
    for kept, changed, label in rows:
        if name == "courtesy":
            before = changed.removeprefix(next(p for p in COURTESY if changed.startswith(p)))
        else:
            before = next(q for q in questions if q.rstrip("?.") == changed.rstrip("?."))
        assert before in questions and before != changed
        assert real.get((kept, before), real.get((before, kept))) == label


def test_generated_pairs_are_seeded():
    train = train_split()
    draws = [generated_pairs(train, ["between", "from_to"], 0.3, seed, key) for seed in (1, 1, 2)]
    pd.testing.assert_frame_equal(draws[0], draws[1])
    assert len(draws[0]) == len(draws[2]) == 2


def test_a_real_labelled_pair_wins_over_a_generated_one():
    train = train_split()
    # the release already pairs this question with its swap: no generated pair may contradict it
    real = pd.DataFrame(
        {
            "question1": ["Is Java better than Python?"],
            "question2": ["is python better than java ?"],  # what the text core sees alike
            "is_duplicate": [1],
        }
    )
    pairs = generated_pairs(pd.concat([train, real]), ["comparative"], 0.99, 1, key)
    assert pairs["question1"].tolist() == ["Are cats smarter than dogs?"]


def test_features_stage_adds_generated_pairs_to_train_only(featurized, tmp_path):
    """The stage's train arrays, TF-IDF rows and text hold the generated pairs after the real
    ones; val is untouched; the report counts them per recipe."""
    from pipeline.io import read_json
    from pipeline.stages import features
    from pipeline.text_model import load_pairs, load_split, load_tfidf

    params = {section: dict(values) for section, values in featurized.items()}
    processed = tmp_path / "processed"
    shutil.copytree(featurized["paths"]["processed"], processed)
    train = pd.read_parquet(processed / "train.parquet")
    extra = train_split().astype({"is_duplicate": train["is_duplicate"].dtype})
    train = pd.concat([train, extra], ignore_index=True)
    train.to_parquet(processed / "train.parquet", index=False)
    params["paths"].update(
        processed=str(processed),
        features=str(tmp_path / "features"),
        features_report=str(tmp_path / "features.json"),
    )
    params["augment"] = {"recipes": list(RECIPES), "share": 0.05, "seed": 3, "parser": "none"}
    features.run(params)

    directory = Path(params["paths"]["features"])
    generated = pd.read_parquet(directory / "train_generated.parquet")
    assert 0 < len(generated) <= 0.05 * len(train)
    arrays = load_split(directory, "train")
    q1, _ = load_tfidf(directory / "train_tfidf.npz")
    assert len(arrays["label"]) == q1.shape[0] == len(train) + len(generated)
    np.testing.assert_array_equal(arrays["label"][len(train) :], generated["is_duplicate"])
    text = load_pairs(directory, processed, "train", "text")
    assert text["q1"].tolist() == train["question1"].tolist() + generated["question1"].tolist()
    val = pd.read_parquet(processed / "val.parquet")
    assert len(load_split(directory, "val")["label"]) == len(val)
    report = read_json(params["paths"]["features_report"])
    counts = report["generated_train_pairs"]
    assert sum(c["pairs"] for c in counts.values()) == len(generated)
    assert report["train"]["pairs"] == len(train) + len(generated)
