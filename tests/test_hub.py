"""mindghost.hub against a throw-away HTTP server on 127.0.0.1: good, corrupt, truncated and missing files, mirror
and cache hits without network, the offline message, and that no partial file is ever left behind.

Nothing here leaves the loopback interface; "offline" is a port on 127.0.0.1 that nobody listens on."""
import hashlib
import logging
import os
import socket
from http.server import BaseHTTPRequestHandler

import pytest
from _loopback import isolate, serve  # noqa: E402

from mindghost import hub
from mindghost.hub import ENV_CACHE_ROOT, ENV_MIRROR, ENV_WEIGHTS_CACHE, PretrainedError, WeightSource


def _torch_zip(n: int) -> bytes:
    """A file the torch-free .pth reader accepts (zip layout: data.pkl + one storage of `n` random bytes)."""
    import io
    import pickle
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"step": 1}, protocol=2))
        z.writestr("archive/data/0", os.urandom(n))
    return buf.getvalue()


PAYLOAD = _torch_zip(300_000)  # spans several reads and progress steps; parses as a .pth (hub.format_problem)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()
CORRUPT = bytes([PAYLOAD[0] ^ 0xFF]) + PAYLOAD[1:]  # same length, one byte flipped


class _Handler(BaseHTTPRequestHandler):
    requests = []  # paths asked for, to prove that cache and mirror hits stay off the network

    def do_GET(self):  # noqa: N802  (http.server's naming)
        _Handler.requests.append(self.path)
        if self.path.endswith("/good.bin"):
            self._send(PAYLOAD, len(PAYLOAD))
        elif self.path.endswith("/corrupt.bin"):
            self._send(CORRUPT, len(CORRUPT))
        elif self.path.endswith("/truncated.bin"):
            # Announce the whole file, send 40% of it, close: what a dropped connection looks like to the client.
            self.close_connection = True
            self._send(PAYLOAD[: len(PAYLOAD) * 2 // 5], len(PAYLOAD))
        else:
            self.send_error(404, "Not Found")

    def _send(self, body: bytes, length: int):
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture(scope="module")
def server():
    with serve(_Handler) as url:
        yield url


@pytest.fixture
def closed_port_url():
    """A URL on 127.0.0.1 whose port is not listening (connection refused): the offline case, kept local."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A private cache per test, no mirror, no proxy (a proxy from the environment must not see loopback calls)."""
    isolate(monkeypatch, tmp_path)
    _Handler.requests.clear()
    return tmp_path


def _source(url: str, name: str = "w.pth", sha256=PAYLOAD_SHA, size=None) -> WeightSource:
    return WeightSource(name, url, "pth", "timm", sha256=sha256, size=size)


def _files(folder) -> list:
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.stack
def test_good_download_is_verified_cached_and_reused_without_network(server, closed_port_url, caplog):
    caplog.set_level(logging.INFO, logger="mindghost")
    path = hub.fetch(_source(server + "/good.bin"), timeout=5)
    assert path == os.path.join(hub.cache_dir(), "w.pth")
    with open(path, "rb") as f:
        assert f.read() == PAYLOAD
    assert _files(hub.cache_dir()) == ["w.pth"]  # the temporary .part file was renamed, not copied
    assert any("downloading w.pth" in r.getMessage() and "%" in r.getMessage() for r in caplog.records), \
        "without a terminal, progress must be logged"
    # Second call: the same file, served from the cache although its URL is now unreachable.
    again = hub.fetch(_source(closed_port_url + "/good.bin"), timeout=5)
    assert again == path and _Handler.requests == ["/good.bin"]


def test_wrong_checksum_download_is_refused_and_nothing_kept(server):
    with pytest.raises(PretrainedError) as info:
        hub.fetch(_source(server + "/corrupt.bin"), progress=False, timeout=5)
    msg = str(info.value)
    assert "checksum mismatch" in msg and PAYLOAD_SHA in msg and hashlib.sha256(CORRUPT).hexdigest() in msg
    assert _files(hub.cache_dir()) == []


def test_truncated_download_is_refused_even_without_a_checksum(server):
    # sha256=None: only the byte count against Content-Length can catch the cut-off transfer.
    with pytest.raises(PretrainedError) as info:
        hub.fetch(_source(server + "/truncated.bin", sha256=None), progress=False, timeout=5)
    msg = str(info.value)
    assert "truncated" in msg and f"{len(PAYLOAD):,}" in msg
    assert _files(hub.cache_dir()) == []


def test_wrong_size_is_refused(server):
    src = _source(server + "/good.bin", sha256=None, size=len(PAYLOAD) + 1)
    with pytest.raises(PretrainedError, match="published file has"):
        hub.fetch(src, progress=False, timeout=5)
    assert _files(hub.cache_dir()) == []


def test_http_404_names_file_url_and_folder(server):
    src = _source(server + "/gone/w.pth")
    with pytest.raises(PretrainedError) as info:
        hub.fetch(src, progress=False, timeout=5)
    msg = str(info.value)
    assert "HTTP 404" in msg and "w.pth" in msg and src.url in msg and ENV_MIRROR in msg and hub.cache_dir() in msg
    assert _files(hub.cache_dir()) == []


def test_offline_error_names_file_url_and_mirror_folder(closed_port_url, tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    src = _source(closed_port_url + "/ghostnet_x.ckpt", name="ghostnet_x.ckpt")
    with pytest.raises(PretrainedError) as info:
        hub.fetch(src, mirror_dir=str(mirror), progress=False, timeout=5)
    msg = str(info.value)
    assert "no connection" in msg and "ghostnet_x.ckpt" in msg and src.url in msg
    assert f"into the mirror folder {mirror}" in msg
    assert _files(hub.cache_dir()) == []


@pytest.mark.parametrize("how", ["argument", "env"])
def test_mirror_hit_needs_no_network(closed_port_url, tmp_path, monkeypatch, how):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "w.pth").write_bytes(PAYLOAD)
    if how == "env":
        monkeypatch.setenv(ENV_MIRROR, str(mirror))
    path = hub.fetch(_source(closed_port_url + "/w.pth"), mirror_dir=str(mirror) if how == "argument" else None)
    assert path == str(mirror / "w.pth")
    assert _files(hub.cache_dir()) == []  # a mirror is read in place, not copied


@pytest.mark.parametrize("where", ["mirror", "cache"])
def test_wrong_local_file_is_refused_with_both_checksums(server, tmp_path, monkeypatch, where):
    folder = tmp_path / "mirror" if where == "mirror" else tmp_path / "cache"
    folder.mkdir()
    (folder / "w.pth").write_bytes(CORRUPT)
    if where == "mirror":
        monkeypatch.setenv(ENV_MIRROR, str(folder))
    with pytest.raises(PretrainedError) as info:
        hub.fetch(_source(server + "/good.bin"), timeout=5)
    msg = str(info.value)
    assert PAYLOAD_SHA in msg and hashlib.sha256(CORRUPT).hexdigest() in msg and "rm '" in msg
    assert _Handler.requests == []  # refused, not silently replaced by a download


def test_empty_local_file_is_refused_even_without_a_checksum(closed_port_url, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "w.pth").write_bytes(b"")
    with pytest.raises(PretrainedError, match="empty"):
        hub.fetch(_source(closed_port_url + "/w.pth", sha256=None))


def test_env_vars_move_the_cache(server, tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_WEIGHTS_CACHE, str(tmp_path / "a"))
    assert hub.fetch(_source(server + "/good.bin"), progress=False, timeout=5) == str(tmp_path / "a" / "w.pth")
    monkeypatch.delenv(ENV_WEIGHTS_CACHE)
    monkeypatch.setenv(ENV_CACHE_ROOT, str(tmp_path / "root"))
    assert hub.cache_dir() == str(tmp_path / "root" / "weights")
    assert hub.fetch(_source(server + "/good.bin"), progress=False, timeout=5) == str(tmp_path / "root" / "weights"
                                                                                       / "w.pth")


def test_missing_mirror_folder_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_MIRROR, str(tmp_path / "nope"))
    with pytest.raises(PretrainedError, match=ENV_MIRROR):
        hub.mirror_dirs()


def test_fetch_pretrained_prefers_any_local_copy_then_falls_through_with_a_warning(server, tmp_path, monkeypatch,
                                                                                   caplog):
    first = _source(server + "/good.bin", name="first.pth")
    second = _source(server + "/good.bin", name="second.pth")
    monkeypatch.setitem(hub.WEIGHTS, "fake_net", (first, second))
    # The second file is in the mirror: it wins over downloading the first, and the network is not used.
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "second.pth").write_bytes(PAYLOAD)
    assert hub.fetch_pretrained("fake_net", mirror_dir=str(mirror)) == (str(mirror / "second.pth"), second)
    assert _Handler.requests == []
    # Nothing local, the first source is gone: the second is downloaded and the failure is logged, not hidden.
    gone = _source(server + "/gone.pth", name="gone.pth")
    monkeypatch.setitem(hub.WEIGHTS, "fake_net", (gone, second))
    caplog.set_level(logging.WARNING, logger="mindghost")
    path, src = hub.fetch_pretrained("fake_net", progress=False, timeout=5)
    assert src is second and path == os.path.join(hub.cache_dir(), "second.pth")
    assert any("gone.pth" in r.getMessage() and "HTTP 404" in r.getMessage() for r in caplog.records)


def test_fetch_pretrained_lists_every_source_when_all_fail(closed_port_url, monkeypatch):
    a = _source(closed_port_url + "/a.ckpt", name="a.ckpt")
    b = _source(closed_port_url + "/b.pth", name="b.pth")
    monkeypatch.setitem(hub.WEIGHTS, "fake_net", (a, b))
    with pytest.raises(PretrainedError) as info:
        hub.fetch_pretrained("fake_net", progress=False, timeout=5)
    msg = str(info.value)
    assert "fake_net" in msg and all(s.filename in msg and s.url in msg for s in (a, b)) and ENV_MIRROR in msg


def test_unknown_model_names_the_models_with_weights():
    with pytest.raises(PretrainedError) as info:
        hub.sources_for("ghostnet_999")
    assert "ghostnet_100" in str(info.value) and "--ckpt_path" in str(info.value)


@pytest.mark.parametrize("bad", [dict(filename="a/b.pth"), dict(format="onnx"), dict(publisher="me"),
                                 dict(sha256="ABC"), dict(url="ftp://x/y"), dict(size=0)])
def test_weight_source_rejects_bad_fields(bad):
    fields = dict(filename="w.pth", url="https://example.invalid/w.pth", format="pth", publisher="timm")
    fields.update(bad)
    with pytest.raises(PretrainedError, match=next(iter(bad))):
        WeightSource(**fields)


def test_table_names_registered_models_with_unique_files():
    from mindghost.models import list_models

    unregistered = sorted(set(hub.WEIGHTS) - set(list_models()))
    assert unregistered == []
    names = [s.filename for sources in hub.WEIGHTS.values() for s in sources]
    assert len(names) == len(set(names))
    assert all(sources for sources in hub.WEIGHTS.values())
