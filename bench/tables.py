"""Write docs/benchmarks.md and the README's generated tables from reports/bench/*.json.

Every figure in those documents comes from the benchmark files, so the text cannot drift from
what was measured: re-run a benchmark, then `make docs`.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable
from pathlib import Path

from accuracy import markdown, summarize
from common import ROOT

BENCH = ROOT / "reports" / "bench"
FIND_WORK = "reports/bench/full_release_run"  # bench/find_full_release.py's default --work
POST = {  # the 2017 post's figures for its models (full release, its own metric)
    "siamese": ("Siamese MLP: own gensim / spaCy / spaCy + TF-IDF vectors", "0.69 / 0.72 / 0.79"),
    "residual": ('"FC last layer"', "0.84"),
    "birnn_cnn": ("BiRNN + 1D-conv", "0.91"),
}


def load(name: str) -> dict | None:
    path = BENCH / name
    return json.loads(path.read_text()) if path.exists() else None


def measured_on(report: dict) -> str:
    conditions = f", {report['conditions']}" if report.get("conditions") else ""
    return (
        f"{report.get('date', 'date unknown')}, {report.get('machine', 'machine unknown')}"
        + conditions
    )


def _rows(summary: list[dict], split: str, vectors: str) -> dict[str, dict]:
    return {r["model"]: r for r in summary if r["split"] == split and r["vectors"] == vectors}


def accuracy_section(report: dict) -> list[str]:
    summary = summarize(report["runs"])
    pairs = report["runs"][0]["pairs"]
    seeds = sorted({run["seed"] for run in report["runs"]})
    lines = [
        "## Accuracy on real pairs",
        "",
        f"`bench/accuracy.py` runs every stage (as `dvc repro` does) on the real Quora subset "
        f"`{report['data']}` with default params: {pairs['train']:,} / {pairs['val']:,} / "
        f"{pairs['test']:,} train / val / test pairs, a random split or a question-disjoint one "
        f"(no question in two splits), own GloVe vectors (trained on the train split) or spaCy's "
        f"`en_core_web_md`. Training seeds {', '.join(map(str, seeds))} where a row says more "
        "than one seed (mean ± standard deviation; the split stays the same; `logreg` is "
        "deterministic and runs once). Test split, threshold chosen on validation. "
        f"Measured {measured_on(report)}.",
        "",
        markdown(summary),
        "",
        "s/epoch is seconds per epoch for the Keras models, per boosting round for `gbdt` and "
        "the whole stacker fit (members' validation scoring included) for `ensemble`; runs that "
        "shared the cores with other work are slower, hence its spread.",
        "",
    ]
    random_glove = _rows(summary, "random", "glove")
    if random_glove:
        best = max(random_glove.values(), key=lambda r: r["accuracy"])
        lines += [
            f"Best on the random split with own GloVe vectors: `{best['model']}`, "
            f"{best['accuracy']:.3f} accuracy / {best['roc_auc']:.3f} ROC-AUC. "
            f"{pairs['test']:,} test pairs leave about "
            f"±{100 * (0.25 / pairs['test']) ** 0.5 * 1.96:.1f} points of sampling noise "
            "(95%) on accuracy on top of the seed spread.",
            "",
            "### Against the 2017 post",
            "",
            "The post's figures come from the full release (about 15 times more training pairs, "
            "37% duplicates), with no validation split and no seed, and its Siamese figure is "
            "`labels[dist < 0.5].mean()`, a precision. Ours: accuracy and ROC-AUC on held-out "
            "test pairs (random split, own GloVe, mean over seeds).",
            "",
            "| model | accuracy | ROC-AUC | the post's model | the post's figure |",
            "|---|---:|---:|---|---|",
        ]
        for name, row in random_glove.items():
            post_model, post_figure = POST.get(name, ("-", "-"))
            lines.append(
                f"| `{name}` | {row['accuracy']:.3f} | {row['roc_auc']:.3f} | {post_model} "
                f"| {post_figure} |"
            )
        lines.append("")
    return lines


def train_speed_section(cpu: dict | None, gpu: dict | None) -> list[str]:
    lines = [
        "## Training speed",
        "",
        "`bench/train_speed.py` builds each Keras model with its default params and fits "
        "random inputs of the real shapes (epoch time depends on shapes, not values), under "
        "each Keras backend in turn on the same machine; the first epoch (tracing, "
        "compilation) is timed apart and the median of the next ones is shown.",
        "",
        "| device | backend | model | batch | pairs | s/epoch | pairs/s | first epoch (s) |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    sources = []
    for name, report in (("train_speed_cpu.json", cpu), ("train_speed_h100_jax.json", gpu)):
        if report is None:
            continue
        sources.append(f"`{name}`: {measured_on(report)}")
        for run in report["runs"]:
            lines.append(
                f"| {run.get('device', report.get('device'))} | "
                f"{run.get('backend', report.get('backend'))} | `{run['model']}` | "
                f"{run['batch_size']} | {run['pairs']:,} | {run['seconds_per_epoch']} | "
                f"{run['pairs_per_s']:,} | {run['first_epoch_s']} |"
            )
    lines += ["", "Measured: " + "; ".join(sources) + "."]
    if cpu is not None:
        lines += ["", *backend_ratios(cpu["runs"])]
    lines += [
        "",
        "The GPU machine had JAX, not TensorFlow, so the GPU rows use Keras 3's JAX backend; "
        'the pipeline\'s own TensorFlow GPU path (`pip install -e ".[gpu]"`) has not been '
        "timed.",
        "",
    ]
    return lines


def backend_ratios(runs: list[dict]) -> list[str]:
    """One line per model: JAX's pairs/s over TensorFlow's, on the same CPU in one run."""
    speed = {(run.get("backend"), run["model"]): run["pairs_per_s"] for run in runs}
    models = [m for (b, m) in speed if b == "tensorflow" and ("jax", m) in speed]
    if not models:
        return []
    cells = [f"`{m}` x{speed[('jax', m)] / speed[('tensorflow', m)]:.2f}" for m in models]
    return ["JAX's speed over TensorFlow's on this CPU (pairs/s): " + ", ".join(cells) + "."]


def spark_section(report: dict) -> list[str]:
    lines = [
        "## Scoring on Spark",
        "",
        f"`bench/spark_scoring.py`: `dupq-score --engine spark --master {report['master']}` "
        "against `dupq-score` in one process, the same pairs (random pairings of the real "
        "subset's questions, Parquet) and the same bundles "
        f"(`{report['models_dir']}/`), each the whole CLI with its start-up. Peak RSS: the "
        "`dupq-score` process; for Spark, the largest Python worker (what each executor core "
        f"holds) and the JVM. Measured {measured_on(report)}.",
        "",
        "| model | pairs | dupq-score pairs/s | Spark pairs/s | Spark / dupq-score "
        "| dupq-score peak MB | Spark worker peak MB | Spark JVM peak MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, sizes in report["models"].items():
        for size, row in sizes.items():
            local, spark = row["local"], row["spark"]
            lines.append(
                f"| `{model}` | {int(size):,} | {local['pairs_per_s']:,} | "
                f"{spark['pairs_per_s']:,} | {row['spark_over_local']:.2f} | "
                f"{local['peak_rss_mb']['driver']:,} | "
                f"{spark['peak_rss_mb'].get('python_worker', 0):,} | "
                f"{spark['peak_rss_mb'].get('java', 0):,} |"
            )
    sizes = sorted(int(size) for size in report["sizes"])
    if len(sizes) > 1:
        small, large = str(sizes[0]), str(sizes[-1])
        extra = []
        for model, rows in report["models"].items():
            local = rows[large]["local"]["seconds"] - rows[small]["local"]["seconds"]
            spark = rows[large]["spark"]["seconds"] - rows[small]["spark"]["seconds"]
            extra.append(f"`{model}` x{local / spark:.2f}")
        lines += [
            "",
            f"Without start-up (the pairs from {sizes[0]:,} to {sizes[-1]:,}, what a long job "
            "runs at): Spark / dupq-score " + ", ".join(extra) + ".",
        ]
    return [*lines, ""]


def serve_section(report: dict) -> list[str]:
    base = report["in_process"]
    lines = [
        "## Serving",
        "",
        f"`bench/serve.py`: `dupq-serve` with `{report['model']}` (trained on the full release) "
        f"re-ranking a bank of {report['bank']:,} questions of the full release's train split; "
        "queries from its test split, pairs to score from its train split. The load comes from "
        "the benchmark process (asyncio over plain sockets, requests encoded beforehand, one "
        "keep-alive connection per concurrent client), on the same 2 cores as the server. "
        f"Measured {measured_on(report)}.",
        "",
        "| endpoint | concurrency | requests | p50 ms | p99 ms | requests/s | pairs/s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for endpoint in ("find", "score"):
        for row in report[endpoint]:
            pairs = f"{row['pairs_per_s']:,}" if "pairs_per_s" in row else "-"
            lines.append(
                f"| `/{endpoint}` | {row['concurrency']} | {row['requests']:,} | {row['p50_ms']} "
                f"| {row['p99_ms']} | {row['requests_per_s']:,} | {pairs} |"
            )
    best_find = max(row["requests_per_s"] for row in report["find"])
    best_score = max(row["pairs_per_s"] for row in report["score"])
    rss = report["rss"]
    lines += [
        "",
        f"The same work without HTTP: `Finder.find` over 2,000 queries at once, in process, "
        f"{base['find_batch_queries_per_s']:,} queries/s (the service's best: "
        f"x{best_find / base['find_batch_queries_per_s']:.2f} of it); `dupq-score` over "
        f"100,000 pairs {base['score_pairs_per_s']:,.0f} pairs/s (the service's best, 1,000 "
        "pairs a request: "
        f"x{best_score / base['score_pairs_per_s']:.2f}). Server memory (VmRSS) over "
        f"{rss[-1]['requests']:,} `/find` requests: "
        + ", ".join(f"{r['rss_mb']:,.0f}" for r in rss)
        + f" MB (every {rss[1]['requests']:,}). Exit status after SIGTERM: "
        f"{report['exit_status']}.",
        "",
    ]
    return lines


def embeddings_section(report: dict) -> list[str]:
    return [
        "## Question embeddings",
        "",
        f"`bench/embeddings.py`: {report['questions']:,} questions (the subset repeated), "
        "300-d vectors, TF-IDF-weighted means; every method gives the same vectors "
        f"(checked: {report['same_vectors']}); best of {report['repeats']} runs. The 2017 loop "
        "is the original code as written; the tight loop keeps one running sum per question. "
        f"Measured {measured_on(report)}.",
        "",
        "| method | questions/s |",
        "|---|---:|",
        f"| 2017 loop (timed on {report['loop_questions_timed']:,} questions) "
        f"| {report['loop_qps']:,} |",
        f"| tight loop (timed on {report['loop_questions_timed']:,} questions) "
        f"| {report['tight_loop_qps']:,} |",
        f"| pipeline: one sparse TF-IDF x vectors product per row block "
        f"| {report['vectorized_qps']:,} |",
        "",
        f"Speed-up over the 2017 loop: x{report['speedup']}; over the tight loop: "
        f"x{report['speedup_vs_tight_loop']}. The whole featurization of "
        f"{report['questions']:,} questions (normalize, tokenize, fit vocabulary and idf, "
        f"embed) took {report['stage_seconds_800k']} s.",
        "",
    ]


def pair_features_section(report: dict) -> list[str]:
    top = list(report["importance_gain"].items())[:10]
    return [
        "## Pair features (`gbdt`)",
        "",
        f"`bench/pair_features.py` on the subset's {report['pairs']:,} pairs "
        f"({report['distinct_questions']:,} distinct questions). "
        f"Measured {measured_on(report)}.",
        "",
        "| part | rate |",
        "|---|---:|",
        f"| per question (tokens, TF-IDF rows, hashed char n-grams, embeddings) "
        f"| {report['questions_per_s']:,} questions/s |",
        f"| per pair (features and LightGBM's prediction) "
        f"| {report['pair_part_pairs_per_s']:,} pairs/s |",
        f"| both | {report['pairs_per_s']:,} pairs/s |",
        "",
        "Most important features by gain: "
        + ", ".join(f"`{name}` ({gain:,.0f})" for name, gain in top)
        + ".",
        "",
    ]


def scoring_section(report: dict) -> list[str]:
    lines = [
        "## Batch scoring",
        "",
        "`bench/scoring.py`: random pairs of the subset's questions, CSV in and out, "
        "`python -m pipeline.score` as a child process with its defaults, bundles from "
        "`bench/accuracy.py`. The pairs draw on the subset's distinct questions, so questions "
        "recur as in real traffic; the all-new file's questions are all distinct, the worst "
        "case for a scorer that encodes each distinct question once. "
        f"Measured {measured_on(report)}. {report['note']}.",
        "",
        "| model | size | pairs/s (whole process) | peak RSS (MB) |",
        "|---|---|---:|---:|",
    ]
    notes = []
    for model, figures in report["models"].items():
        for size, run in figures.items():
            if not isinstance(run, dict):
                continue
            label = (
                f"{int(size.split('_')[-1]):,} all new"
                if size.startswith("all_new")
                else f"{int(size):,}"
            )
            lines.append(
                f"| `{model}` | {label} | {run['pairs_per_s']:,} | {run['peak_rss_mb']:,} |"
            )
        if figures.get("note"):
            notes.append(f"`{model}`: {figures['note']}")
    lines += ["", *(f"- {note}" for note in notes), ""]
    return lines


def _index_settings(settings: dict) -> str:
    return (
        f"{settings['kind']} (M {settings['hnsw_m']}, efConstruction "
        f"{settings['ef_construction']}, efSearch {settings['ef_search']}) over "
        + (
            f"the questions' TF-IDF rows projected to {settings['tfidf_dim']} dimensions"
            if settings["vectors"] == "tfidf"
            else "the TF-IDF-weighted means of word vectors"
        )
        + (
            f", {settings['lexical_share']:.0%} of the candidates from the exact TF-IDF cosine "
            f"of an inverted index (words in at most {settings['lexical_max_df']:.0%} of the bank)"
            if settings.get("lexical_share")
            else ""
        )
    )


def recall_table(figures: dict, parts) -> list[str]:
    """recall@k and MRR of each ranking of the candidates."""
    ks = [key for key in figures["candidates"] if key.startswith("recall@")]
    lines = ["| | " + " | ".join(ks) + " | MRR |", "|---" + "|---:" * (len(ks) + 1) + "|"]
    for part in parts:
        cells = [f"{figures[part][k]:.3f}" for k in ks]
        mrr = f"{figures[part]['mrr']:.3f}" if "mrr" in figures[part] else "-"
        lines.append(f"| {part} | " + " | ".join(cells) + f" | {mrr} |")
    return lines


def speed_rows(banks: dict, key: str, label: str) -> list[str]:
    """A row per bank size and re-ranking of dupq-find's build and query times."""
    return [
        f"| {int(size):,} | {bank['build_seconds']} | {bank['index_bytes_per_question']} | "
        f"{label.format(name)} | {speed['p50_ms']} | {speed['p99_ms']} | "
        f"{speed['batch_queries_per_s']:,} |"
        for size, bank in banks.items()
        for name, speed in bank[key].items()
    ]


def find_full_release_section(report: dict) -> list[str]:
    settings, retrieval, fit = report["settings"], report["retrieval"], report["reranker"]
    lines = [
        "## Finding duplicates in the full release",
        "",
        "`bench/find_full_release.py`, with the standard split and the `"
        f"{report['model']}` bundle of `bench/full_release.py`'s run in "
        f"`{report.get('work', FIND_WORK)}`. Index: "
        f"{_index_settings(settings)}; {settings['candidates']} candidates re-ranked. "
        f"Measured {measured_on(report)}.",
        "",
        f"The learned re-ranker (LightGBM lambdarank, {settings['rerank_leaves']} leaves, "
        f"learning rate {settings['rerank_learning_rate']}) learned from "
        f"{fit['train_queries']:,} train questions with a known duplicate among their "
        f"candidates ({fit['train_candidates']:,} candidates; a bank of the train split's "
        f"questions); {fit['rounds']} rounds, chosen on "
        f"{fit['val_queries_with_a_duplicate_candidate']:,} val queries (NDCG@1 "
        f"{fit['val_ndcg@1']:.3f}); {fit['seconds']:,.0f} s, peak RSS {fit['peak_rss_mb']:,} MB.",
        "",
        f"Recall of the test split's known duplicates ({retrieval['queries']:,} queries, "
        f"{retrieval['bank_questions']:,} questions of every split in the bank, the query's own "
        "row skipped; a duplicate of a duplicate counts). model_only ranks by the pair "
        f"model's probability; reranked by {1 - retrieval['blend']:.2f} x probability + "
        f"{retrieval['blend']:.2f} x cosine (the weight with the best MRR on val); learned by "
        "the re-ranker:",
        "",
        *recall_table(retrieval, ("candidates", "exact", "model_only", "reranked", "learned")),
    ]
    lines += [
        "",
        f"The `duplicate` flag on the top hit of every distinct first question of the test "
        f"split ({retrieval['flag_learned']['queries']:,}, with or without a known duplicate): "
        "reranked flags at the pair model's threshold, learned at the re-ranker's threshold "
        "chosen on val queries.",
        "",
        "| ranking | flagged | precision@1 | accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name in ("reranked", "learned"):
        flag = retrieval[f"flag_{name}"]
        lines.append(
            f"| {name} | {flag['flagged']:.3f} | {flag['precision@1']:.3f} | "
            f"{flag['accuracy']:.3f} |"
        )
    queries = next(iter(report["banks"].values()))["ranking"]["learned"]["single_queries"]
    lines += [
        "",
        "Banks of every distinct train question, and of 1M (those plus generated variants); "
        "single queries end to end (normalize, embed, search, re-rank), then the same "
        f"{queries:,} queries at once:",
        "",
        "| bank | build (s) | index bytes / question | ranking | p50 (ms) | p99 (ms) | "
        "batch queries/s |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    lines += speed_rows(report["banks"], "ranking", "{}")
    peak = max(bank["peak_rss_mb"] for bank in report["banks"].values())
    return [*lines, "", f"Peak RSS of the whole run: {peak:,} MB.", ""]


def find_vectors_only_lines(before: dict, now: dict | None) -> list[str]:
    """The same benchmark with candidates from the vector index alone, beside today's."""
    if now is None:
        return []
    lines = [
        "The same benchmark with every candidate from the vector index (`index.lexical_share: "
        f"0`; measured {measured_on(before)}), beside the default:",
        "",
        "| candidates | learned recall@1 | recall@10 | MRR | recall@50 | val NDCG@1 (queries) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, report in (("vector index alone", before), ("with the lexical source", now)):
        learned, fit = report["retrieval"]["learned"], report["reranker"]
        lines.append(
            f"| {label} | {learned['recall@1']:.3f} | {learned['recall@10']:.3f} | "
            f"{learned['mrr']:.3f} | {learned['recall@50']:.3f} | {fit['val_ndcg@1']:.3f} "
            f"({fit['val_queries_with_a_duplicate_candidate']:,}) |"
        )
    lines += [
        "",
        "The re-ranker's val NDCG@1 counts only the val queries with a known duplicate among "
        "their candidates; the lexical source brings more of them, the harder ones.",
    ]
    works = [report.get("work", FIND_WORK) for report in (before, now)]
    if works[0] != works[1]:
        lines[-1] += (
            f" The two rows re-rank with different `{now['model']}` bundles (`{works[0]}`, "
            f"`{works[1]}`), so they differ by that too."
        )
    return [*lines, ""]


def find_candidates_section(report: dict) -> list[str]:
    settings = report["settings"]
    lines = [
        "Candidate stages (`bench/find_candidates.py`, the same bank; measured "
        f"{measured_on(report)}): dupq-find's HNSW over projected TF-IDF rows; exact cosine "
        "over the full TF-IDF rows and BM25 over the text model's words (brute force, batches "
        "of 128 queries against the whole bank); dupq-find's lexical source (exact TF-IDF "
        "cosine through an inverted index of the words in at most "
        f"{settings['lexical_max_df']:.0%} of the bank); a budget of n candidates split between "
        "HNSW's best n/2 and BM25's best new ones; and dupq-find's candidates as configured "
        f"({settings['lexical_share']:.0%} from the lexical source). Settings are chosen on the "
        "val split's queries.",
        "",
    ]
    for split in ("val", "test"):
        stages = report[split]["stages"]
        ks = [key for key in stages["hnsw"] if key.startswith("recall@")]
        lines += [
            f"{split} queries ({report[split]['queries']:,}):",
            "",
            "| candidates from | " + " | ".join(ks) + " | queries/s |",
            "|---" + "|---:" * (len(ks) + 1) + "|",
        ]
        for name, figures in stages.items():
            cells = [f"{figures[k]:.3f}" for k in ks]
            speed = f"{figures['queries_per_s']:,}" if "queries_per_s" in figures else "-"
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {speed} |")
        lines.append("")
    return lines


def find_section(report: dict) -> list[str]:
    settings = report["settings"]
    lines = [
        "## Finding duplicates in the subset",
        "",
        "`bench/find.py`, with the bundles of a `bench/accuracy.py` run on the real subset "
        f"(random split, own GloVe, seed 42). Index: {_index_settings(settings)}; "
        f"{settings['candidates']} candidates re-ranked, top {report['top_k']} returned. "
        f"Measured {measured_on(report)}.",
        "",
        "Recall of the test split's known duplicates, with every question of every split in "
        "the bank (measured before the learned re-ranker: only the pair's own second question "
        "counts as found):",
        "",
    ]
    for model, figures in report["retrieval"].items():
        lines += [
            f"Re-ranked by `{model}` ({figures['queries']:,} queries, "
            f"{figures['bank_questions']:,} questions in the bank). model_only ranks the "
            f"candidates by the model's probability alone; reranked by {1 - figures['blend']:.2f} "
            f"x probability + {figures['blend']:.2f} x cosine, the weight with the best MRR on "
            "the validation split's duplicates:",
            "",
            *recall_table(figures, ("candidates", "exact", "model_only", "reranked")),
            "",
        ]
    by_vectors = report.get("candidates_by_vectors", {})
    if by_vectors:
        ks = [
            key
            for key in next(iter(by_vectors.values()))["candidates"]
            if key.startswith("recall@")
        ]
        lines += [
            "Candidates by vector kind (HNSW, and exact search with the same vectors):",
            "",
            "| vectors | search | " + " | ".join(ks) + " |",
            "|---|---" + "|---:" * len(ks) + "|",
        ]
        for vectors, figures in by_vectors.items():
            for search in ("candidates", "exact"):
                cells = [f"{figures[search][k]:.3f}" for k in ks]
                name = "HNSW" if search == "candidates" else "exact"
                lines.append(f"| {vectors} | {name} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "Speed, per bank size (the subset's questions plus generated variants of them): "
        "single queries end to end (normalize, embed, search, re-rank), and 2,000 queries at "
        "once.",
        "",
        "| bank | build (s) | index bytes / question | re-ranked by | p50 (ms) | p99 (ms) "
        "| batch queries/s |",
        "|---:|---:|---:|---|---:|---:|---:|",
    ]
    lines += speed_rows(report["banks"], "models", "`{}`")
    return [*lines, ""]


ITERATIONS = {"logreg": "", "ensemble": "", "gbdt": " ({:.0f} rounds)"}  # what a model counts


def full_release_section(report: dict) -> list[str]:
    """Every stage's time and memory, and every model beside the published results, on the
    full release with the standard split."""
    pairs = report["pairs"]
    lines = [
        "## The full release, standard split",
        "",
        f"`bench/full_release.py` runs every stage (as `dvc repro` does) on `{report['data']}` "
        f"with `split.strategy: column` (the `wang_split` partition of published results): "
        f"{pairs['train']:,} / {pairs['val']:,} / {pairs['test']:,} train / dev / test pairs "
        f"after cleaning, word vectors `{report['vectors']}`"
        + (f", overrides {', '.join(report['overrides'])}" if report.get("overrides") else "")
        + ". Settings are chosen on dev (the threshold, early stopping, and any choice "
        "between runs: dev accuracy is shown for that); test is reported, never tuned to. "
        f"Measured {measured_on(report)}.",
        "",
        "| stage | wall time | peak RSS |",
        "|---|---:|---:|",
    ]
    for name, stage in report["stages"].items():
        lines.append(
            f"| `{name}` | {stage['seconds'] / 60:.1f} min | {stage['peak_rss_mb'] / 1024:.1f} GB |"
        )
    lines += [
        "",
        "| model | dev accuracy | test accuracy | ROC-AUC | log loss | training | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(row, key, digits=3):
        sd = row.get(f"{key}_sd")
        return f"{row[key]:.{digits}f}" + (f" ± {sd:.{digits}f}" if sd is not None else "")

    for name, row in report["models"].items():
        dev = f"{row['val_accuracy']:.4f}" if "val_accuracy" in row else "-"
        lines.append(
            f"| `{name}` | {dev} | {cell(row, 'test_accuracy')} | "
            f"{cell(row, 'test_roc_auc')} | "
            f"{cell(row, 'test_log_loss')} | {row['train_seconds'] / 60:.1f} min"
            f"{ITERATIONS.get(name, ' ({:.0f} epochs)').format(row['epochs_run'])} | "
            f"{', '.join(map(str, row['seeds']))} |"
        )
    for name, accuracy in report["published"].items():
        lines.append(f"| {name}, published | - | {accuracy:.3f} | - | - | - | - |")
    lines += [
        "",
        "Published figures are on the split's full 10,000 test pairs; this test part holds 98% "
        "of them (the rest are in the hidden set), so compare them as close, not exact.",
        "",
    ]
    variants = sorted(BENCH.glob("full_release_*.json"))
    if variants:
        lines += [
            "Variants tried against the runs above (`bench/full_release.py --output "
            "reports/bench/full_release_<variant>.json`), each kept or not on dev accuracy:",
            "",
            "| variant | model | seeds | dev accuracy | test accuracy | ROC-AUC |",
            "|---|---|---|---:|---:|---:|",
        ]
        for path in variants:
            variant = json.loads(path.read_text())
            overrides = ", ".join(f"`{o}`" for o in variant.get("overrides", []))
            if variant.get("variant"):
                overrides = (
                    f"{variant['variant']}: {overrides}" if overrides else variant["variant"]
                )
            for name, row in variant["models"].items():
                lines.append(
                    f"| {overrides} | `{name}` | {', '.join(map(str, row['seeds']))} | "
                    f"{row['val_accuracy']:.4f} | {cell(row, 'test_accuracy')} | "
                    f"{cell(row, 'test_roc_auc')} |"
                )
        lines += ["", f"Measured {measured_on(variant)}.", ""]
        lines += variant_data_stages(variants)
    return lines


def variant_data_stages(variants: list[Path]) -> list[str]:
    """The time and memory of the data stages that a variant ran itself (other variants reuse
    the outputs of earlier runs), with the word vectors each used."""
    rows = []
    for path in variants:
        variant = json.loads(path.read_text())
        for name in ("prepare", "vectors", "features"):
            if stage := variant["stages"].get(name):
                rows.append(
                    f"| `{path.name}` | `{variant['vectors']}` | `{name}` | "
                    f"{stage['seconds'] / 60:.1f} min | {stage['peak_rss_mb'] / 1024:.1f} GB | "
                    f"{variant['date']}, {variant['machine']} |"
                )
    if not rows:
        return []
    return [
        "Data stages that a variant ran itself (the date and machine are its file's, those of "
        "its last run):",
        "",
        "| variant | word vectors | stage | wall time | peak RSS | date, machine |",
        "|---|---|---|---:|---:|---|",
        *rows,
        "",
    ]


def vector_similarity_section(report: dict) -> list[str]:
    """Each model's dev accuracy by how alike the pair's two question vectors are."""
    models = list(report["accuracy"])
    sequence = (
        "`birnn_cnn` reads each question's words in order but each question alone; "
        if "birnn_cnn" in models
        else ""
    )
    lines = [
        "## Question vectors against words (the full release's dev split)",
        "",
        f"`bench/vector_similarity.py`: the {report['pairs']:,} dev pairs of `{report['work']}` "
        f"(models of seed {report['seed']}), in bands by the cosine of the "
        "two questions' TF-IDF-weighted mean word vectors (what `siamese` and `residual` read; "
        f"{sequence}`logreg` reads the words the two share), with each model's accuracy at its "
        "own threshold. The "
        f"cosine alone, at its best threshold, is right on {report['cosine_alone_accuracy']:.1%} "
        f"of the pairs. Measured {measured_on(report)}.",
        "",
        "| cosine | share of pairs | duplicates | " + " | ".join(f"`{m}`" for m in models) + " |",
        "|---|---:|---:|" + "---:|" * len(models),
    ]
    for band in report["bands"]:
        cells = " | ".join(f"{band['accuracy'][m]:.3f}" for m in models)
        lines.append(
            f"| {band['cosine']} | {band['share']:.1%} | {band['duplicates']:.1%} | {cells} |"
        )
    cells = " | ".join(f"{report['accuracy'][m]:.3f}" for m in models)
    return [*lines, f"| all | 100% | {report['duplicates']:.1%} | {cells} |", ""]


def benchmarks_md() -> str:
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make docs` (`bench/tables.py`) from `reports/bench/*.json`; do not edit "
        "by hand. Each section names the script that measured it, when, and on what machine. "
        "Benchmarks are scripts that print and save figures; no test asserts a timing.",
        "",
    ]
    if (report := load("full_release.json")) is not None:
        lines += full_release_section(report)
    if (report := load("vector_similarity.json")) is not None:
        lines += vector_similarity_section(report)
    if (report := load("accuracy.json")) is not None:
        lines += accuracy_section(report)
    lines += train_speed_section(load("train_speed_cpu.json"), load("train_speed_h100_jax.json"))
    if (report := load("scoring.json")) is not None:
        lines += scoring_section(report)
    if (report := load("spark_scoring.json")) is not None:
        lines += spark_section(report)
    if (report := load("find_full_release.json")) is not None:
        lines += find_full_release_section(report)
    if (report := load("find_full_release_vectors_only.json")) is not None:
        lines += find_vectors_only_lines(report, load("find_full_release.json"))
    if (report := load("find_candidates.json")) is not None:
        lines += find_candidates_section(report)
    if (report := load("find.json")) is not None:
        lines += find_section(report)
    if (report := load("serve.json")) is not None:
        lines += serve_section(report)
    if (report := load("behaviour.json")) is not None:
        lines += behaviour_section(report)
    if variants := sorted(BENCH.glob("behaviour_*.json")):
        lines += behaviour_variants_section(variants)
    if (report := load("pair_features.json")) is not None:
        lines += pair_features_section(report)
    if (report := load("embeddings.json")) is not None:
        lines += embeddings_section(report)
    return "\n".join(lines).rstrip() + "\n"


def readme_results() -> str:
    """The README's short table: mean test accuracy and ROC-AUC of each model."""
    report = load("accuracy.json")
    summary = summarize(report["runs"])
    cases = [("random", "glove"), ("question_disjoint", "glove"), ("random", "spacy_md")]
    models = list(dict.fromkeys(r["model"] for r in summary))
    header = ["model", *(f"{split.replace('_', '-')}, {vectors}" for split, vectors in cases)]
    lines = [
        "| " + " | ".join(header) + " |",
        "|---" + "|---:" * len(cases) + "|",
    ]
    for model in models:
        cells = []
        for split, vectors in cases:
            row = _rows(summary, split, vectors).get(model)
            cells.append(f"{row['accuracy']:.3f} / {row['roc_auc']:.3f}" if row else "-")
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    return (
        "\n".join(lines)
        + f"\n\nTest accuracy / ROC-AUC on the real subset, mean over seeds; measured "
        f"{measured_on(report)}.\n"
    )


SETTING = (  # `make full-release`'s runs (where a model is in several, a later file's row wins)
    "full_release_epochs15_seeds.json",
    "full_release_setting_mlp.json",
    "full_release_setting_birnn.json",
)


def setting_models() -> tuple[dict, list[dict]] | None:
    """Each model of the full-release setting (`make full-release`), and the runs (files) that
    measured them, in SETTING's order."""
    reports = [report for name in SETTING if (report := load(name)) is not None]
    if not reports:
        return None
    return {name: row for report in reports for name, row in report["models"].items()}, reports


def full_release_target() -> list[str]:
    """The `-S` values that the Makefile's full-release target passes to `dvc exp run`."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^full-release:.*\n((?:\t.*\n)+)", makefile, re.M)
    return re.findall(r"-S '?([^'\s\\]+)", recipe.group(1)) if recipe else []


def model_settings(overrides: list[str]) -> list[str]:
    """The overrides but those choosing the data, its split and the word vectors, which the
    tables say in words."""
    data_keys = ("data.source=", "split.strategy=", "vectors.source=")
    return [value for value in overrides if not value.startswith(data_keys)]


def minutes(seconds: float) -> str:
    """Minutes: one decimal under ten (0.3, 7.4), whole minutes above (13, 273)."""
    return f"{seconds / 60:.1f}" if seconds < 600 else f"{seconds / 60:.0f}"


def readme_full() -> str:
    """The README's table: each model on the full release's standard test split, with the
    full-release setting and trained on Quora's pairs alone, beside the published results."""
    report = load("full_release.json")
    if report is None:
        return "No full-release benchmark yet (`bench/full_release.py`).\n"
    setting, runs = setting_models() or ({}, [])
    for run in runs:  # the table would credit `make full-release` with runs it does not reproduce
        if untrained := set(run["overrides"]) - set(full_release_target()):
            raise SystemExit(f"make full-release does not pass {sorted(untrained)}: {SETTING}")
    lines = [
        "| model | trained | dev accuracy | test accuracy | ROC-AUC | log loss | training |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    groups = (("`make full-release`", setting), ("Quora pairs only", report["models"]))
    for trained, models in groups:
        for name, row in models.items():
            seeds = len(row["seeds"])
            lines.append(
                f"| `{name}` | {trained}, {seeds} seed{'s' if seeds > 1 else ''} | "
                f"{row['val_accuracy']:.3f} | {row['test_accuracy']:.3f} | "
                f"{row['test_roc_auc']:.3f} | {row['test_log_loss']:.3f} | "
                f"{minutes(row['train_seconds'])} min |"
            )
    for name, accuracy in report["published"].items():
        lines.append(f"| {name} | published | - | {accuracy:.3f} | - | - | - |")
    text = (
        "\n".join(lines)
        + f"\n\nThe full release's standard split ({report['pairs']['train']:,} train / "
        f"{report['pairs']['test']:,} test pairs), word vectors `{report['vectors']}`, mean "
        "over seeds; training: minutes a seed, on the machine named. Quora pairs only: "
        f"`{'`, `'.join(report.get('overrides', []))}`, "
        f"measured {measured_on(report)}."
    )
    if runs:
        dates = "; ".join(
            f"{', '.join(f'`{name}`' for name in run['models'])} {measured_on(run)}" for run in runs
        )
        text += (
            " `make full-release`: the defaults (generated pairs, spelling correction) with "
            f"`{'`, `'.join(model_settings(full_release_target()))}`, measured: {dates}."
        )
    return text + "\n"


def readme_find() -> str:
    """The README's short table: recall and latency of dupq-find, by ranking, on the full
    release."""
    report = load("find_full_release.json")
    retrieval = report["retrieval"]
    largest = max(report["banks"], key=int)
    speed = report["banks"][largest]["ranking"]
    lines = [
        "| ranked by | recall@1 | recall@10 | MRR | p50 / p99 ms at "
        f"{int(largest):,} questions | queries/s in a batch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = (
        ("the candidates, in retrieval order", "candidates", None),
        (f"blend of cosine and `{report['model']}`", "reranked", "blend"),
        ("learned re-ranker", "learned", "learned"),
    )
    for label, part, ranking in rows:
        figures = retrieval[part]
        timing = (
            f"{speed[ranking]['p50_ms']} / {speed[ranking]['p99_ms']} | "
            f"{speed[ranking]['batch_queries_per_s']:,}"
            if ranking
            else "- | -"
        )
        lines.append(
            f"| {label} | {figures['recall@1']:.3f} | {figures['recall@10']:.3f} | "
            f"{figures['mrr']:.3f} | {timing} |"
        )
    flag = retrieval["flag_learned"]
    return (
        "\n".join(lines)
        + f"\n\n{retrieval['queries']:,} test queries, {retrieval['bank_questions']:,} questions "
        f"in the bank. The learned re-ranker's `duplicate` flag marks the top hit of "
        f"{flag['flagged']:.0%} of all test questions, and {flag['precision@1']:.1%} of those "
        f"are known duplicates. Measured {measured_on(report)}.\n"
    )


def behaviour_table(report: dict) -> list[str]:
    """Failure rate per capability (rows) and model (columns)."""
    models = list(report["models"])
    suite = report["suite"]
    lines = [
        "| capability | expected | tests | " + " | ".join(f"`{m}`" for m in models) + " |",
        "|---|---|---:|" + "---:|" * len(models),
    ]
    expected = {"0": "not duplicate", "1": "duplicate", "same": "same prediction"}
    for capability, count in suite["tests"].items():
        rates = [report["models"][m]["failure_rate"][capability] for m in models]
        lines.append(
            f"| {capability.replace('_', ' ')} | {expected[suite['expect'][capability]]} | "
            f"{count} | " + " | ".join(f"{rate:.0%}" for rate in rates) + " |"
        )
    return lines


def perturbation_table(reports: list[dict], columns: list[tuple[str, dict]]) -> list[str]:
    """Invariance failures per perturbation (rows) and column (a label and a model's results),
    for the columns measured by perturbation; `reports` are the suite runs they come from."""
    columns = [(label, row) for label, row in columns if "by_perturbation" in row]
    suites = [r["suite"]["perturbations"] for r in reports if "perturbations" in r["suite"]]
    if not columns or not suites:
        return []
    lines = [
        "| invariance | perturbation | tests | " + " | ".join(label for label, _ in columns) + " |",
        "|---|---|---:|" + "---:|" * len(columns),
    ]
    for capability, counts in suites[0].items():
        for perturbation, count in counts.items():
            rates = [row["by_perturbation"][capability][perturbation] for _, row in columns]
            lines.append(
                f"| {capability.replace('_', ' ')} | {perturbation} | {count} | "
                + " | ".join(f"{rate:.0%}" for rate in rates)
                + " |"
            )
    return ["", "The invariances by perturbation (the change made to one question):", "", *lines]


def behaviour_bundles(report: dict) -> str:
    """Where the suite's bundles came from: the models directory, and any bundle elsewhere."""
    elsewhere = [
        f"`{name}`: `{row['directory']}`"
        for name, row in report["models"].items()
        if Path(row.get("directory", Path(report["models_dir"]) / name)).parent
        != Path(report["models_dir"])
    ]
    return f"`{report['models_dir']}`" + (f"; {', '.join(elsewhere)}" if elsewhere else "")


# earlier defaults shown beside today's in the README: (their report, its model, label)
README_COMPARED = (
    ("behaviour_recipes.json", "ensemble", "ensemble before convert_to and comparative_opposite"),
    ("behaviour_invariance.json", "ensemble, Quora pairs only", "ensemble, Quora pairs only"),
)


def readme_behaviour() -> str:
    report = load("behaviour.json")
    models = dict(report["models"])
    dates = []
    for name, model, label in README_COMPARED:
        earlier = load(name)
        models[label] = earlier["models"][model]
        dates.append(f"`{label}` {earlier['date']}")
    report = {**report, "models": models}
    return (
        "\n".join(behaviour_table(report))
        + f"\n\nShare of the suite's tests failed, each model at its own threshold; models "
        f"trained on the full release ({behaviour_bundles(report)}); measured "
        f"{measured_on(report)} ({', '.join(dates)}).\n"
    )


def behaviour_section(report: dict) -> list[str]:
    return [
        "## Behaviour suite",
        "",
        "`bench/behaviour.py`: the pairs of `pipeline/behaviour.py` (templates and lexicons, "
        f"seed {report['suite']['seed']}) scored by bundles trained on the full release "
        f"({behaviour_bundles(report)}). Measured {measured_on(report)}.",
        "",
        *behaviour_table(report),
        *perturbation_table([report], [(f"`{m}`", row) for m, row in report["models"].items()]),
        "",
    ]


def behaviour_variants_section(paths: list[Path]) -> list[str]:
    """The sequence models' and the ensemble's failure rates in each variant's suite run: a
    row per run and model, a column per capability (and per invariance's perturbation)."""
    rows = []
    for path in paths:
        report = json.loads(path.read_text())
        variant = re.sub(r"_\d+$", "", path.stem.removeprefix("behaviour_"))  # its seed is below
        for name in ("re2", "esim", "ensemble"):
            if name in report["models"]:
                rows.append((variant, report["models"][name]["train_seed"], name, report))
    if not rows:  # runs of other models only: nothing to set beside each other
        return []
    capabilities = list(rows[0][3]["suite"]["tests"])
    lines = [
        "### Behaviour of the variants",
        "",
        "`bench/behaviour.py --output reports/bench/behaviour_<variant>.json` on the bundles of "
        'a run in "Variants tried" (named by that file), the same suite; a row per run and '
        "model, each capability's share of tests failed:",
        "",
        *runs_table(
            rows,
            [c.replace("_", " ") for c in capabilities],
            lambda row: [row["failure_rate"][c] for c in capabilities],
        ),
    ]
    lines += perturbation_rows(rows)
    dates = sorted({measured_on(report) for *_, report in rows})
    return [*lines, "", f"Measured {'; '.join(dates)}.", ""]


def perturbation_rows(rows: list[tuple]) -> list[str]:
    """The invariance failures per perturbation, a row per (variant, seed, model, report) that
    was measured by perturbation, a column per invariance and perturbation."""
    rows = [row for row in rows if "by_perturbation" in row[3]["models"][row[2]]]
    suites = [
        row[3]["suite"]["perturbations"] for row in rows if "perturbations" in row[3]["suite"]
    ]
    if not rows or not suites:
        return []
    columns = [(c, p, n) for c, counts in suites[0].items() for p, n in counts.items()]
    return [
        "",
        "The invariances by perturbation (the change made to one question; tests in brackets):",
        "",
        *runs_table(
            rows,
            [f"{c.replace('_', ' ')}: {p} ({n})" for c, p, n in columns],
            lambda row: [row["by_perturbation"][c][p] for c, p, _ in columns],
        ),
    ]


def runs_table(rows: list[tuple], headers: list[str], rates: Callable) -> list[str]:
    """A row per (variant, seed, model, report), a column per header: `rates` of the model's
    results in that report, as percentages."""
    lines = [
        "| variant | seed | model | " + " | ".join(headers) + " |",
        "|---|---:|---|" + "---:|" * len(headers),
    ]
    for variant, seed, name, report in rows:
        cells = " | ".join(f"{rate:.0%}" for rate in rates(report["models"][name]))
        lines.append(f"| {variant} | {seed} | `{name}` | {cells} |")
    return lines


def fill_readme(text: str) -> str:
    """The README with each generated block (between its start and end markers) rewritten."""
    blocks = (
        ("full", readme_full),
        ("results", readme_results),
        ("find", readme_find),
        ("behaviour", readme_behaviour),
    )
    for name, fill in blocks:
        block = re.compile(rf"(<!-- {name}:start.*?-->\n).*?(<!-- {name}:end -->)", re.DOTALL)
        if not block.search(text):
            raise SystemExit(f"bench/tables.py: README.md has no <!-- {name}:start --> block")
        text = block.sub(lambda m, fill=fill: m.group(1) + fill() + m.group(2), text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files are stale")
    args = parser.parse_args()
    docs = ROOT / "docs" / "benchmarks.md"
    readme = ROOT / "README.md"
    new_docs = benchmarks_md()
    new_readme = fill_readme(readme.read_text())
    if args.check:
        stale = [
            p.name
            for p, new in ((docs, new_docs), (readme, new_readme))
            if not p.exists() or p.read_text() != new
        ]
        if stale:
            raise SystemExit(f"bench/tables.py: stale {', '.join(stale)}; run make docs")
        return
    docs.parent.mkdir(exist_ok=True)
    docs.write_text(new_docs)
    readme.write_text(new_readme)
    print(f"wrote {docs.relative_to(ROOT)} and the generated tables in README.md")


if __name__ == "__main__":
    main()
