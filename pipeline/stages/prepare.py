"""Stage `prepare`: clean the raw question pairs and split them into train, val and test.

Reads data/raw/ (the `raw` stage's file and manifest) and params `data` (cleaning), `split`
and `text` (pairs that differ only in what the text core erases are the same pair); writes
data/processed/{train,val,test}.parquet and reports/data.json (every dropped row counted by
reason, class balance and lengths per split).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import train_test_split

from pipeline.io import InputError, write_json, write_parquet
from pipeline.params import Choice, Int, Number, ParamsError, Section, SplitValues, Text
from pipeline.raw_data import DATA, read_manifest, read_pairs
from pipeline.stages._cli import ALL, run_stage
from pipeline.tables import not_text
from pipeline.text import TEXT, TextConfig, canonical, normalize, tokenize

log = logging.getLogger("prepare")
SPLITS = ("train", "val", "test")


def _fractions_sum_to_one(split: dict) -> None:
    total = split["train"] + split["val"] + split["test"]
    if not math.isclose(total, 1.0):
        raise ParamsError(f"split: train + val + test must be 1, got {total:g}")


SPLIT = Section(
    "split",
    {
        "strategy": Choice("random", "question_disjoint", "column"),
        "column": Text(),
        "column_values": SplitValues(),
        "seed": Int(0),
        "train": Number(0.0, 1.0),
        "val": Number(0.0, 1.0),
        "test": Number(0.0, 1.0),
    },
    rule=_fractions_sum_to_one,
)
READS = {
    DATA: ("expected_rows", "min_chars", "invalid_labels", "drop_duplicate_pairs"),
    SPLIT: ALL,
    TEXT: ALL,
}


def load_raw(data: dict, raw_dir: Path) -> tuple[pd.DataFrame, dict]:
    """The raw stage's pairs, and facts about where they came from."""
    manifest = read_manifest(raw_dir)
    path = raw_dir / manifest["file"]
    frame = read_pairs(path)
    expected = data["expected_rows"]
    if manifest["kind"] == "quora" and expected and len(frame) != expected:
        raise InputError(
            f"{path}: expected {expected} rows of the official release, read {len(frame)}; "
            "the download is truncated or not the release"
        )
    info = {"source": manifest["source"], "sha256": manifest["sha256"], "rows_read": len(frame)}
    return frame, info


def parse_labels(frame: pd.DataFrame, policy: str, source: str) -> tuple[pd.Series, pd.Series]:
    """Labels as int8 and a mask of rows whose label is not 0/1 (error or drop by policy)."""
    raw = frame["is_duplicate"].astype("string").str.strip()
    numeric = pd.to_numeric(raw, errors="coerce")
    bad = ~numeric.isin([0, 1]).to_numpy()
    if bad.any() and policy == "error":
        rows = np.flatnonzero(bad)
        shown = ", ".join(f"row {r + 1} ({raw.iloc[r]!r})" for r in rows[:10])
        more = f" and {len(rows) - 10} more" if len(rows) > 10 else ""
        raise InputError(
            f"{source}: is_duplicate must be 0 or 1: {shown}{more} "
            "(data rows, 1-based; set data.invalid_labels: drop to drop them)"
        )
    return numeric.fillna(-1).astype(np.int8), pd.Series(bad, index=frame.index)


def question_keys(frame: pd.DataFrame, text: TextConfig) -> tuple[np.ndarray, np.ndarray]:
    """Codes of both columns' questions by their text-core form: questions that differ only
    in what the text core erases (case, spacing around symbols) are one question."""
    both = pd.concat([frame["question1"], frame["question2"]], ignore_index=True)
    codes, _ = pd.factorize(canonical(both, text).to_numpy(zero_copy_only=False))
    return codes[: len(frame)], codes[len(frame) :]


def check_split_column(frame: pd.DataFrame, split: dict, source: str) -> None:
    """For `split.strategy: column`: the column exists and every value is a known split."""
    column, values = split["column"], split["column_values"]
    if column not in frame.columns:
        raise InputError(
            f"{source}: split.strategy column needs a column {column!r} (split.column); "
            f"found {', '.join(map(str, frame.columns))}"
        )
    unknown = np.flatnonzero(~frame[column].isin(list(values)).to_numpy(dtype=bool))
    if len(unknown):
        shown = ", ".join(f"row {r + 1} ({frame[column].iloc[r]!r})" for r in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise InputError(
            f"{source}: {column} must be one of {', '.join(values)} (split.column_values): "
            f"{shown}{more} (data rows, 1-based)"
        )


def clean(
    frame: pd.DataFrame, data: dict, text: TextConfig, source: str, within: str | None = None
) -> tuple[pd.DataFrame, dict]:
    """Apply the cleaning rules in order; return the kept rows and a count per drop reason.
    With `within` (a split column), duplicate pairs are dropped inside each split only."""
    frame = frame.reset_index(drop=True).copy()
    dropped: dict[str, int] = {}
    not_text_rows = np.zeros(len(frame), dtype=bool)
    for col in ("question1", "question2"):
        bad = not_text(frame[col])  # JSON numbers, lists, objects: never training text
        not_text_rows |= bad
        frame[col] = normalize(
            frame[col].where(~bad).astype("string"), text.unicode_form
        ).to_numpy()

    labels, bad_label = parse_labels(frame, data["invalid_labels"], source)
    frame["is_duplicate"] = labels.to_numpy()

    missing = (
        frame["question1"].isna()
        | frame["question2"].isna()
        | (frame["question1"] == "")
        | (frame["question2"] == "")
    ).to_numpy(dtype=bool)
    short = ~missing & (
        (frame["question1"].str.len() < data["min_chars"])
        | (frame["question2"].str.len() < data["min_chars"])
    ).to_numpy(dtype=bool)
    missing = missing & ~not_text_rows
    short = short & ~not_text_rows
    rules = [
        ("question_not_text", not_text_rows),
        ("missing_question", missing),
        ("shorter_than_min_chars", short),
        ("invalid_label", bad_label.to_numpy()),
    ]
    keep = np.ones(len(frame), dtype=bool)
    for reason, mask in rules:
        dropped[reason] = int((mask & keep).sum())
        keep &= ~mask
    frame = frame[keep].reset_index(drop=True)

    if data["drop_duplicate_pairs"]:
        key = pair_keys(frame, text)
        if within is not None:
            key["within"] = frame[within].to_numpy()
        dup = key.duplicated(keep="first").to_numpy()
        dropped["duplicate_pair"] = int(dup.sum())
        frame = frame[~dup].reset_index(drop=True)
    return frame, dropped


def pair_keys(frame: pd.DataFrame, text: TextConfig) -> pd.DataFrame:
    """Each pair as its two question codes in either order: the same two questions, one key."""
    a, b = question_keys(frame, text)
    return pd.DataFrame({"lo": np.minimum(a, b), "hi": np.maximum(a, b)})


def _component_ids(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Connected component of each pair in the graph question -- pair -- question."""
    n_questions = int(max(q1.max(), q2.max())) + 1
    graph = coo_matrix((np.ones(len(q1)), (q1, q2)), shape=(n_questions, n_questions))
    _, labels = connected_components(graph, directed=False)
    return labels[q1]


def split_pairs(
    frame: pd.DataFrame, split: dict, text: TextConfig
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Split into train/val/test by `split.strategy`; returns the parts and split facts.
    `column` keeps each pair in the split its column names, and counts the pairs whose two
    questions recur in another split (kept where they are, as published results keep them).

    Too few pairs for the split (a part would be empty, or a class too rare to stratify) is
    a ValueError saying why.
    """
    fractions = np.array([split["train"], split["val"], split["test"]], dtype=float)
    seed = int(split["seed"])
    info = {"strategy": split["strategy"], "seed": seed}
    if split["strategy"] == "random":
        train, rest = train_test_split(
            frame, train_size=fractions[0], random_state=seed, stratify=frame["is_duplicate"]
        )
        val, test = train_test_split(
            rest,
            train_size=fractions[1] / fractions[1:].sum(),
            random_state=seed,
            stratify=rest["is_duplicate"],
        )
        parts = {"train": train, "val": val, "test": test}
        info["pairs_dropped_for_disjointness"] = 0
    elif split["strategy"] == "column":
        given = frame[split["column"]].map(split["column_values"]).to_numpy()
        parts = {name: frame[given == name] for name in SPLITS}
        keys = pair_keys(frame, text).assign(split=given)
        across = keys.groupby(["lo", "hi"])["split"].transform("nunique").to_numpy() > 1
        info = {
            "strategy": "column",
            "column": split["column"],
            "pairs_recurring_across_splits": {
                name: int((across & (given == name)).sum()) for name in SPLITS
            },
        }
    else:  # question_disjoint
        parts, dropped = _question_disjoint(frame, fractions, seed, text)
        info["pairs_dropped_for_disjointness"] = dropped
    empty = [name for name, part in parts.items() if len(part) == 0]
    if empty:
        raise ValueError(f"the {' and '.join(empty)} split would be empty")
    return {k: v.reset_index(drop=True) for k, v in parts.items()}, info


def _question_disjoint(frame: pd.DataFrame, fractions: np.ndarray, seed: int, text: TextConfig):
    """Whole connected components go to one split, so no question text crosses splits.

    Components are placed in random order by cumulative size against the split fractions.
    A component larger than the train share (Quora's question graph has a giant one) is
    cut instead: its questions are assigned to splits at random and its pairs that would
    cross splits are dropped and counted.
    """
    rng = np.random.default_rng(seed)
    n = len(frame)
    q1, q2 = question_keys(frame, text)
    comp = _component_ids(q1, q2)
    sizes = np.bincount(comp)
    giant = sizes > fractions[0] * n
    order = rng.permutation(len(sizes))
    order = np.concatenate([order[giant[order]], order[~giant[order]]])
    end = np.cumsum(sizes[order]) - sizes[order] / 2  # midpoint position of each component
    boundaries = np.cumsum(fractions)[:-1] * n
    assigned = np.empty(len(sizes), dtype=np.int64)
    assigned[order] = np.searchsorted(boundaries, end)

    split_of_pair = assigned[comp]
    keep = np.ones(n, dtype=bool)
    in_giant = giant[comp]
    if in_giant.any():
        question_split = rng.choice(3, size=int(max(q1.max(), q2.max())) + 1, p=fractions)
        s1, s2 = question_split[q1], question_split[q2]
        split_of_pair = np.where(in_giant, s1, split_of_pair)
        keep = ~in_giant | (s1 == s2)
    parts = {name: frame[(split_of_pair == i) & keep] for i, name in enumerate(SPLITS)}
    return parts, int((~keep).sum())


def describe(part: pd.DataFrame) -> dict:
    questions = pd.concat([part["question1"], part["question2"]], ignore_index=True)
    chars = questions.str.len().to_numpy()
    tokens = pc.list_value_length(tokenize(questions)).to_numpy(zero_copy_only=False)
    stats = {
        "pairs": len(part),
        "duplicates": int(part["is_duplicate"].sum()),
        "positive_rate": float(part["is_duplicate"].mean()) if len(part) else 0.0,
    }
    for name, values in (("chars", chars), ("tokens", tokens)):
        if len(values):
            stats[f"{name}_mean"] = round(float(values.mean()), 2)
            stats[f"{name}_median"] = float(np.median(values))
            stats[f"{name}_p95"] = float(np.percentile(values, 95))
            stats[f"{name}_max"] = int(values.max())
    return stats


def run(params: dict) -> dict:
    data, split = params["data"], params["split"]
    text = TextConfig.from_dict(params["text"])
    paths = params["paths"]
    raw, source_info = load_raw(data, Path(paths["raw"]))
    log.info("read %d rows from %s", len(raw), source_info["source"])
    within = None
    if split["strategy"] == "column":
        check_split_column(raw, split, source_info["source"])
        within = split["column"]
    cleaned, dropped = clean(raw, data, text, source_info["source"], within)
    report = {**source_info, "rows_kept": len(cleaned), "dropped": dropped}
    try:
        parts, split_info = split_pairs(cleaned, split, text)
    except ValueError as err:
        write_json(paths["data_report"], report)  # the drop counts say why so few rows were kept
        reasons = ", ".join(f"{n} {reason}" for reason, n in dropped.items() if n) or "none"
        raise InputError(
            f"{source_info['source']}: {len(raw)} rows read, {len(cleaned)} kept (dropped: "
            f"{reasons}); too few to split ({split['strategy']}) into train/val/test: {err} "
            f"(see {paths['data_report']})"
        ) from None
    out_dir = Path(paths["processed"])
    for name, part in parts.items():
        write_parquet(out_dir / f"{name}.parquet", part)
        log.info("wrote %s/%s.parquet (%d pairs)", out_dir, name, len(part))
    report.update(split=split_info, **{name: describe(part) for name, part in parts.items()})
    write_json(paths["data_report"], report)
    log.info("wrote %s", paths["data_report"])
    return report


def main(argv: list[str] | None = None) -> None:
    run_stage("prepare", __doc__.splitlines()[0], run, READS, argv)


if __name__ == "__main__":
    main()
