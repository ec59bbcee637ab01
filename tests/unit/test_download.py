"""The download path against a real HTTP server on loopback serving the official file."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from privadx.common.data.catalog import BASE_URL_ENV, dataset_info
from privadx.common.data.checksum import file_md5
from privadx.common.data.download import fetch_dataset
from privadx.common.errors import DownloadError


class _Server:
    """Serves ``files`` with HTTP range support; can cut the first response short."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.cut_after: int | None = None
        self.requests: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/").split("?")[0]
                body = outer.files.get(name)
                outer.requests.append(self.headers.get("Range"))
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                chunk = body[start:]
                self.send_header("Content-Length", str(len(chunk)))
                self.end_headers()
                if outer.cut_after is not None:
                    limit, outer.cut_after = outer.cut_after, None
                    self.wfile.write(chunk[:limit])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(chunk)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(breast_npz: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[_Server]:
    srv = _Server({"breastmnist.npz": breast_npz.read_bytes()})
    monkeypatch.setenv(BASE_URL_ENV, srv.url)
    yield srv
    srv.close()


def test_fetch_downloads_and_verifies(server: _Server, tmp_path: Path) -> None:
    info = dataset_info("breastmnist")
    path = fetch_dataset(info, tmp_path)
    assert path == tmp_path / "breastmnist.npz"
    assert file_md5(path) == info.md5[28]
    assert not (tmp_path / "breastmnist.npz.part").exists()


def test_interrupted_download_resumes_with_range(server: _Server, tmp_path: Path) -> None:
    info = dataset_info("breastmnist")
    server.cut_after = 200_000
    with pytest.raises(DownloadError):
        fetch_dataset(info, tmp_path, timeout=5)
    part = tmp_path / "breastmnist.npz.part"
    assert part.stat().st_size == 200_000
    path = fetch_dataset(info, tmp_path)
    assert server.requests[-1] == "bytes=200000-"
    assert file_md5(path) == info.md5[28]


def test_corrupt_download_is_rejected_and_removed(server: _Server, tmp_path: Path) -> None:
    body = bytearray(server.files["breastmnist.npz"])
    body[1000] ^= 0xFF
    server.files["breastmnist.npz"] = bytes(body)
    with pytest.raises(DownloadError, match="MD5"):
        fetch_dataset(dataset_info("breastmnist"), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_http_error_is_reported(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_dataset(dataset_info("pneumoniamnist"), tmp_path)


def test_offline_gives_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    monkeypatch.setenv(BASE_URL_ENV, f"http://127.0.0.1:{port}")
    with pytest.raises(DownloadError, match="offline"):
        fetch_dataset(dataset_info("breastmnist"), tmp_path, timeout=5)
