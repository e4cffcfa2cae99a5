"""Synthetic question pairs, generated deterministically from a seed, so the pipeline runs offline.

The data is made to be worth learning from, not solvable by word overlap:
- duplicates ask the same intent about the same entity with different phrasings (different
  templates, entity aliases such as "USA" / "the United States"), so they share few words;
- most non-duplicates share most of their words but ask something else: a confusable intent
  about the same entity ("How do I learn Rust?" / "How do I teach Rust?"), or the same
  phrasing about a sibling entity ("... in Japan?" / "... in Canada?").
Every question is assembled as context + template prefix + entity + template suffix, with
numpy choosing indices and pandas concatenating whole columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.params import Int, Number, Section

DEMO = Section(
    "demo",
    {
        "n_pairs": Int(),
        "positive_rate": Number(0.0, 1.0),
        "seed": Int(0),
        "label_noise": Number(0.0, 0.5, open_low=False),
    },
)

# category -> entities, each a list of interchangeable aliases
ENTITIES: dict[str, list[list[str]]] = {
    "language": [
        ["Python", "the Python language"],
        ["Java"],
        ["JavaScript", "JS"],
        ["C++"],
        ["Rust"],
        ["Go", "Golang"],
        ["Ruby"],
        ["Kotlin"],
        ["Swift"],
        ["Haskell"],
        ["TypeScript"],
        ["PHP"],
        ["Scala"],
        ["SQL"],
    ],
    "subject": [
        ["physics"],
        ["organic chemistry"],
        ["calculus"],
        ["statistics", "stats"],
        ["economics"],
        ["philosophy"],
        ["psychology"],
        ["molecular biology"],
        ["world history"],
        ["accounting"],
        ["machine learning", "ML"],
        ["linear algebra"],
        ["astronomy"],
        ["music theory"],
    ],
    "skill": [
        ["guitar", "the guitar"],
        ["piano", "the piano"],
        ["chess"],
        ["swimming"],
        ["cooking"],
        ["photography"],
        ["public speaking"],
        ["drawing", "sketching"],
        ["yoga"],
        ["meditation"],
        ["painting"],
        ["touch typing"],
        ["juggling"],
    ],
    "country": [
        ["the USA", "the United States", "America"],
        ["the UK", "Britain"],
        ["Germany"],
        ["Japan"],
        ["Canada"],
        ["Australia"],
        ["France"],
        ["Brazil"],
        ["Singapore"],
        ["Mexico"],
        ["Italy"],
        ["Spain"],
        ["Norway"],
        ["India"],
        ["New Zealand", "NZ"],
        ["South Korea", "Korea"],
    ],
    "career": [
        ["data scientist"],
        ["software engineer", "software developer"],
        ["doctor", "physician"],
        ["lawyer", "attorney"],
        ["pilot"],
        ["nurse"],
        ["architect"],
        ["teacher"],
        ["chartered accountant"],
        ["product manager"],
        ["civil engineer"],
        ["journalist"],
        ["pharmacist"],
        ["game designer"],
    ],
    "company": [
        ["Google"],
        ["Apple"],
        ["Amazon"],
        ["Microsoft"],
        ["Facebook", "Meta"],
        ["Tesla"],
        ["Netflix"],
        ["Uber"],
        ["Infosys"],
        ["Flipkart"],
        ["IBM"],
        ["Airbnb"],
        ["Spotify"],
    ],
    "device": [
        ["iPhone"],
        ["Android phone"],
        ["laptop", "notebook computer"],
        ["smartwatch"],
        ["Kindle", "e-reader"],
        ["PlayStation", "PS5"],
        ["DSLR camera"],
        ["tablet"],
        ["gaming PC"],
        ["smart TV"],
    ],
    "condition": [
        ["acne"],
        ["insomnia", "sleeplessness"],
        ["back pain"],
        ["hair loss"],
        ["migraines", "migraine headaches"],
        ["anxiety"],
        ["dandruff"],
        ["high blood pressure", "hypertension"],
        ["heartburn", "acid reflux"],
        ["a cold"],
        ["seasonal allergies"],
    ],
    "asset": [
        ["stocks", "shares"],
        ["mutual funds"],
        ["bitcoin", "BTC"],
        ["real estate", "property"],
        ["gold"],
        ["index funds"],
        ["government bonds"],
        ["ethereum"],
        ["startups"],
    ],
}

# intent -> (categories it applies to, paraphrase templates; "{}" marks the entity)
INTENTS: dict[str, tuple[list[str], list[str]]] = {
    "learn": (
        ["language", "subject", "skill"],
        [
            "How do I learn {}?",
            "What is the best way to learn {}?",
            "How can I get started with {}?",
            "Where should a complete beginner start with {}?",
            "What's the quickest way to pick up {}?",
            "Which resources would you recommend for studying {}?",
        ],
    ),
    "teach": (
        ["language", "subject", "skill"],
        [
            "How do I teach {}?",
            "What is the best way to teach {}?",
            "How can I get started teaching {}?",
            "How should I explain {} to my students?",
        ],
    ),
    "difficulty": (
        ["language", "subject", "skill"],
        [
            "Is {} hard to learn?",
            "How difficult is {} for a beginner?",
            "Why do so many people struggle with {}?",
            "Is it tough to get good at {}?",
        ],
    ),
    "books": (
        ["language", "subject", "skill"],
        [
            "What are the best books on {}?",
            "Which books should I read to understand {}?",
            "Can you recommend a good book about {}?",
        ],
    ),
    "visit": (
        ["country"],
        [
            "What are the best places to visit in {}?",
            "Which tourist spots in {} should I not miss?",
            "What should I see when I travel to {}?",
            "What are the must-see attractions in {}?",
        ],
    ),
    "live": (
        ["country"],
        [
            "What are the best places to live in {}?",
            "Which cities in {} are best to settle in?",
            "Where should I live if I move to {}?",
        ],
    ),
    "job_in": (
        ["country"],
        [
            "How can I get a job in {}?",
            "How do foreigners find work in {}?",
            "What is the process for getting employed in {}?",
        ],
    ),
    "study_in": (
        ["country"],
        [
            "How can I study in {}?",
            "How do I get admission to a university in {}?",
            "What is the process for enrolling at a college in {}?",
        ],
    ),
    "become": (
        ["career"],
        [
            "How do I become a {}?",
            "What does it take to become a {}?",
            "What are the steps to becoming a {}?",
            "What path should I follow to work as a {}?",
        ],
    ),
    "salary": (
        ["career"],
        [
            "How much does a {} earn?",
            "What is the average salary of a {}?",
            "What is the typical pay for a {}?",
            "How well paid is a {}?",
        ],
    ),
    "day": (
        ["career"],
        [
            "What is a day in the life of a {} like?",
            "What does a {} do all day?",
            "What does a typical workday look like for a {}?",
        ],
    ),
    "work_at": (
        ["company"],
        [
            "What is it like to work at {}?",
            "How is the work culture at {}?",
            "Is {} a good place to work?",
            "Do employees enjoy working for {}?",
        ],
    ),
    "hired_by": (
        ["company"],
        [
            "How do I get a job at {}?",
            "How can I get hired by {}?",
            "What is the hiring process at {}?",
            "What does {} look for in candidates?",
        ],
    ),
    "stock": (
        ["company"],
        [
            "Should I buy {} stock?",
            "Is {} stock a good investment right now?",
            "Is it wise to invest in {} shares?",
        ],
    ),
    "buy": (
        ["device"],
        [
            "Should I buy a {}?",
            "Is it worth buying a {}?",
            "Is a {} worth the money?",
            "Would you recommend getting a {}?",
        ],
    ),
    "speed_up": (
        ["device"],
        ["How do I speed up a slow {}?", "Why is my {} so slow?", "How can I make my {} faster?"],
    ),
    "battery": (
        ["device"],
        [
            "How can I extend the battery life of my {}?",
            "How do I make my {} battery last longer?",
            "Why does my {} battery drain so fast?",
        ],
    ),
    "cure": (
        ["condition"],
        [
            "How can I get rid of {}?",
            "What is the best treatment for {}?",
            "How do I cure {}?",
            "What actually works against {}?",
        ],
    ),
    "cause": (
        ["condition"],
        ["What causes {}?", "Why do people get {}?", "What are the main causes of {}?"],
    ),
    "invest": (
        ["asset"],
        [
            "Is it a good idea to invest in {}?",
            "Should I put my money in {}?",
            "Is investing in {} worth it?",
            "Are {} a smart place for my savings?",
        ],
    ),
    "risk": (
        ["asset"],
        [
            "What are the risks of investing in {}?",
            "How risky is investing in {}?",
            "What can go wrong when you invest in {}?",
        ],
    ),
}

# pairs of intents that share words but ask different things
CONFUSABLE = [
    ("learn", "teach"),
    ("learn", "difficulty"),
    ("learn", "books"),
    ("visit", "live"),
    ("job_in", "study_in"),
    ("become", "salary"),
    ("become", "day"),
    ("work_at", "hired_by"),
    ("hired_by", "stock"),
    ("buy", "speed_up"),
    ("speed_up", "battery"),
    ("cure", "cause"),
    ("invest", "risk"),
]

# context that does not change the question; drawn independently for each side
CONTEXTS = [
    "",
    "",
    "",
    "",
    "",
    "I'm a beginner. ",
    "Honestly, ",
    "Quick question: ",
    "As a student, ",
    "In 2026, ",
    "Serious question: ",
]

# share of non-duplicates of each kind
NEGATIVE_MIX = {"confusable_intent": 0.4, "sibling_entity": 0.4, "unrelated": 0.2}


class _Options:
    """Option lists of different lengths, flattened so rows can pick from them in one go."""

    def __init__(self, table: dict[str, list[str]]):
        keys = list(table)
        counts = np.array([len(table[k]) for k in keys], dtype=np.int64)
        self.flat = np.array([option for k in keys for option in table[k]], dtype=object)
        self.start = pd.Series(np.r_[0, np.cumsum(counts)[:-1]], index=keys)
        self.count = pd.Series(counts, index=keys)

    def counts(self, keys: np.ndarray) -> np.ndarray:
        return self.count.reindex(keys).fillna(0).to_numpy(dtype=np.int64)

    def pick(self, keys: np.ndarray, index: np.ndarray) -> np.ndarray:
        """Option number `index` (per row) of each row's list."""
        return self.flat[self.start.reindex(keys).to_numpy(dtype=np.int64) + index]


def _keys(*columns: np.ndarray) -> np.ndarray:
    """Row keys such as "country/3" from parallel columns."""
    key = pd.Series(columns[0]).astype(str)
    for column in columns[1:]:
        key = key + "/" + pd.Series(column).astype(str)
    return key.to_numpy(dtype=object)


def _partner_table() -> dict[str, list[str]]:
    """(intent, category) -> confusable intents that also apply to that category."""
    partners: dict[str, list[str]] = {}
    for a, b in CONFUSABLE:
        for first, second in ((a, b), (b, a)):
            for category in INTENTS[first][0]:
                if category in INTENTS[second][0]:
                    partners.setdefault(f"{first}/{category}", []).append(second)
    return partners


ALIASES = _Options({f"{c}/{i}": a for c, ents in ENTITIES.items() for i, a in enumerate(ents)})
TEMPLATES = _Options({name: spec[1] for name, spec in INTENTS.items()})
PARTNERS = _Options(_partner_table())
ENTITY_COUNT = {c: len(e) for c, e in ENTITIES.items()}


def _slots() -> pd.DataFrame:
    """Every (intent, category, entity) a question can be about."""
    rows = [
        (intent, cat, i)
        for intent, (cats, _) in INTENTS.items()
        for cat in cats
        for i in range(len(ENTITIES[cat]))
    ]
    return pd.DataFrame(rows, columns=["intent", "category", "entity"])


def _render(
    rng: np.random.Generator,
    intent: np.ndarray,
    category: np.ndarray,
    entity: np.ndarray,
    template: np.ndarray,
) -> pd.Series:
    """Build question texts column-wise: context + prefix + alias + suffix."""
    n = len(intent)
    alias_keys = _keys(category, entity)
    alias_pick = (rng.random(n) * ALIASES.counts(alias_keys)).astype(np.int64)
    alias = pd.Series(ALIASES.pick(alias_keys, alias_pick), dtype="string")
    text = pd.Series(TEMPLATES.pick(intent, template), dtype="string")
    parts = text.str.split("{}", n=1, expand=True)
    context = pd.Series(np.asarray(CONTEXTS)[rng.integers(0, len(CONTEXTS), n)], dtype="string")
    return context + parts[0] + alias + parts[1]


def generate(
    n_pairs: int = 20_000, positive_rate: float = 0.37, seed: int = 0, label_noise: float = 0.0
) -> pd.DataFrame:
    """Deterministic synthetic pairs with columns id, question1, question2, is_duplicate."""
    rng = np.random.default_rng(seed)
    slots = _slots()
    n_pos = int(round(n_pairs * positive_rate))
    negative_kinds = rng.choice(
        list(NEGATIVE_MIX), size=n_pairs - n_pos, p=list(NEGATIVE_MIX.values())
    )
    kinds = np.concatenate(
        [np.full(n_pos, "duplicate", dtype=object), negative_kinds.astype(object)]
    )

    pick = slots.iloc[rng.integers(0, len(slots), n_pairs)].reset_index(drop=True)
    intent_a = pick["intent"].to_numpy(dtype=object)
    category_a = pick["category"].to_numpy(dtype=object)
    entity_a = pick["entity"].to_numpy()
    intent_b, category_b, entity_b = intent_a.copy(), category_a.copy(), entity_a.copy()

    # confusable intent about the same entity (sibling entity where no partner applies)
    confusable = np.flatnonzero(kinds == "confusable_intent")
    partner_keys = _keys(intent_a[confusable], category_a[confusable])
    n_partners = PARTNERS.counts(partner_keys)
    has_partner = n_partners > 0
    choice = (rng.random(len(confusable)) * n_partners).astype(np.int64)
    intent_b[confusable[has_partner]] = PARTNERS.pick(
        partner_keys[has_partner], choice[has_partner]
    )
    kinds[confusable[~has_partner]] = "sibling_entity"

    # sibling entity of the same category, same intent
    sibling = kinds == "sibling_entity"
    sizes = pd.Series(category_a[sibling]).map(ENTITY_COUNT).to_numpy()
    shift = 1 + (rng.random(sibling.sum()) * (sizes - 1)).astype(np.int64)
    entity_b[sibling] = (entity_a[sibling] + shift) % sizes

    # unrelated: another random slot (re-drawn where it happens to match)
    unrelated = np.flatnonzero(kinds == "unrelated")
    other = slots.iloc[rng.integers(0, len(slots), len(unrelated))]
    intent_b[unrelated] = other["intent"].to_numpy(dtype=object)
    category_b[unrelated] = other["category"].to_numpy(dtype=object)
    entity_b[unrelated] = other["entity"].to_numpy()
    same_slot = (intent_a == intent_b) & (category_a == category_b) & (entity_a == entity_b)
    kinds[unrelated[same_slot[unrelated]]] = "sibling_entity_fallback"
    fallback = kinds == "sibling_entity_fallback"
    sizes = pd.Series(category_a[fallback]).map(ENTITY_COUNT).to_numpy()
    entity_b[fallback] = (entity_a[fallback] + 1) % sizes

    # templates: duplicates use two different phrasings; sibling pairs mostly share one
    n_a, n_b = TEMPLATES.counts(intent_a), TEMPLATES.counts(intent_b)
    template_a = (rng.random(n_pairs) * n_a).astype(np.int64)
    template_b = (rng.random(n_pairs) * n_b).astype(np.int64)
    dup = kinds == "duplicate"
    offset = 1 + (rng.random(dup.sum()) * (n_a[dup] - 1)).astype(np.int64)
    template_b[dup] = (template_a[dup] + offset) % n_a[dup]
    same_phrasing = (kinds != "duplicate") & (kinds != "unrelated") & (rng.random(n_pairs) < 0.7)
    template_b[same_phrasing] = np.minimum(template_a[same_phrasing], n_b[same_phrasing] - 1)

    q1 = _render(rng, intent_a, category_a, entity_a, template_a)
    q2 = _render(rng, intent_b, category_b, entity_b, template_b)
    label = dup.astype(np.int8)
    flip = rng.random(n_pairs) < label_noise
    label[flip] = 1 - label[flip]

    swap = rng.random(n_pairs) < 0.5
    first = q1.where(~swap, q2)
    second = q2.where(~swap, q1)
    order = rng.permutation(n_pairs)
    frame = pd.DataFrame({"question1": first, "question2": second, "is_duplicate": label})
    frame = frame.iloc[order].reset_index(drop=True)
    frame.insert(0, "id", np.arange(n_pairs))
    return frame
