"""Benchmark: dupq-serve under load, on loopback, against the same work done in-process.

Builds (once, in --work) a question index over the first --bank distinct questions of the full
release's train split, re-ranked by a bundle trained on the full release (default: gbdt of
bench/full_release.py's run), and takes queries from the test split and pairs to score from
the train split (the test split is too small for the requests of /score). Measures:

- baselines: `Finder.find` over 2,000 queries at once in this process (dupq-find's batch
  rate), and `dupq-score` over 100,000 train pairs (its pairs/s, start-up included);
- the server (`dupq-serve` in its own process): /find (one question, top 10) at concurrency
  1, 8, 32 and 128 and /score (1,000 pairs a request) at 1, 8 and 32: p50 and p99 latency
  and requests/s;
- the server's resident memory (VmRSS) every 10% of --rss-requests /find requests (at
  concurrency 32).

The load comes from this process (asyncio, one keep-alive connection per concurrent client),
on the same cores as the server. Writes reports/bench/serve.json. Not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from datetime import date
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import yaml
from common import ROOT, machine

from pipeline.bundle import load_bundle
from pipeline.find.index import SETTINGS, QuestionIndex
from pipeline.find.search import open_finder
from pipeline.io import write_json

FULL = ROOT.parent / "shared" / "data" / "quora" / "quora_pairs_full.parquet"
FULL_RUN = ROOT / "reports" / "bench" / "full_release_run" / "models"
CONCURRENCY = (1, 8, 32)
FIND_CONCURRENCY = (*CONCURRENCY, 128)  # and where /find's throughput levels off
SCORE_PAIRS = 1_000
SCORED_BY_CLI = 100_000  # train pairs dupq-score scores, start-up included


def build_index(work: Path, model: Path, bank: int, data: pd.DataFrame) -> Path:
    """The index and a copy of its bundle under `work` (reused when already there)."""
    index_dir = work / "index"
    if (index_dir / "index.json").exists():
        return index_dir
    shutil.copytree(model, work / model.name, dirs_exist_ok=True)
    bundle = load_bundle(work / model.name)
    train = data[data["wang_split"] == "train"]
    questions = pd.concat([train["question1"], train["question2"]]).drop_duplicates()
    questions = questions.iloc[:bank].reset_index(drop=True)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    settings = {key: params["index"][key] for key in SETTINGS}
    start = time.perf_counter()
    QuestionIndex.build(questions, None, bundle, settings, blend=0.5).save(index_dir)
    print(f"indexed {len(questions):,} questions in {time.perf_counter() - start:.0f} s")
    return index_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for process {pid}")


def load(url: str, bodies: list, concurrency: int) -> dict:
    """POST every body, `concurrency` at a time, each connection kept alive; latency
    percentiles and requests/s.

    The client is asyncio over plain sockets, with every request encoded before the clock
    starts: it shares the server's two cores, so it must take as little of them as it can
    (a thread per connection with an httpx client took a share that the server lost).
    """
    target = urllib.parse.urlsplit(url)
    head = (
        f"POST {target.path} HTTP/1.1\r\nHost: {target.netloc}\r\n"
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n"
    )
    encoded = [json.dumps(body).encode() for body in bodies]
    requests = [head.format(len(body)).encode() + body for body in encoded]
    latencies = np.zeros(len(bodies))
    failures = []
    waiting = list(range(len(bodies)))[::-1]

    async def connection():
        reader, writer = await asyncio.open_connection(target.hostname, target.port)
        try:
            while waiting:
                i = waiting.pop()
                start = time.perf_counter()
                writer.write(requests[i])
                response = await reader.readuntil(b"\r\n\r\n")
                length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", response)
                if length is None:  # the server always sends one; say so if it stops
                    raise SystemExit(f"bench/serve.py: no Content-Length in {response[:200]!r}")
                await reader.readexactly(int(length.group(1)))
                latencies[i] = time.perf_counter() - start
                status = int(response.split(b" ", 2)[1])
                if status != 200:
                    failures.append(status)
        finally:
            writer.close()

    async def run():
        await asyncio.gather(*(connection() for _ in range(concurrency)))

    start = time.perf_counter()
    asyncio.run(run())
    seconds = time.perf_counter() - start
    if failures:
        raise SystemExit(f"bench/serve.py: {len(failures)} requests failed: {failures[:5]}")
    return {
        "concurrency": concurrency,
        "requests": len(bodies),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 1),
        "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 1),
        "requests_per_s": round(len(bodies) / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(FULL))
    parser.add_argument("--model", default=str(FULL_RUN / "gbdt"))
    parser.add_argument("--work", default="reports/bench/serve_run")
    parser.add_argument("--bank", type=int, default=100_000)
    parser.add_argument("--find-requests", type=int, default=2_000)
    parser.add_argument("--score-requests", type=int, default=40)
    parser.add_argument("--rss-requests", type=int, default=100_000)
    parser.add_argument("--output", default="reports/bench/serve.json")
    args = parser.parse_args()
    if not Path(args.data).exists():
        raise SystemExit(f"bench/serve.py: {args.data} not found (it lives in ../shared)")
    work = ROOT / args.work
    work.mkdir(parents=True, exist_ok=True)
    data = pd.read_parquet(args.data)
    index_dir = build_index(work, Path(args.model), args.bank, data)
    test = data[data["wang_split"] == "test"].reset_index(drop=True)
    queries = test["question1"].drop_duplicates().tolist()

    finder = open_finder(index_dir)
    finder.find(queries[:50], 10)  # warm up
    batch = queries[:2000]
    start = time.perf_counter()
    finder.find(batch, 10)
    batch_qps = len(batch) / (time.perf_counter() - start)
    train_pairs = data[data["wang_split"] == "train"][["question1", "question2"]]
    pairs_file = work / "train_pairs.parquet"
    train_pairs.iloc[:SCORED_BY_CLI].to_parquet(pairs_file)
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.score",
            "--model",
            str(finder.bundle.directory),
            "--input",
            str(pairs_file),
            "--output",
            str(work / "scored.parquet"),
            "--quiet",
        ],
        cwd=ROOT,
        check=True,
    )
    score_pairs_per_s = SCORED_BY_CLI / (time.perf_counter() - start)
    print(f"in-process: find {batch_qps:,.0f} queries/s, score {score_pairs_per_s:,.0f} pairs/s")
    report = {
        "date": date.today().isoformat(),
        "machine": machine(),
        "model": finder.bundle.name,
        "bank": len(finder.index.bank),
        "in_process": {
            "find_batch_queries_per_s": round(batch_qps, 1),
            "score_pairs_per_s": round(score_pairs_per_s, 1),
        },
        "find": [],
        "score": [],
    }
    del finder

    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.serve.cli",
            "--index",
            str(index_dir),
            "--port",
            str(port),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        if server.poll() is not None:
            raise SystemExit("bench/serve.py: dupq-serve did not start")
        time.sleep(0.5)
    try:
        find_bodies = [{"question": q, "top_k": 10} for q in queries]
        load(f"{url}/find", find_bodies[:200], 8)  # warm up
        for concurrency in FIND_CONCURRENCY:
            bodies = find_bodies[: args.find_requests]
            report["find"].append(load(f"{url}/find", bodies, concurrency))
            print("find", report["find"][-1], flush=True)
        pairs = train_pairs.to_dict("records")
        score_bodies = [
            {"pairs": pairs[i * SCORE_PAIRS : (i + 1) * SCORE_PAIRS]}
            for i in range(min(args.score_requests, len(pairs) // SCORE_PAIRS))
        ]
        for concurrency in CONCURRENCY:
            row = load(f"{url}/score", score_bodies, concurrency)
            row["pairs_per_s"] = round(row["requests_per_s"] * SCORE_PAIRS)
            report["score"].append(row)
            print("score", row, flush=True)
        rss = [{"requests": 0, "rss_mb": rss_mb(server.pid)}]
        step = args.rss_requests // 10
        for done in range(step, args.rss_requests + 1, step):
            bodies = [find_bodies[i % len(find_bodies)] for i in range(done - step, done)]
            load(f"{url}/find", bodies, 32)
            rss.append({"requests": done, "rss_mb": rss_mb(server.pid)})
            print("rss", rss[-1], flush=True)
        report["rss"] = rss
    finally:
        server.send_signal(signal.SIGTERM)
        report["exit_status"] = server.wait(timeout=120)
    write_json(ROOT / args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
