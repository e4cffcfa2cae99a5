"""Benchmark: the behavioural suite (`pipeline/behaviour.py`) on trained bundles.

Scores every pair of the suite with each bundle at its own threshold and reports the share of
tests failed per capability and per group: not a duplicate where order, an entity, a number,
a year, a negation or a comparative changes the question; a duplicate where only the order of
"A and B" changes; the same prediction under a typo, other casing or punctuation, or a polite
prefix. Default bundles: those trained on the full release by bench/full_release.py (its
scratch directory). Writes reports/bench/behaviour.json. Not a test.
"""

from __future__ import annotations

import argparse
import os
from datetime import date
from pathlib import Path

from common import ROOT, machine

from pipeline.behaviour import CAPABILITIES, build_suite, run_suite
from pipeline.bundle import load_bundle
from pipeline.io import read_json, write_json

FULL_RUN = ROOT / "reports" / "bench" / "full_release_run" / "models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", default=str(FULL_RUN))
    parser.add_argument("--models", nargs="*", default=["logreg", "gbdt", "re2", "ensemble"])
    parser.add_argument(
        "--bundle",
        action="append",
        default=[],
        metavar="LABEL=PATH",
        help="a bundle from anywhere, shown as LABEL (after --models)",
    )
    parser.add_argument("--seed", type=int, default=0, help="of the suite's sampling")
    parser.add_argument("--output", default="reports/bench/behaviour.json")
    args = parser.parse_args()
    suite = build_suite(args.seed)
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "models_dir": os.path.relpath(Path(args.models_dir).resolve(), ROOT),
        "suite": {
            "seed": args.seed,
            "tests": {name: int((suite["capability"] == name).sum()) for name in CAPABILITIES},
            "groups": {name: group for name, (group, _) in CAPABILITIES.items()},
            "expect": {name: str(expect) for name, (_, expect) in CAPABILITIES.items()},
            "perturbations": {
                name: {str(k): int(v) for k, v in rows.value_counts(sort=False).items()}
                for name, rows in suite.dropna(subset="perturbation").groupby(
                    "capability", sort=False
                )["perturbation"]
            },
        },
        "models": {},
    }
    bundles = {name: Path(args.models_dir) / name for name in args.models}
    for spec in args.bundle:
        label, sep, path = spec.partition("=")
        if not (sep and label and path):
            parser.error(f"--bundle {spec!r}: expected LABEL=PATH")
        bundles[label] = path
    for name, directory in bundles.items():
        directory = Path(directory)
        bundle = load_bundle(directory)
        meta = read_json(directory / "bundle.json")
        report["models"][name] = {
            "directory": os.path.relpath(directory.resolve(), ROOT),
            "train_seed": meta["train_params"].get("seed"),
            "threshold": round(float(bundle.threshold), 4),
            **run_suite(bundle, suite),
        }
        print(name, report["models"][name]["failure_rate"], flush=True)
    write_json(ROOT / args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
