"""Word lists that more than one part of the pipeline reads: the generated train pairs
(`pipeline.augment`) and gbdt's pair features (`pipeline.pair_features`)."""

# opposite words: the antonym recipe replaces each by the other, gbdt counts them across a pair
ANTONYMS = (
    ("better", "worse"), ("best", "worst"), ("more", "less"), ("most", "least"),
    ("bigger", "smaller"), ("higher", "lower"), ("easier", "harder"), ("faster", "slower"),
    ("stronger", "weaker"), ("older", "younger"), ("richer", "poorer"), ("before", "after"),
    ("increase", "decrease"), ("advantages", "disadvantages"), ("positive", "negative"),
    ("buy", "sell"), ("win", "lose"), ("import", "export"), ("love", "hate"),
)  # fmt: skip
# a comparative and its opposite, written as English writes them ("cheaper" against "more
# expensive"): the comparative_opposite recipe replaces each by the other before "than"
COMPARATIVE_OPPOSITES = (
    ("better", "worse"), ("bigger", "smaller"), ("faster", "slower"), ("easier", "harder"),
    ("stronger", "weaker"), ("richer", "poorer"), ("older", "younger"), ("higher", "lower"),
    ("longer", "shorter"), ("heavier", "lighter"), ("warmer", "colder"), ("smarter", "dumber"),
    ("cheaper", "more expensive"), ("safer", "more dangerous"), ("healthier", "less healthy"),
    ("more popular", "less popular"), ("more important", "less important"),
    ("more common", "less common"), ("more powerful", "less powerful"),
    ("more efficient", "less efficient"), ("more likely", "less likely"),
    ("more useful", "less useful"), ("more effective", "less effective"),
    ("more difficult", "less difficult"), ("more accurate", "less accurate"),
)  # fmt: skip
NEGATED = {
    "is": "isn't", "are": "aren't", "was": "wasn't", "were": "weren't", "do": "don't",
    "does": "doesn't", "did": "didn't", "can": "can't", "could": "couldn't",
    "should": "shouldn't", "would": "wouldn't", "will": "won't",
}  # fmt: skip
# a negation in lowercased text: not, never, no, cannot, none, nothing, nobody, and "n't"
NEGATION = r"(?i)\b(?:not|never|no|cannot|none|nothing|nobody)\b|n[\x27\x{2019}]t\b"
# words around which a change of order rarely changes the meaning ("A and B"), and words around
# which it usually does ("from A to B", "A better than B")
JOINING_WORDS = ("and", "or", "nor", "vs", "versus", "&")
RELATING_WORDS = tuple("from to than of on for by with against over into at".split())
