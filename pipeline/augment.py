"""Generated training pairs that teach word order: PAWS' word-swapping recipe without its
human labels (Zhang et al. 2019).

Quora's labelled pairs hold few questions that share every word in another order, so no model
learns that "from India to Canada" is not "from Canada to India". Each recipe rewrites train
questions by swapping two phrases, and pairs the question with its rewrite:

- where the order says who does what to whom, the rewrite asks something else (label 0):
  `from_to` ("from A to B"), `comparative` ("is A better than B"), `entity_swap` (two names
  around a relation word: "did A declare war on B"), `convert_to` ("convert A to B", "exchange
  A for B": `CONVERSION_VERBS`);
- where the order carries no meaning, it asks the same thing (label 1): `between` ("between A
  and B"), `conjunct` (two names joined by and / or / vs).

Four more recipes change one word instead, to the opposite meaning (label 0): `antonym`
("better" -> "worse", "before" -> "after": `ANTONYMS`, both ways), `comparative_opposite` (a
comparative before "than" and its opposite, a phrase where English writes one: "cheaper" ->
"more expensive", `COMPARATIVE_OPPOSITES`), `negation` (the first
auxiliary negated: "Why is" -> "Why isn't") and `negation_not` (the same spelled out, "not"
after a question's subject: "Why is Python popular?" -> "Why is Python not popular?"; the text
core reads "isn't" as "isn ' t", so without it no generated pair holds the word "not").

One recipe needs a parser, where no regular expression can find the two phrases:
`subject_object` swaps the noun subject and the noun object of a verb ("Does cognition affect
perception?" -> "Does perception affect cognition?", label 0), read from the dependency parse
of `augment.parser` (a spaCy pipeline) over a seeded sample of the questions.

Perturbations teach the opposite: changes that ask nothing new. Each rewrites one question of
a real train pair and keeps the pair's label: `end_mark` (the question mark dropped, doubled,
or a full stop), `courtesy` (a polite opening from `COURTESY`, a list of its own: the
behaviour suite's prefixes are not in it).

Every recipe is one regular expression with named groups run by Arrow over the whole column:
a swap's rewrite is pre + b + mid + a + post, a change's is pre + its replacement of a + post.
Only the train split's questions are rewritten (the features stage calls this for train
alone), a real labelled pair always wins over a generated one, and the draw is seeded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.lexicon import ANTONYMS, COMPARATIVE_OPPOSITES, NEGATED, NEGATION
from pipeline.params import Fraction, Int, Names, Section, Text

NAME = r"[A-Z][\w.+#-]*(?: [A-Z][\w.+#-]*){0,2}"  # one to three capitalized words
PHRASE = rf"(?:(?:the|a|an) )?(?:{NAME}|\w+)"  # a name or one word, with an optional article
COMPARATIVES = (
    "better|worse|bigger|smaller|larger|faster|slower|cheaper|stronger|weaker|older|younger|"
    r"richer|poorer|safer|easier|harder|higher|lower|greater|smarter|more \w+|less \w+"
)
# what turns one thing into another: "convert A to B" asks the opposite of "convert B to A"
CONVERSION_VERBS = "convert|change|exchange|turn|translate|transform|switch|migrate|transfer"
RELATION_WORDS = "to|on|against|with|for|by|over|into|from|at|than|about|of"
QUESTION_WORDS = "why|how|what|when|where|who|which"
AUXILIARIES = "is|are|was|were|do|does|did|can|could|should|would|will"
SUBJECT = rf"(?:I|you|we|they|he|she|it|{NAME})"  # a pronoun or a name, nothing longer
GROUPS = ("pre", "a", "mid", "b", "post")

# never one of the swapped phrases: the rewrite would be word salad, not a question
NOT_A_PHRASE = frozenset(
    "i you he she it we they me him her us them this that these those there here what which "
    "who whom whose how why when where other others any some all each every one ones else "
    "is are was were be been do does did can could will would should may might must has have "
    "had not no more most less very much many ever never before after on off up down out over "
    "back around away".split()  # the last: a verb's particle ("turn on"), not a phrase
)


@dataclass(frozen=True)
class Recipe:
    name: str
    label: int  # what the rewrite is to its question: 1 duplicate, 0 not
    pattern: str  # named groups pre, a, mid, b, post (or pre, a, post); the whole question
    replace: dict | None = None  # a change, not a swap: a's replacement by its lowercase form
    append: str | None = None  # a change, not a swap: this written after a

    @property
    def changes(self) -> bool:
        return self.replace is not None or self.append is not None


def _words(words) -> str:
    return "|".join(sorted(words, key=len, reverse=True))


RECIPES = {
    recipe.name: recipe
    for recipe in (
        Recipe(
            "from_to",
            0,
            rf"^(?P<pre>.*\bfrom )(?P<a>{PHRASE})(?P<mid> to )(?P<b>{PHRASE})"
            r"(?P<post>\b.*)$",
        ),
        Recipe(
            "comparative",
            0,
            r"^(?P<pre>.*?\b(?:[Ii]s|[Aa]re|[Ww]as|[Ww]ere) )"
            rf"(?P<a>{PHRASE})(?P<mid> (?:{COMPARATIVES}) than )(?P<b>{PHRASE})"
            r"(?P<post>\b.*)$",
        ),
        Recipe(
            "entity_swap",
            0,
            rf"^(?P<pre>\S.*? )(?P<a>(?:the )?{NAME})"
            rf"(?P<mid> (?:\w+ ){{0,3}}(?:{RELATION_WORDS}) )(?P<b>(?:the )?{NAME})"
            r"(?P<post>\b.*)$",
        ),
        Recipe(
            "between",
            1,
            rf"^(?P<pre>.*?\bbetween )(?P<a>{PHRASE})(?P<mid> and )"
            rf"(?P<b>{PHRASE})(?P<post>\b.*)$",
        ),
        Recipe(
            "conjunct",
            1,
            rf"^(?P<pre>\S.*? )(?P<a>{NAME})(?P<mid> (?:and|or|vs\.?|versus) )"
            rf"(?P<b>{NAME})(?P<post>\b.*)$",
        ),
        Recipe(
            "convert_to",
            0,
            rf"^(?P<pre>.*?\b(?i:{CONVERSION_VERBS})(?:s|ed|ing)? (?:(?i:my|your|our|their) )?)"
            rf"(?P<a>{PHRASE})(?P<mid> (?:to|into|for) )(?P<b>{PHRASE})"
            # b ends the question or a preposition follows it: "convert PDF to Word document"
            # would swap the first word of a longer name
            r"(?P<post>(?:,? (?:in|using|with|without|on|online|at|for|by|and|or|so|if|when|"
            r"while|manually|easily|quickly|automatically)\b.*)?[\s?.!]*)$",
        ),
        Recipe(
            "comparative_opposite",
            0,
            rf"^(?P<pre>.*?\b)(?P<a>{_words(w for pair in COMPARATIVE_OPPOSITES for w in pair)})"
            r"(?P<post> than .*)$",
            replace={**dict(COMPARATIVE_OPPOSITES), **{b: a for a, b in COMPARATIVE_OPPOSITES}},
        ),
        Recipe(
            "antonym",
            0,
            rf"^(?P<pre>.*?\b)(?P<a>{_words(w for pair in ANTONYMS for w in pair)})(?P<post>\b.*)$",
            replace={**dict(ANTONYMS), **{b: a for a, b in ANTONYMS}},
        ),
        Recipe(
            "negation",
            0,
            rf"^(?P<pre>.*?\b)(?P<a>(?i:{_words(NEGATED)}))(?P<post> .*)$",
            replace=NEGATED,
        ),
        Recipe(
            "negation_not",
            0,
            rf"^(?P<pre>(?:(?i:{QUESTION_WORDS}) )?(?i:{AUXILIARIES}) )(?P<a>{SUBJECT})"
            r"(?P<post> [a-z0-9].*)$",  # the subject ends where a lowercase word follows
            append=" not",
        ),
    )
}

COURTESY = (
    "Does anyone know: ", "Can someone explain: ", "I have a question: ", "Just curious: ",
    "Hi all, ", "Help me understand: ", "Serious question: ", "Out of curiosity, ",
)  # fmt: skip


def _end_mark(questions: pa.Array, rng: np.random.Generator) -> pa.Array:
    bare = pc.replace_substring_regex(questions, r"[\s?.!]+$", "")
    ending = pa.array(np.array(["", "??", "."])[rng.integers(3, size=len(questions))])
    return pc.binary_join_element_wise(bare, ending, "")


def _courtesy(questions: pa.Array, rng: np.random.Generator) -> pa.Array:
    prefix = pa.array(np.array(COURTESY)[rng.integers(len(COURTESY), size=len(questions))])
    return pc.binary_join_element_wise(prefix, questions, "")


PERTURBATIONS = {"end_mark": _end_mark, "courtesy": _courtesy}

AUGMENT = Section(
    "augment",
    {
        "recipes": Names(lambda: [*RECIPES, *PARSED, *PERTURBATIONS]),
        "share": Fraction(),  # generated pairs per train pair, at most; 0: none
        "seed": Int(),
        "parser": Text(),  # the spaCy pipeline of subject_object (only it loads one)
    },
)


def rewrites(questions: pa.Array, recipe: Recipe) -> tuple[np.ndarray, pa.Array]:
    """Positions of the questions the recipe rewrites, and their rewrites."""
    parts = pc.extract_regex(pc.fill_null(questions.cast(pa.string()), ""), recipe.pattern)
    matched = pc.is_valid(parts).to_numpy(zero_copy_only=False)
    parts = parts.filter(pa.array(matched))
    if recipe.changes:
        return _changed(questions, np.flatnonzero(matched), parts, recipe)
    group = {name: parts.field(name) for name in GROUPS}
    keep = _swappable(group["a"]) & _swappable(group["b"])
    keep &= ~pc.equal(pc.utf8_lower(group["a"]), pc.utf8_lower(group["b"])).to_numpy(
        zero_copy_only=False
    )
    # a name cut in two: a capitalized word right before a (not the question's first word)
    # or right after b
    keep &= ~pc.match_substring_regex(group["pre"], r". [A-Z]\S* $").to_numpy(zero_copy_only=False)
    keep &= ~pc.match_substring_regex(group["post"], r"^ [A-Z]").to_numpy(zero_copy_only=False)
    if recipe.label == 0:  # a phrase that joins, rather than relates, the two
        keep &= ~pc.match_substring_regex(
            group["mid"], r"(?i)\b(?:and|or|vs|versus|between)\b|,"
        ).to_numpy(zero_copy_only=False)
    swapped = pc.binary_join_element_wise(
        group["pre"], group["b"], group["mid"], group["a"], group["post"], ""
    )
    positions = np.flatnonzero(matched)[keep]
    return positions, swapped.filter(pa.array(keep))


SWAPPED_TAGS = ("NN", "NNS", "NNP", "NNPS")  # a noun at the head of each swapped phrase
# the words of a plain noun phrase: determiners, possessives, adjectives, numbers, nouns
PHRASE_TAGS = frozenset(
    ("DT", "PDT", "PRP$", "JJ", "JJR", "JJS", "CD", "POS", "HYPH", *SWAPPED_TAGS)
)
MAX_PHRASE_TOKENS = 4  # longer phrases swap clauses, not who does what to whom
PARSED_PER_PAIR = 40  # questions parsed per pair wanted: 1 in 22 has a noun subject and object


def subject_object_swaps(questions: pa.Array, nlp) -> tuple[np.ndarray, pa.Array]:
    """Positions of the questions where a verb has a noun subject before it and a noun object
    after it (each at most MAX_PHRASE_TOKENS tokens, no question word), and the questions with
    the two swapped. The first such verb of a question is used."""
    positions, rewritten = [], []
    texts = questions.to_pylist()
    for position, doc in enumerate(nlp.pipe(texts, batch_size=256)):
        for obj in doc:
            if obj.dep_ != "dobj" or obj.tag_ not in SWAPPED_TAGS:
                continue
            verb = obj.head
            subjects = [c for c in verb.lefts if c.dep_ == "nsubj" and c.tag_ in SWAPPED_TAGS]
            if not subjects:
                continue
            a, b = _phrase(doc, subjects[0]), _phrase(doc, obj)
            if a is None or b is None or a.end > verb.i or b.start <= verb.i:
                continue
            if a.text.lower() == b.text.lower():
                continue
            text = doc.text
            first, second = b.text, a.text
            if a.start_char == 0:  # the object opens the question now
                first = first[:1].upper() + first[1:]
                if a[0].tag_ not in ("NNP", "NNPS"):
                    second = second[:1].lower() + second[1:]
            positions.append(position)
            rewritten.append(
                text[: a.start_char] + first + text[a.end_char : b.start_char] + second
                + text[b.end_char :]
            )  # fmt: skip
            break
    return np.array(positions, dtype=np.int64), pa.array(rewritten, pa.string())


def _phrase(doc, head):
    """The phrase a noun heads (its subtree), or None where it is too long or holds more than
    a noun phrase's words (a question word, a negation, a preposition: a misparse)."""
    span = doc[head.left_edge.i : head.right_edge.i + 1]
    if len(span) > MAX_PHRASE_TOKENS or any(t.tag_ not in PHRASE_TAGS for t in span):
        return None
    return span


PARSED = {"subject_object": subject_object_swaps}


def generated_pairs(
    train: pd.DataFrame, recipes: list[str], share: float, seed: int, key, parser: str = ""
) -> pd.DataFrame:
    """Pairs of a train question and its rewrite (or, for a perturbation, a real train pair
    with one question rewritten): question1, question2, is_duplicate, recipe.

    At most `share` x len(train) pairs, split evenly across `recipes` (each recipe's pairs drawn
    at random from all it can make, seeded). `key(texts)` maps texts to what the text core
    sees; a generated pair with the same key as a real train pair is dropped (the real label
    wins), and so is a rewrite that the text core cannot tell from its question. `parser`: the
    spaCy pipeline of the `PARSED` recipes, loaded only for them.
    """
    columns = {"question1": [], "question2": [], "is_duplicate": [], "recipe": []}
    if not recipes or share == 0:
        return _frame(columns)
    questions = pa.array(
        pd.concat([train["question1"], train["question2"]]).dropna().unique().astype(str),
        pa.string(),
    )
    per_recipe = int(share * len(train)) // len(recipes)
    real = set(_pair_keys(key(train["question1"]), key(train["question2"])))
    rng = np.random.default_rng(seed)
    for name in recipes:
        if name in PERTURBATIONS:
            first, second, labels, changed = _perturbed(train, PERTURBATIONS[name], rng)
        elif name in PARSED:
            sample = questions.take(
                pa.array(np.sort(rng.permutation(len(questions))[: PARSED_PER_PAIR * per_recipe]))
            )
            positions, second = PARSED[name](sample, _parser(parser))
            first = changed = sample.take(pa.array(positions, pa.int64()))
            labels = np.zeros(len(first), np.int64)
        else:
            positions, second = rewrites(questions, RECIPES[name])
            first = questions.take(pa.array(positions, pa.int64()))
            labels = np.full(len(first), RECIPES[name].label, np.int64)
            changed = first
        keys_a, keys_b = key(first), key(second)
        new = pd.Series(_pair_keys(keys_a, keys_b))
        usable = ~new.isin(real).to_numpy() & ~pc.equal(key(changed), keys_b).to_numpy(
            zero_copy_only=False
        )
        usable &= ~new.duplicated().to_numpy()
        chosen = pa.array(np.sort(rng.permutation(np.flatnonzero(usable))[:per_recipe]), pa.int64())
        columns["question1"].append(first.take(chosen).to_pylist())
        columns["question2"].append(second.take(chosen).to_pylist())
        columns["is_duplicate"].append(labels[chosen.to_numpy()])
        columns["recipe"].append(np.full(len(chosen), name, object))
    return _frame({name: np.concatenate(parts) for name, parts in columns.items()})


def _parser(name: str):
    from pipeline.word_vectors import spacy_pipeline  # spaCy loads only where a recipe parses

    return spacy_pipeline(name, "augment.parser", exclude=["ner", "lemmatizer", "senter"])


def _perturbed(train: pd.DataFrame, perturb, rng: np.random.Generator):
    """Every real train pair with its second question perturbed: (first, second, labels, the
    question before the change). Which side of the pair is first is drawn at random."""
    pairs = train.dropna(subset=["question1", "question2"])
    flip = rng.random(len(pairs)) < 0.5
    first, second = pairs["question1"].to_numpy(str), pairs["question2"].to_numpy(str)
    kept = pa.array(np.where(flip, second, first), pa.string())
    before = pa.array(np.where(flip, first, second), pa.string())
    labels = pairs["is_duplicate"].to_numpy(np.int64)
    return kept, perturb(before, rng), labels, before


def _changed(questions, positions, parts, recipe: Recipe) -> tuple[np.ndarray, pa.Array]:
    """pre + a's replacement (capitalized where a was) or a + the appended words, + post;
    questions that already hold a negation are left out (a second one would cancel, not flip,
    the meaning)."""
    word = parts.field("a")
    if recipe.append is not None:
        replacement = pc.binary_join_element_wise(word, recipe.append, "")
    else:
        lower = pc.utf8_lower(word)
        keys = pa.array(list(recipe.replace), pa.string())
        values = pa.array(list(recipe.replace.values()), pa.string())
        replacement = pc.take(values, pc.index_in(lower, value_set=keys))
        capital = pc.not_equal(word, lower)
        replacement = pc.if_else(capital, pc.utf8_capitalize(replacement), replacement)
    rewrite = pc.binary_join_element_wise(parts.field("pre"), replacement, parts.field("post"), "")
    negated = pc.match_substring_regex(
        questions.take(pa.array(positions, pa.int64())), NEGATION
    ).to_numpy(zero_copy_only=False)
    keep = ~negated
    return positions[keep], rewrite.filter(pa.array(keep))


def _swappable(phrase: pa.Array) -> np.ndarray:
    bare = pc.replace_substring_regex(pc.utf8_lower(phrase), r"^(?:the|a|an) ", "")
    return ~pc.is_in(bare, value_set=pa.array(sorted(NOT_A_PHRASE))).to_numpy(zero_copy_only=False)


def _pair_keys(keys_a, keys_b) -> np.ndarray:
    """One key per pair, the same either way round."""
    a = np.asarray(keys_a.to_numpy(zero_copy_only=False), dtype=object)
    b = np.asarray(keys_b.to_numpy(zero_copy_only=False), dtype=object)
    first = np.where(a <= b, a, b)
    second = np.where(a <= b, b, a)
    return first + "\t" + second


def _frame(columns: dict) -> pd.DataFrame:
    return pd.DataFrame(columns).astype(
        {"question1": "string", "question2": "string", "is_duplicate": "int64", "recipe": "string"}
    )
