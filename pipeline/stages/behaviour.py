"""Stage `behaviour`: the behavioural suite (pipeline/behaviour.py) on every trained model.

Reads params `train.models` and the bundles under models/ (models/ensemble too, when built);
writes metrics/behaviour.json: per model, the share of the suite's tests it fails per
capability, the worst capability of each group and, for the invariances, per perturbation
(which change moved it), so `dvc exp show` compares them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pipeline.behaviour import build_suite, run_suite
from pipeline.bundle import load_bundle
from pipeline.io import write_json
from pipeline.models import TRAIN
from pipeline.stages._cli import run_stage

log = logging.getLogger("behaviour")
READS = {TRAIN: ("models",)}


def run(params: dict) -> dict:
    paths = params["paths"]
    models = Path(paths["models"])
    names = [*params["train"]["models"]]
    if (models / "ensemble" / "bundle.json").exists():
        names.append("ensemble")
    suite = build_suite()
    results = {name: run_suite(load_bundle(models / name), suite) for name in names}
    write_json(paths["behaviour_metrics"], results)
    for name, result in results.items():
        log.info("%s: worst failure rate per group %s", name, result["worst_in_group"])
    log.info("%d tests x %d models -> %s", len(suite), len(names), paths["behaviour_metrics"])
    return results


def main(argv: list[str] | None = None) -> None:
    run_stage("behaviour", __doc__.splitlines()[0], run, READS, argv)


if __name__ == "__main__":
    main()
