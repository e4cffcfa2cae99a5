"""dupq-serve as a user meets it: the real server on a loopback port, called over HTTP."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import INDEX_SETTINGS, ROOT, run_cli

from pipeline.bundle import load_bundle
from pipeline.find.index import QuestionIndex
from pipeline.find.search import open_finder
from pipeline.io import FAULT_ENV
from pipeline.serve.app import MAX_BODY_BYTES, MAX_PAIRS

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`dupq-serve` in a process of its own, on a free loopback port."""

    def __init__(self, *args, env=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile("w+")  # the server's output, gone when closed
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.serve.cli", "--port", str(self.port), *map(str, args)],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.output()
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"dupq-serve not ready in 120 s:\n{self.output()}")

    def post(self, path, body=None, **kwargs):
        return httpx.post(f"{self.url}{path}", json=body, timeout=120, **kwargs)

    def stop(self) -> int:
        """SIGTERM, then the exit status."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=60)
        self.log.close()
        return code

    def output(self) -> str:
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-3000:]


@pytest.fixture(scope="module")
def index_dir(bundles, featurized, tmp_path_factory):
    """An index of the tiny train split's questions, re-ranked by logreg."""
    train = pd.read_parquet(Path(featurized["paths"]["processed"]) / "train.parquet")
    questions = pd.concat([train["question1"], train["question2"]]).drop_duplicates()
    bundle = load_bundle(bundles["logreg"])
    directory = tmp_path_factory.mktemp("serve") / "index"
    QuestionIndex.build(questions.tolist(), None, bundle, INDEX_SETTINGS, blend=0.5).save(directory)
    return directory


@pytest.fixture
def own_index(index_dir, tmp_path):
    """A copy of the index (with its bundle beside it) that a test may change."""
    meta = json.loads((index_dir / "index.json").read_text())
    model = (index_dir / meta["model"]).resolve()
    shutil.copytree(model, tmp_path / model.name)
    shutil.copytree(index_dir, tmp_path / "index")
    meta["model"] = f"../{model.name}"
    (tmp_path / "index" / "index.json").write_text(json.dumps(meta))
    return tmp_path / "index"


@pytest.fixture(scope="module")
def server(index_dir):
    server = Server("--index", index_dir)
    yield server
    assert server.stop() == 0, server.output()


@pytest.fixture(scope="module")
def test_pairs(featurized):
    return pd.read_parquet(Path(featurized["paths"]["processed"]) / "test.parquet")


def test_score_gives_dupq_scores_numbers(server, index_dir, test_pairs, tmp_path):
    pairs = test_pairs[["question1", "question2"]]
    unscorable = pd.DataFrame({"question1": ["\u200b"], "question2": ["empty once normalized"]})
    pairs = pd.concat([pairs, unscorable], ignore_index=True)
    pairs.to_parquet(tmp_path / "pairs.parquet")
    model = open_finder(index_dir).bundle.directory
    result = run_cli(
        "pipeline.score",
        "--model",
        model,
        "--input",
        tmp_path / "pairs.parquet",
        "--output",
        tmp_path / "scored.parquet",
        "--quiet",
    )
    assert result.returncode == 0, result.stderr
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    response = server.post("/score", {"pairs": pairs.to_dict("records")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == "logreg" and len(body["results"]) == len(pairs)
    results, expected = body["results"][:-1], scored.iloc[:-1]
    assert [r["probability"] for r in results] == expected["probability"].tolist()
    assert [r["prediction"] for r in results] == expected["prediction"].tolist()
    assert (
        body["results"][-1]
        == {"error": scored["error"].iloc[-1]}
        == {"error": "question1 is empty"}
    )


def test_find_gives_dupq_finds_matches(server, index_dir, test_pairs, tmp_path):
    query = test_pairs["question1"].iloc[0]
    pd.DataFrame({"question": [query]}).to_csv(tmp_path / "query.csv", index=False)
    result = run_cli(
        "pipeline.find",
        "--index",
        index_dir,
        "--input",
        tmp_path / "query.csv",
        "--output",
        tmp_path / "found.parquet",
        "--top-k",
        5,
    )
    assert result.returncode == 0, result.stderr
    found = pd.read_parquet(tmp_path / "found.parquet")
    response = server.post("/find", {"question": query, "top_k": 5})
    assert response.status_code == 200, response.text
    matches = response.json()["matches"]
    assert [m["id"] for m in matches] == found["bank_id"].tolist()
    assert [m["question"] for m in matches] == found["bank_question"].tolist()
    assert [m["probability"] for m in matches] == found["probability"].astype(float).tolist()
    assert [m["duplicate"] for m in matches] == found["duplicate"].tolist()


def test_concurrent_finds_get_their_own_answers(server, test_pairs):
    """Requests batched together are answered each with its own matches and its own top_k."""
    queries = test_pairs["question1"].iloc[:24].tolist()
    alone = [
        server.post("/find", {"question": q, "top_k": 1 + i % 4}).json()
        for i, q in enumerate(queries)
    ]
    together = [None] * len(queries)

    def ask(i):
        together[i] = server.post("/find", {"question": queries[i], "top_k": 1 + i % 4}).json()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(queries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert together == alone
    assert [len(answer["matches"]) for answer in together] == [1 + i % 4 for i in range(24)]


BAD_REQUESTS = [
    ("/score", b"{not json", "application/json", 400, "body"),
    ("/score", b'{"pairs": []}', "text/plain", 415, "body"),
    ("/score", b"{}", "application/json", 422, "pairs"),
    ("/score", b'{"pairs": [{"question1": "a"}]}', "application/json", 422, "pairs.0.question2"),
    (
        "/score",
        b'{"pairs": [{"question1": 5, "question2": "b"}]}',
        "application/json",
        422,
        "pairs.0.question1",
    ),
    (
        "/score",
        b'{"pairs": [{"question1": "  ", "question2": "b"}]}',
        "application/json",
        422,
        "pairs.0.question1",
    ),
    (
        "/score",
        b'{"pairs": [{"question1": "", "question2": "b"}]}',
        "application/json",
        422,
        "pairs.0.question1",
    ),
    (
        "/score",
        b'{"pairs": [{"question1": "a", "question2": "b", "x": 1}]}',
        "application/json",
        422,
        "pairs.0.x",
    ),
    (
        "/score",
        json.dumps({"pairs": [{"question1": "a", "question2": "b"}] * (MAX_PAIRS + 1)}).encode(),
        "application/json",
        422,
        "pairs",
    ),
    ("/score", b"[1, 2]", "application/json", 422, "body"),
    ("/find", b'{"question": "How?", "top_k": 0}', "application/json", 422, "top_k"),
    ("/find", b'{"question": "How?", "top_k": 101}', "application/json", 422, "top_k"),
    ("/find", b'{"question": "How?", "top_k": "ten"}', "application/json", 422, "top_k"),
    ("/find", b'{"question": "\\t\\n"}', "application/json", 422, "question"),
    (
        "/questions",
        b'{"questions": [{"question": null}]}',
        "application/json",
        422,
        "questions.0.question",
    ),
]


@pytest.mark.parametrize("path, body, content_type, status, field", BAD_REQUESTS)
def test_bad_requests_are_4xx_that_name_the_field(server, path, body, content_type, status, field):
    response = httpx.post(
        f"{server.url}{path}", content=body, headers={"content-type": content_type}, timeout=60
    )
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["error"] and field in [p["field"] for p in answer["problems"]], answer
    assert "Traceback" not in response.text


def test_oversized_bodies_are_refused_whether_or_not_they_say_their_size(server):
    big = b'{"pairs": [' + b'{"question1": "a", "question2": "b"},' * (MAX_BODY_BYTES // 30)
    for headers in (
        {"content-type": "application/json"},
        {"content-type": "application/json", "transfer-encoding": "chunked"},
    ):
        body = big if "transfer-encoding" not in headers else iter([big[:1000], big[1000:]])
        response = httpx.post(f"{server.url}/score", content=body, headers=headers, timeout=60)
        assert response.status_code == 413, response.text
        assert response.json()["problems"][0]["field"] == "body"
    assert httpx.get(f"{server.url}/health").status_code == 200  # still up


def test_health_metrics_docs_and_page(server):
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ready" and health["model"] == "logreg"
    assert 0 <= health["threshold"] <= 1 and health["bank_size"] > 0
    server.post("/score", {"pairs": [{"question1": "a b c", "question2": "a b"}]})
    server.post("/score", {"pairs": []})
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'dupq_requests_total{endpoint="/score",status="200"}' in metrics
    assert 'dupq_request_errors_total{endpoint="/score",status="422"}' in metrics
    assert "dupq_request_seconds_bucket" in metrics and "dupq_pairs_scored_total" in metrics
    assert f"dupq_bank_questions {float(health['bank_size'])}" in metrics
    assert "swagger" in httpx.get(f"{server.url}/docs").text.lower()
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert {"/score", "/find", "/questions", "/health"} <= set(schema["paths"])
    page = httpx.get(f"{server.url}/").text
    assert '<label for="find-question">' in page and "http" not in page.split("<body>")[1]
    assert httpx.get(f"{server.url}/static/app.js").status_code == 200


def test_added_questions_are_found_at_once_and_kept_across_a_restart(own_index):
    server = Server("--index", own_index)
    new = "Which fern grows best on a north-facing balcony in Oslo?"
    added = server.post("/questions", {"questions": [{"question": new, "id": "fern-1"}]})
    assert added.status_code == 200 and added.json()["added"] == 1, added.text
    first = server.post("/find", {"question": new, "top_k": 1}).json()["matches"][0]
    assert (first["id"], first["question"]) == ("fern-1", new)
    assert server.stop() == 0
    again = Server("--index", own_index)
    first = again.post("/find", {"question": new, "top_k": 1}).json()["matches"][0]
    assert (first["id"], first["question"]) == ("fern-1", new)
    assert again.stop() == 0


def test_adds_from_the_service_and_the_cli_at_once_never_drop_one(own_index, tmp_path):
    server = Server("--index", own_index)
    before = len(open_finder(own_index).index.bank)
    from_service = [f"Service question number {i} about gardening?" for i in range(12)]
    from_cli = [f"Command line question number {i} about cooking?" for i in range(12)]
    for i in range(3):
        pd.DataFrame({"question": from_cli[4 * i : 4 * i + 4]}).to_csv(
            tmp_path / f"add{i}.csv", index=False
        )
    clis = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.find",
                "--index",
                str(own_index),
                "--add",
                str(tmp_path / f"add{i}.csv"),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
        )
        for i in range(3)
    ]
    answers = []
    threads = [
        threading.Thread(
            target=lambda q=q: answers.append(
                server.post("/questions", {"questions": [{"question": q}]}).status_code
            )
        )
        for q in from_service
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [cli.wait(timeout=300) for cli in clis] == [0, 0, 0]
    assert answers == [200] * len(from_service)
    bank = set(open_finder(own_index).index.bank["question"])
    assert set(from_service) | set(from_cli) <= bank
    assert len(open_finder(own_index).index.bank) == before + 24
    # the service finds what the command line added, without a restart
    found = server.post("/find", {"question": from_cli[5], "top_k": 1}).json()["matches"][0]
    assert found["question"] == from_cli[5]
    assert server.stop() == 0


def test_a_crash_while_saving_an_add_keeps_every_acknowledged_question(own_index):
    server = Server("--index", own_index)
    kept = "Is a question acknowledged before the crash kept?"
    assert server.post("/questions", {"questions": [{"question": kept}]}).status_code == 200
    assert server.stop() == 0
    crashing = Server("--index", own_index, env={FAULT_ENV: "moved_old_aside"})
    with pytest.raises(httpx.TransportError):  # killed mid-swap: no answer, nothing promised
        crashing.post("/questions", {"questions": [{"question": "Lost in the crash?"}]})
    assert crashing.process.wait(timeout=30) == -signal.SIGKILL
    crashing.log.close()
    after = Server("--index", own_index)  # the loader restores what the kill left
    first = after.post("/find", {"question": kept, "top_k": 1}).json()["matches"][0]
    assert first["question"] == kept
    assert after.stop() == 0


def test_sigterm_lets_requests_in_flight_finish_then_exits_0(own_index, test_pairs):
    server = Server("--index", own_index)
    pairs = test_pairs[["question1", "question2"]].to_dict("records")
    pairs = (pairs * (MAX_PAIRS // len(pairs) + 1))[:MAX_PAIRS]
    answer = {}
    request = threading.Thread(
        target=lambda: answer.update(response=server.post("/score", {"pairs": pairs}))
    )
    request.start()
    time.sleep(0.3)  # the request is in flight
    assert server.stop() == 0, server.output()
    request.join()
    assert answer["response"].status_code == 200
    assert len(answer["response"].json()["results"]) == MAX_PAIRS
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", server.port)),
    ):
        pass  # nothing listens on the port any more
    with socket.socket() as sock:  # and a new server may bind it (as servers do, SO_REUSEADDR)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", server.port))


def test_an_api_key_guards_the_posts(index_dir):
    server = Server("--index", index_dir, "--api-key", "s3cret")
    body = {"question": "How do I learn?", "top_k": 1}
    assert server.post("/find", body).status_code == 401
    assert server.post("/find", body, headers={"x-api-key": "wrong"}).status_code == 401
    assert server.post("/find", body, headers={"x-api-key": "s3cret"}).status_code == 200
    assert httpx.get(f"{server.url}/health").json()["api_key_required"] is True
    assert server.stop() == 0


def test_a_bad_bundle_or_index_is_one_line_before_serving(tmp_path):
    result = run_cli("pipeline.serve.cli", "--model", tmp_path / "none")
    assert result.returncode == 2 and "model bundle not found" in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    result = run_cli("pipeline.serve.cli", "--index", tmp_path)
    assert result.returncode == 2 and "not a question index" in result.stderr


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")
def test_the_page_in_a_real_browser(server, test_pairs, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    query = test_pairs["question1"].iloc[0]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(viewport={"width": 1000, "height": 820})
        page.goto(server.url)
        expect(page.locator("#status")).to_contain_text("model logreg")
        page.get_by_label("Type a question").press_sequentially(query, delay=5)
        expect(page.locator("#matches li").first).to_be_visible(timeout=15_000)
        assert page.locator("#matches li").count() == 5
        page.get_by_label("First question").fill(test_pairs["question1"].iloc[1])
        page.get_by_label("Second question").fill(test_pairs["question2"].iloc[1])
        page.get_by_role("button", name="Compare").click()
        expect(page.locator("#verdict")).to_contain_text("probability", timeout=15_000)
        page.screenshot(path=tmp_path / "page.png", full_page=True)
        browser.close()
    assert (tmp_path / "page.png").stat().st_size > 10_000
    if os.environ.get("DUPQ_SCREENSHOT"):  # make docs: the README's picture of the page
        shutil.copy(tmp_path / "page.png", os.environ["DUPQ_SCREENSHOT"])
