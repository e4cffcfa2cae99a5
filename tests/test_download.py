"""The download path, against a local HTTP server on 127.0.0.1 (nothing leaves the machine)."""

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipeline.download import DownloadError, download
from pipeline.io import InputError
from pipeline.stages import prepare, raw

BODY = (
    "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
    + "".join(
        f"{i}\t{2 * i}\t{2 * i + 1}\tHow do I learn topic {i} quickly?\t"
        f"What is the fastest way to learn topic {i}?\t{i % 2}\n"
        for i in range(50)
    )
).encode()
SHA = hashlib.sha256(BODY).hexdigest()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        if self.path == "/drop":
            self.wfile.write(BODY[: len(BODY) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(BODY)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_download_verifies_checksum_and_moves_into_place(server, tmp_path):
    dest = tmp_path / "raw" / "quora.tsv"
    assert download(f"{server}/ok", dest, SHA) == SHA
    assert dest.read_bytes() == BODY
    assert list(dest.parent.iterdir()) == [dest]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    dest = tmp_path / "quora.tsv"
    with pytest.raises(DownloadError, match="checksum mismatch.*by hand.*data.source=demo"):
        download(f"{server}/ok", dest, "0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_connection_refused_leaves_nothing(tmp_path):
    dest = tmp_path / "quora.tsv"
    with pytest.raises(DownloadError, match="failed.*Download .* by hand"):
        download(f"http://127.0.0.1:{free_port()}/x", dest, SHA, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_connection_dropped_midway_leaves_nothing(server, tmp_path):
    dest = tmp_path / "quora.tsv"
    with pytest.raises(DownloadError, match="failed"):
        download(f"{server}/drop", dest, SHA, timeout=5)
    assert list(tmp_path.iterdir()) == []


def test_raw_stage_downloads_the_release_for_prepare(server, params):
    params["data"].update(source="quora", url=f"{server}/ok", sha256=SHA, expected_rows=50)
    manifest = raw.run(params)
    assert manifest["sha256"] == SHA and manifest["source"] == f"{server}/ok"
    report = prepare.run(params)
    assert report["sha256"] == SHA and report["rows_read"] == 50


def test_prepare_rejects_a_truncated_release(server, params):
    params["data"].update(source="quora", url=f"{server}/ok", sha256=None, expected_rows=404290)
    raw.run(params)
    with pytest.raises(InputError, match="expected 404290 rows"):
        prepare.run(params)
