"""Stage `prepare`: clean the raw question pairs and split them into train, val and test.

Reads data/raw/ (the `raw` stage's file and manifest) and params `data`, `split`,
`text.unicode_form`; writes data/processed/{train,val,test}.parquet and reports/data.json
(every dropped row counted by reason, class balance and lengths per split).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.model_selection import train_test_split

from pipeline.config import load_params, setup_logging, stage_parser
from pipeline.io import InputError, write_json, write_parquet
from pipeline.raw_data import read_manifest, read_pairs
from pipeline.text import normalize, tokenize

log = logging.getLogger("prepare")
SPLITS = ("train", "val", "test")


def load_raw(data: dict) -> tuple[pd.DataFrame, dict]:
    """The raw stage's pairs, and facts about where they came from."""
    raw_dir = Path(data["raw_dir"])
    manifest = read_manifest(raw_dir)
    path = raw_dir / manifest["file"]
    frame = read_pairs(path, data["encoding_errors"])
    expected = data.get("expected_rows")
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


def clean(frame: pd.DataFrame, data: dict, source: str) -> tuple[pd.DataFrame, dict]:
    """Apply the cleaning rules in order; return the kept rows and a count per drop reason."""
    frame = frame.reset_index(drop=True).copy()
    dropped: dict[str, int] = {}
    form = data.get("unicode_form", "NFKC")  # text.unicode_form, passed in by run()
    for col in ("question1", "question2"):
        frame[col] = normalize(frame[col], form).to_numpy()

    labels, bad_label = parse_labels(frame, data.get("invalid_labels", "error"), source)
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
    rules = [
        ("missing_question", missing),
        ("shorter_than_min_chars", short),
        ("invalid_label", bad_label.to_numpy()),
    ]
    keep = np.ones(len(frame), dtype=bool)
    for reason, mask in rules:
        dropped[reason] = int((mask & keep).sum())
        keep &= ~mask
    frame = frame[keep].reset_index(drop=True)

    if data.get("drop_duplicate_pairs", True):
        a = frame["question1"].to_numpy(dtype=object)
        b = frame["question2"].to_numpy(dtype=object)
        swap = a > b
        key = pd.DataFrame({"lo": np.where(swap, b, a), "hi": np.where(swap, a, b)})
        dup = key.duplicated(keep="first").to_numpy()
        dropped["duplicate_pair"] = int(dup.sum())
        frame = frame[~dup].reset_index(drop=True)
    return frame, dropped


def _component_ids(frame: pd.DataFrame) -> np.ndarray:
    """Connected component of each pair in the graph question -- pair -- question."""
    keys = pd.concat([frame["question1"], frame["question2"]], ignore_index=True).str.casefold()
    codes, uniques = pd.factorize(keys)
    n = len(frame)
    q1, q2 = codes[:n], codes[n:]
    graph = coo_matrix((np.ones(n), (q1, q2)), shape=(len(uniques), len(uniques)))
    _, labels = connected_components(graph, directed=False)
    return labels[q1]


def split_pairs(frame: pd.DataFrame, split: dict) -> tuple[dict[str, pd.DataFrame], dict]:
    """Split into train/val/test by `split.strategy`; returns the parts and split facts."""
    fractions = np.array([split["train"], split["val"], split["test"]], dtype=float)
    if not np.isclose(fractions.sum(), 1.0):
        raise ValueError(f"params.yaml split fractions must sum to 1, got {fractions.sum():.3f}")
    seed = int(split["seed"])
    strategy = split.get("strategy", "random")
    info = {"strategy": strategy, "seed": seed}
    if strategy == "random":
        labels = frame["is_duplicate"]
        train, rest = train_test_split(
            frame, train_size=fractions[0], random_state=seed, stratify=labels
        )
        val, test = train_test_split(
            rest,
            train_size=fractions[1] / fractions[1:].sum(),
            random_state=seed,
            stratify=rest["is_duplicate"],
        )
        parts = {"train": train, "val": val, "test": test}
        info["pairs_dropped_for_disjointness"] = 0
    elif strategy == "question_disjoint":
        parts, dropped = _question_disjoint(frame, fractions, seed)
        info["pairs_dropped_for_disjointness"] = dropped
    else:
        raise ValueError(
            f"params.yaml split.strategy must be random or question_disjoint, got {strategy!r}"
        )
    return {k: v.reset_index(drop=True) for k, v in parts.items()}, info


def _question_disjoint(frame: pd.DataFrame, fractions: np.ndarray, seed: int):
    """Whole connected components go to one split, so no question text crosses splits.

    Components are placed in random order by cumulative size against the split fractions.
    A component larger than the train share (Quora's question graph has a giant one) is
    cut instead: its questions are assigned to splits at random and its pairs that would
    cross splits are dropped and counted.
    """
    rng = np.random.default_rng(seed)
    n = len(frame)
    comp = _component_ids(frame)
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
        keys = pd.concat([frame["question1"], frame["question2"]], ignore_index=True).str.casefold()
        codes, uniques = pd.factorize(keys)
        question_split = rng.choice(3, size=len(uniques), p=fractions)
        s1, s2 = question_split[codes[:n]], question_split[codes[n:]]
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
    raw, source_info = load_raw(data)
    log.info("read %d rows from %s", len(raw), source_info["source"])
    cleaning = {**data, "unicode_form": params["text"]["unicode_form"]}
    cleaned, dropped = clean(raw, cleaning, source_info["source"])
    parts, split_info = split_pairs(cleaned, split)
    out_dir = Path(data["processed_dir"])
    for name, part in parts.items():
        write_parquet(out_dir / f"{name}.parquet", part)
        log.info("wrote %s/%s.parquet (%d pairs)", out_dir, name, len(part))
    report = {
        **source_info,
        "rows_kept": len(cleaned),
        "dropped": dropped,
        "split": split_info,
        **{name: describe(part) for name, part in parts.items()},
    }
    write_json(data["report"], report)
    log.info("wrote %s", data["report"])
    return report


def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__.splitlines()[0]).parse_args(argv)
    setup_logging()
    try:
        run(load_params(args.params))
    except (InputError, ValueError) as err:
        raise SystemExit(f"prepare: error: {err}") from None


if __name__ == "__main__":
    main()
