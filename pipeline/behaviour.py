"""A behavioural test suite for pair models (the CheckList idea, Ribeiro et al. 2020).

Pairs are written from templates and lexicons in this module, never from the Quora files, so
the suite measures what a model does with a kind of difference, not how well it fits the
data. Each capability has its expectation:

- `expect: 0`: not a duplicate (order that carries meaning, one changed entity, number, year,
  negation or comparative);
- `expect: 1`: a duplicate (order that carries no meaning: "A and B", "between A and B");
- `expect: same`: an invariance; the pair's prediction must not change when one question gets
  a typo, other casing or punctuation, or a polite prefix (each row holds the base pair and
  the perturbed one).

The templates were written before any model was run on them and are not tuned to a model.
`failed_tests` turns a model's predictions into the tests it fails; `failure_rates` counts them
per capability, `perturbation_failure_rates` per invariance's perturbation.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

PAIRS_PER_CAPABILITY = 300

COUNTRIES = [
    "India", "Canada", "Germany", "France", "Japan", "China", "Brazil", "Mexico", "Italy",
    "Spain", "Russia", "Australia", "Nigeria", "Egypt", "Kenya", "Pakistan", "Turkey",
    "Sweden", "Norway", "Poland", "Vietnam", "Argentina", "Chile", "Peru", "Ireland",
]  # fmt: skip
CURRENCIES = [
    "dollars", "euros", "rupees", "yen", "pounds", "pesos", "yuan", "rubles", "francs",
    "bitcoin",
]  # fmt: skip
UNITS = [
    ("Celsius", "Fahrenheit"), ("kilograms", "pounds"), ("miles", "kilometers"),
    ("inches", "centimeters"), ("liters", "gallons"), ("meters", "feet"),
]  # fmt: skip
LANGUAGES = [
    "Python", "Java", "C++", "JavaScript", "Rust", "Go", "Ruby", "Kotlin", "Swift", "PHP",
    "Haskell", "Scala",
]  # fmt: skip
SPOKEN = [
    "English", "French", "German", "Spanish", "Japanese", "Chinese", "Hindi", "Arabic",
    "Russian", "Italian", "Portuguese", "Korean",
]  # fmt: skip
PAIRED_THINGS = [
    ("a virus", "a bacterium"), ("a cat", "a dog"), ("tea", "coffee"), ("love", "lust"),
    ("weather", "climate"), ("a lake", "a pond"), ("an alligator", "a crocodile"),
    ("a CPU", "a GPU"), ("RAM", "ROM"), ("a stock", "a bond"), ("speed", "velocity"),
    ("a mutual fund", "an ETF"), ("TCP", "UDP"), ("socialism", "communism"),
    ("an app", "a website"), ("ethics", "morals"), ("a psychologist", "a psychiatrist"),
    ("butter", "margarine"), ("a college", "a university"), ("mass", "weight"),
]  # fmt: skip
ROLES = [
    ("the teacher", "the student"), ("the doctor", "the patient"), ("the police", "the thief"),
    ("the dog", "the cat"), ("the company", "the employee"), ("the parent", "the child"),
    ("the landlord", "the tenant"), ("the seller", "the buyer"), ("the boss", "the worker"),
]  # fmt: skip
ROLE_VERBS = ["sue", "blame", "trust", "pay", "fear", "respect", "hate", "help", "lie to"]
ADJECTIVES = [
    "good", "safe", "expensive", "popular", "healthy", "difficult", "useful", "legal",
    "dangerous", "important", "necessary", "possible",
]  # fmt: skip
TOPICS = [
    "Python", "investing in gold", "a vegan diet", "nuclear power", "online dating",
    "homeschooling", "remote work", "coffee", "social media", "a gap year", "cryptocurrency",
    "running every day", "electric cars", "learning Latin",
]  # fmt: skip
COMPARATIVES = [
    ("better", "worse"), ("cheaper", "more expensive"), ("faster", "slower"),
    ("safer", "more dangerous"), ("easier", "harder"), ("bigger", "smaller"),
]  # fmt: skip
EVENTS = [
    "the Berlin Wall fell", "India became independent", "the Titanic sank",
    "the first iPhone came out", "World War I began", "man landed on the Moon",
    "the Soviet Union collapsed", "the euro was introduced",
]  # fmt: skip
HISTORY = [
    "What happened in {x}?", "What was the most important invention of {x}?",
    "Who won the World Cup in {x}?", "What was the best movie of {x}?",
    "Which songs were popular in {x}?",
]  # fmt: skip
PERTURB_BASES = [
    ("How do I learn {lang}?", "What is the best way to learn {lang}?"),
    ("How can I improve my {s}?", "What are some ways to get better at {s}?"),
    ("Why do people move to {c}?", "What makes people move to {c}?"),
    ("Is {t} worth it?", "Is it worth trying {t}?"),
    ("How do I become fluent in {s}?", "How can I speak {s} fluently?"),
]  # fmt: skip

CAPABILITIES = {
    # name: (group, expectation)
    "order_from_to": ("order carries meaning", 0),
    "order_conversion": ("order carries meaning", 0),
    "order_subject_object": ("order carries meaning", 0),
    "order_free_between": ("order carries no meaning", 1),
    "order_free_and": ("order carries no meaning", 1),
    "changed_entity": ("one changed entity", 0),
    "changed_number": ("one changed entity", 0),
    "changed_year": ("one changed entity", 0),
    "negation": ("one changed entity", 0),
    "comparative": ("one changed entity", 0),
    "before_after": ("one changed entity", 0),
    "typo": ("invariance", "same"),
    "case_and_punctuation": ("invariance", "same"),
    "polite_prefix": ("invariance", "same"),
}


def _ordered_pairs(items):
    return [(a, b) for a, b in itertools.permutations(items, 2)]


def _raw_pairs() -> dict[str, list[tuple[str, str]]]:
    """Every templated pair of each capability that expects a label (the suite samples from
    these)."""
    pairs: dict[str, list[tuple[str, str]]] = {}
    move = ["Why do people move from {a} to {b}?", "Is it easy to emigrate from {a} to {b}?",
            "How long is a flight from {a} to {b}?", "How do I send money from {a} to {b}?",
            "Which is the cheapest way to travel from {a} to {b}?"]  # fmt: skip
    pairs["order_from_to"] = [
        (t.format(a=a, b=b), t.format(a=b, b=a)) for t in move for a, b in _ordered_pairs(COUNTRIES)
    ]
    convert = ["How do I convert {a} to {b}?", "What is the best way to exchange {a} for {b}?",
               "Should I change my {a} into {b} now?"]  # fmt: skip
    units = ["How do I convert {a} to {b}?", "What is the formula to go from {a} to {b}?"]
    pairs["order_conversion"] = [
        (t.format(a=a, b=b), t.format(a=b, b=a))
        for t in convert
        for a, b in _ordered_pairs(CURRENCIES)
    ] + [(t.format(a=a, b=b), t.format(a=b, b=a)) for t in units for a, b in UNITS]
    roles = ["Why does {a} {v} {b}?", "What happens when {a} {v}s {b}?",
             "Can {a} {v} {b}?"]  # fmt: skip
    pairs["order_subject_object"] = [
        (t.format(a=a, b=b, v=v), t.format(a=b, b=a, v=v))
        for t in roles
        for a, b in ROLES
        for v in ROLE_VERBS
        if not (t == roles[1] and " " in v)  # "lie tos" is not English
    ]
    between = ["What is the difference between {a} and {b}?",
               "How do I choose between {a} and {b}?",
               "What do {a} and {b} have in common?"]  # fmt: skip
    pairs["order_free_between"] = [
        (t.format(a=a, b=b), t.format(a=b, b=a)) for t in between for a, b in PAIRED_THINGS
    ] + [
        (f"What is the difference between {a} and {b}?",
         f"What is the difference between {b} and {a}?")
        for a, b in itertools.combinations(LANGUAGES, 2)
    ]  # fmt: skip
    both = ["Should I learn {a} and {b} at the same time?", "Is it hard to learn {a} and {b}?",
            "Which jobs need both {a} and {b}?"]  # fmt: skip
    pairs["order_free_and"] = [
        (t.format(a=a, b=b), t.format(a=b, b=a))
        for t in both
        for a, b in itertools.combinations(LANGUAGES + SPOKEN, 2)
    ]
    entity = ["How do I learn {x}?", "Is {x} worth learning in 2024?",
              "What are the best books to learn {x}?", "How long does it take to learn {x}?",
              "Why is {x} so popular?"]  # fmt: skip
    pairs["changed_entity"] = [
        (t.format(x=a), t.format(x=b))
        for t in entity
        for group in (LANGUAGES, SPOKEN)
        for a, b in _ordered_pairs(group)
    ] + [
        (f"What is the capital of {a}?", f"What is the capital of {b}?")
        for a, b in _ordered_pairs(COUNTRIES)
    ]
    amounts = ["Is {n} dollars a month enough to live in {c}?", "How do I lose {n} kg in a month?",
               "Can I run {n} km without training?",
               "Is a salary of {n} thousand a year good in {c}?"]  # fmt: skip
    numbers = [3, 5, 10, 20, 50, 100, 500, 1000]
    pairs["changed_number"] = [
        (t.format(n=a, c=c), t.format(n=b, c=c))
        for t in amounts
        for a, b in _ordered_pairs(numbers)
        for c in COUNTRIES[:3]
    ]
    years = [1950, 1969, 1980, 1989, 1995, 2000, 2008, 2016]
    pairs["changed_year"] = [
        (t.format(x=a), t.format(x=b)) for t in HISTORY for a, b in _ordered_pairs(years)
    ]
    negate = [
        ("Why is {t} {a}?", "Why is {t} not {a}?"),
        ("Is {t} {a}?", "Is {t} not {a}?"),
        ("Why do people think {t} is {a}?", "Why do people think {t} is not {a}?"),
    ]
    pairs["negation"] = [
        (p.format(t=t, a=a), n.format(t=t, a=a))
        for p, n in negate
        for t in TOPICS
        for a in ADJECTIVES
    ]
    compare = ["Is {a} {c} than {b}?", "Why is {a} {c} than {b}?"]
    pairs["comparative"] = [
        (t.format(a=a, b=b, c=c), t.format(a=a, b=b, c=d))
        for t in compare
        for a, b in PAIRED_THINGS
        for c, d in COMPARATIVES
    ]
    around = ["What happened just before {e}?", "What was life like before {e}?",
              "How did prices change in the year before {e}?"]  # fmt: skip
    pairs["before_after"] = [
        (t.format(e=e), t.replace("before", "after").format(e=e)) for t in around for e in EVENTS
    ] + [
        (f"Should I {a} before I {b}?", f"Should I {a} after I {b}?")
        for a, b in _ordered_pairs(
            [
                "eat",
                "run",
                "study",
                "sleep",
                "shower",
                "meditate",
                "work out",
                "drink coffee",
                "swim",
                "fast",
                "stretch",
                "read",
            ]  # fmt: skip
        )
    ]
    return pairs


def _invariance_bases() -> list[tuple[str, str]]:
    """Paraphrase pairs that the invariance tests perturb."""
    return [
        (q1.format(lang=lang, s=s, c=c, t=t), q2.format(lang=lang, s=s, c=c, t=t))
        for q1, q2 in PERTURB_BASES
        for lang, s, c, t in zip(
            itertools.cycle(LANGUAGES),
            itertools.cycle(SPOKEN),
            itertools.cycle(COUNTRIES),
            TOPICS * 3,
            strict=False,
        )
    ]


def _typo(text: str, rng: np.random.Generator) -> tuple[str, str]:
    """Two different neighbouring letters swapped inside the question's longest word."""
    words = text.split(" ")
    for i in sorted(range(len(words)), key=lambda k: -len(words[k])):
        word = words[i]
        places = [
            j
            for j in range(1, len(word) - 2)
            if word[j].isalpha() and word[j + 1].isalpha() and word[j] != word[j + 1]
        ]
        if places:
            j = int(rng.choice(places))
            words[i] = word[:j] + word[j + 1] + word[j] + word[j + 2 :]
            return " ".join(words), "letters swapped"
    raise ValueError(f"no typo to make in {text!r}")


def _case_and_punctuation(text: str, rng: np.random.Generator) -> tuple[str, str]:
    choice = int(rng.integers(3))
    if choice == 0:
        return text.lower().rstrip("?"), "lowercase, no question mark"
    if choice == 1:
        return text.upper(), "uppercase"
    return text.rstrip("?") + "??", "question mark doubled"


def _polite(text: str, rng: np.random.Generator) -> tuple[str, str]:
    prefix = ["Can you tell me: ", "Please help: ", "Quick question: ", "I wonder: "]
    chosen = prefix[int(rng.integers(len(prefix)))]
    return chosen + text, chosen.strip()


PERTURBATIONS = {
    "typo": _typo,
    "case_and_punctuation": _case_and_punctuation,
    "polite_prefix": _polite,
}


def build_suite(seed: int = 0, per_capability: int = PAIRS_PER_CAPABILITY) -> pd.DataFrame:
    """The suite: one row per test, with `capability`, `group`, `expect` (0, 1 or "same"),
    `question1`, `question2` and, for invariances, `base1`, `base2` (the unperturbed pair) and
    `perturbation` (which change was made). The same seed gives the same rows."""
    rng = np.random.default_rng(seed)
    raw = _raw_pairs()
    frames = []
    for name, (group, expect) in CAPABILITIES.items():
        if expect == "same":
            pool = _invariance_bases()
            size, replace = per_capability, len(pool) < per_capability
            picks = rng.choice(len(pool), size=size, replace=replace)
            base = [pool[i] for i in picks]
            perturb = PERTURBATIONS[name]
            # the perturbed question alternates between the two sides
            rows = []
            for k, (b1, b2) in enumerate(base):
                if k % 2 == 0:
                    changed, how = perturb(b1, rng)
                    rows.append((b1, b2, changed, b2, how))
                else:
                    changed, how = perturb(b2, rng)
                    rows.append((b1, b2, b1, changed, how))
            frame = pd.DataFrame(
                rows, columns=["base1", "base2", "question1", "question2", "perturbation"]
            )
        else:
            pool = list(dict.fromkeys(raw[name]))
            picks = rng.choice(len(pool), size=min(per_capability, len(pool)), replace=False)
            frame = pd.DataFrame(
                [pool[i] for i in sorted(picks)], columns=["question1", "question2"]
            )
        frame.insert(0, "capability", name)
        frame.insert(1, "group", group)
        frame.insert(2, "expect", str(expect))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def failed_tests(suite: pd.DataFrame, predicted: np.ndarray, base_predicted=None) -> np.ndarray:
    """Per row, whether the test failed. `predicted` is each row's 0/1 prediction for
    (question1, question2); for invariances, `base_predicted` is the prediction for
    (base1, base2), and a test fails when the two differ."""
    predicted = np.asarray(predicted).astype(int)
    expect = suite["expect"].to_numpy()
    failed = np.zeros(len(suite), dtype=bool)
    for label in ("0", "1"):
        rows = expect == label
        failed[rows] = predicted[rows] != int(label)
    same = expect == "same"
    if same.any():
        if base_predicted is None:
            raise ValueError("invariance tests need base_predicted")
        failed[same] = predicted[same] != np.asarray(base_predicted).astype(int)[same]
    return failed


def failure_rates(suite: pd.DataFrame, failed: np.ndarray) -> dict:
    """Share of failed tests (`failed_tests`) per capability."""
    by = pd.Series(failed).groupby(suite["capability"].to_numpy(), sort=False).mean()
    return {name: round(float(rate), 4) for name, rate in by.items()}


def perturbation_failure_rates(suite: pd.DataFrame, failed: np.ndarray) -> dict:
    """Per invariance capability, the share of failed tests per perturbation: which change
    (a dropped question mark, uppercase, one opening) moves a model."""
    same = (suite["expect"] == "same").to_numpy()
    rows = suite[same]
    by = pd.Series(failed[same]).groupby(
        [rows["capability"].to_numpy(), rows["perturbation"].to_numpy()], sort=False
    )
    rates: dict[str, dict[str, float]] = {}
    for (capability, perturbation), rate in by.mean().items():
        rates.setdefault(capability, {})[perturbation] = round(float(rate), 4)
    return rates


def run_suite(bundle, suite: pd.DataFrame) -> dict:
    """A bundle's failure rates on the suite, at the bundle's threshold: per capability, the
    worst capability of each group, and per invariance's perturbation."""
    same = (suite["expect"] == "same").to_numpy()
    probability = bundle.predict_proba(suite["question1"], suite["question2"])
    predicted = (probability >= bundle.threshold).astype(int)
    base = np.zeros(len(suite), dtype=int)
    base_probability = bundle.predict_proba(suite["base1"][same], suite["base2"][same])
    base[same] = base_probability >= bundle.threshold
    failed = failed_tests(suite, predicted, base)
    rates = failure_rates(suite, failed)
    worst: dict[str, float] = {}
    for capability, rate in rates.items():
        group = CAPABILITIES[capability][0]
        worst[group] = max(worst.get(group, 0.0), rate)
    return {
        "failure_rate": rates,
        "worst_in_group": worst,
        "by_perturbation": perturbation_failure_rates(suite, failed),
    }
