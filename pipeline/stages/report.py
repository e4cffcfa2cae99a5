"""Stage `report`: one Markdown table of every model's test metrics, training time and device.

Reads params `train.models`, `index.model` and metrics/<model>.json (and metrics/ensemble.json,
metrics/index.json, metrics/behaviour.json); writes reports/models.md, and reports/models.png
(every model's accuracy and ROC-AUC), linking each model's evaluation and training charts.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from pipeline.behaviour import CAPABILITIES
from pipeline.find.index import INDEX
from pipeline.io import atomic_path, read_json
from pipeline.metrics import METRIC_KEYS
from pipeline.models import TRAIN
from pipeline.plots import comparison_png
from pipeline.stages._cli import run_stage

log = logging.getLogger("report")
READS = {TRAIN: ("models",), INDEX: ("model",)}
COLUMNS = [*METRIC_KEYS, "train_seconds", "device"]


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render(rows: dict[str, dict]) -> str:
    lines = [
        "# Model comparison (test split)",
        "",
        "Threshold chosen on the validation split; majority_accuracy is the floor "
        "any model must beat.",
        "",
        "| model | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(metrics.get(c)) for c in COLUMNS) + " |")
    blog = {n: m["blog_precision"] for n, m in rows.items() if m.get("blog_precision") is not None}
    for name, value in blog.items():
        lines += [
            "",
            f'`{name}` blog_precision (the 2017 post\'s "accuracy", share of duplicates '
            f"among pairs with distance < 0.5): {value:.4f}",
        ]
    return "\n".join(lines) + "\n"


def render_retrieval(metrics: dict, model: str) -> str:
    """Recall of the test split's known duplicates by dupq-find's index (stage index)."""
    parts = [
        p for p in ("candidates", "exact", "model_only", "reranked", "learned") if p in metrics
    ]
    ks = [key for key in metrics["candidates"] if key.startswith("recall@")]
    lines = [
        "",
        "# Finding duplicates (stage index)",
        "",
        f"The test split's known duplicates looked up among {metrics['bank_questions']:,} "
        f"questions ({metrics['queries']:,} queries; duplicates of duplicates count); "
        f"candidates re-ranked by `{model}` (model_only), by {1 - metrics['blend']:.2f} x its "
        f"probability + {metrics['blend']:.2f} x the candidate's cosine (reranked: the weight "
        "chosen on the validation split), and by the learned re-ranker (learned) where the "
        "index has one.",
        "",
        "| | " + " | ".join(ks) + " | MRR |",
        "|---" * (len(ks) + 2) + "|",
    ]
    for part in parts:
        cells = [f"{metrics[part][k]:.4f}" for k in ks]
        mrr = f"{metrics[part]['mrr']:.4f}" if "mrr" in metrics[part] else "-"
        lines.append(f"| {part} | " + " | ".join(cells) + f" | {mrr} |")
    flags = [name for name in ("flag_reranked", "flag_learned") if name in metrics]
    if flags:
        lines += [
            "",
            "The `duplicate` flag on each test question's top hit (every distinct first "
            "question of the test split, with or without a known duplicate):",
            "",
            "| ranking | flagged | precision@1 | accuracy |",
            "|---|---:|---:|---:|",
        ]
        for name in flags:
            flag = metrics[name]
            lines.append(
                f"| {name.removeprefix('flag_')} | {flag['flagged']:.3f} | "
                f"{flag['precision@1']:.3f} | {flag['accuracy']:.3f} |"
            )
    return "\n".join(lines) + "\n"


def render_behaviour(results: dict[str, dict]) -> str:
    """Share of the behavioural suite's tests each model fails, per capability (stage
    behaviour)."""
    names = list(results)
    expected = {0: "not duplicate", 1: "duplicate", "same": "same prediction"}
    lines = [
        "",
        "# Behaviour (stage behaviour)",
        "",
        "Share of the behavioural suite's tests failed, each model at its own threshold.",
        "",
        "| capability | expected | " + " | ".join(names) + " |",
        "|---|---" + "|---:" * len(names) + "|",
    ]
    for capability, (_, expect) in CAPABILITIES.items():
        rates = [results[name]["failure_rate"][capability] for name in names]
        lines.append(
            f"| {capability} | {expected[expect]} | "
            + " | ".join(f"{rate:.0%}" for rate in rates)
            + " |"
        )
    return "\n".join(lines) + "\n"


def render_charts(rows: dict[str, dict], paths: dict) -> str:
    """Links to the PNG charts, relative to the report (they open offline in any viewer)."""
    here = Path(paths["models_report"]).parent

    def link(path: Path) -> str:
        return os.path.relpath(path, here)

    lines = ["", "# Charts", "", f"![every model]({link(Path(paths['models_chart']))})", ""]
    lines += ["| model | evaluation | training |", "|---|---|---|"]
    for name in rows:
        evaluation = Path(paths["plots"]) / name / "evaluation.png"
        training = Path(paths["plots"]) / name / "training.png"
        cells = [
            f"[ROC, PR, calibration]({link(evaluation)})" if evaluation.exists() else "-",
            f"[loss, accuracy]({link(training)})" if training.exists() else "-",
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run(params: dict) -> str:
    paths = params["paths"]
    metrics_dir = Path(paths["metrics"])
    names = [*params["train"]["models"], "ensemble"]  # the stacked model, when it was built
    rows = {
        name: read_json(metrics_dir / f"{name}.json")
        for name in names
        if name in params["train"]["models"] or (metrics_dir / f"{name}.json").exists()
    }
    text = render(rows)
    comparison_png(paths["models_chart"], rows)
    text += render_charts(rows, paths)
    index_metrics = Path(paths["index_metrics"])
    if index_metrics.exists():
        text += render_retrieval(read_json(index_metrics), params["index"]["model"])
    behaviour = Path(paths["behaviour_metrics"])
    if behaviour.exists():
        text += render_behaviour(read_json(behaviour))
    out = Path(paths["models_report"])
    with atomic_path(out) as tmp:
        tmp.write_text(text, encoding="utf-8")
    log.info("wrote %s (%d models)", out, len(rows))
    return text


def print_table(params: dict) -> None:
    print(run(params))


def main(argv: list[str] | None = None) -> None:
    run_stage("report", __doc__.splitlines()[0], print_table, READS, argv)


if __name__ == "__main__":
    main()
