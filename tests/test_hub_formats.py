"""Published weights that are not weight files (issue #18 item 6), and the Hugging Face branch (issue #17 item
4), against a loopback server. Before: an HTML page served with status 200, or a download without
Content-Length that was cut short, was stored in the cache under the real name, and every later
`pretrained=True` failed on it without saying to delete it."""
import io
import json
import os
import pickle
import re
import socket
import struct
import sys
import types
import zipfile
from http.server import BaseHTTPRequestHandler

import pytest
from _loopback import isolate, serve

from mindghost import hub
from mindghost.hub import PretrainedError, WeightSource


def _torch_zip(n: int = 200_000) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle.dumps({"step": 1}, protocol=2))
        z.writestr("archive/data/0", os.urandom(n))
    return buf.getvalue()


def _ckpt_bytes(tmp_dir: str) -> bytes:
    import numpy as np

    import mindspore as ms

    path = os.path.join(tmp_dir, "w.ckpt")
    ms.save_checkpoint([{"name": "conv.weight", "data": ms.Tensor(np.ones((64, 64), np.float32))},
                        {"name": "fc.bias", "data": ms.Tensor(np.zeros(10, np.float32))}], path)
    with open(path, "rb") as f:
        return f.read()


PTH = _torch_zip()
HTML = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body>Please log in</body></html>\n" * 20
BODIES = {"/good.pth": PTH, "/login.pth": HTML, "/cut.pth": PTH[: len(PTH) // 2]}


class _Handler(BaseHTTPRequestHandler):
    """HTTP/1.0 without Content-Length: the body ends where the connection closes (a cut is invisible)."""

    requests = []

    def do_GET(self):  # noqa: N802
        _Handler.requests.append(self.path)
        body = BODIES.get(re.sub(r"^/timm/[^/]+/resolve/[^/]+", "", self.path).replace("/pytorch_model.bin",
                                                                                     "/good.pth"))
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if body is HTML else "application/octet-stream")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    with serve(_Handler) as url:
        yield url


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    isolate(monkeypatch, tmp_path)
    _Handler.requests = []
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # the urllib path unless a test installs a stub


def _src(url: str, name: str = "w.pth", fmt: str = "pth") -> WeightSource:
    return WeightSource(name, url, fmt, "timm")


def _cache(tmp_path):
    return tmp_path / "cache"


@pytest.mark.parametrize("path, why", [("/login.pth", "it is an HTML page, not weights"),
                                       ("/cut.pth", "the PyTorch reader cannot read it")])
def test_html_page_or_cut_download_never_gets_the_real_name(server, tmp_path, path, why):
    with pytest.raises(PretrainedError) as info:
        hub.fetch(_src(server + path), timeout=5)
    assert "is not a pth weight file" in str(info.value) and why in str(info.value)
    cache = _cache(tmp_path)
    assert not os.path.exists(cache / "w.pth") and not [f for f in os.listdir(cache) if f.endswith(".part")]


def test_cut_ckpt_download_is_refused_and_a_whole_one_kept(tmp_path, monkeypatch):
    ckpt = _ckpt_bytes(str(tmp_path))
    monkeypatch.setitem(BODIES, "/w.ckpt", ckpt)
    monkeypatch.setitem(BODIES, "/cut.ckpt", ckpt[: len(ckpt) - 100])
    with serve(_Handler) as url:
        with pytest.raises(PretrainedError, match="not a ckpt weight file: an entry at byte .* runs past the end"):
            hub.fetch(_src(url + "/cut.ckpt", "w.ckpt", "ckpt"), timeout=5)
        path = hub.fetch(_src(url + "/w.ckpt", "w.ckpt", "ckpt"), timeout=5)
    assert open(path, "rb").read() == ckpt


def test_cached_file_that_does_not_load_is_set_aside_and_fetched_again(server, tmp_path):
    cache = _cache(tmp_path)
    cache.mkdir()
    (cache / "w.pth").write_bytes(HTML)  # what an earlier version stored
    path = hub.fetch(_src(server + "/good.pth"), timeout=5)
    assert open(path, "rb").read() == PTH and _Handler.requests == ["/good.pth"]
    assert (cache / "w.pth.bad").read_bytes() == HTML


def test_cached_file_that_does_not_load_offline_names_the_file_to_remove(tmp_path):
    cache = _cache(tmp_path)
    cache.mkdir()
    (cache / "w.pth").write_bytes(PTH[:1000])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(PretrainedError) as info:
        hub.fetch(_src(f"http://127.0.0.1:{port}/w.pth"), timeout=5)
    assert f"rm '{cache / 'w.pth.bad'}'" in str(info.value)


def test_mirror_file_that_does_not_load_names_the_file(server, tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "w.pth").write_bytes(HTML)
    with pytest.raises(PretrainedError) as info:
        hub.fetch(_src(server + "/good.pth"), mirror_dir=str(mirror), timeout=5)
    msg = str(info.value)
    assert f"'{mirror / 'w.pth'}' does not load as a pth file" in msg and f"rm '{mirror / 'w.pth'}'" in msg
    assert _Handler.requests == [] and (mirror / "w.pth").exists()  # a shared mirror is never changed


def test_safetensors_header_check(tmp_path):
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    good = struct.pack("<Q", len(header)) + header + b"\0" * 16
    src = WeightSource("w.safetensors", "https://example.invalid/w.safetensors", "ckpt", "timm")
    for body, problem in ((good, ""), (good[:-4], "truncated or padded"), (HTML, "HTML page")):
        (tmp_path / "w.safetensors").write_bytes(body)
        assert problem in hub.format_problem(str(tmp_path / "w.safetensors"), src)
        assert bool(hub.format_problem(str(tmp_path / "w.safetensors"), src)) == bool(problem)


# ---- Hugging Face sources: huggingface_hub.hf_hub_download when installed, our downloader otherwise
def _hf_source(server: str) -> WeightSource:
    return WeightSource("timm-ghostnet_100.in1k.bin", f"{server}/timm/ghostnet_100.in1k/resolve/abc123/"
                        "pytorch_model.bin", "pth", "timm")


@pytest.fixture
def loopback_is_hf(monkeypatch, server):
    """Treat the loopback server's URLs as huggingface.co ones (no network here)."""
    monkeypatch.setattr(hub, "_HF_URL", re.compile(re.escape(server) + r"/(?P<repo>[^/]+/[^/]+)/resolve/"
                                                   r"(?P<revision>[^/]+)/(?P<file>.+)$"))


def _stub_hub(monkeypatch, body: bytes):
    calls = []

    def hf_hub_download(repo_id, filename, revision=None, local_dir=None, **kwargs):
        calls.append({"repo_id": repo_id, "filename": filename, "revision": revision, "local_dir": local_dir})
        os.makedirs(local_dir, exist_ok=True)
        path = os.path.join(local_dir, filename)
        with open(path, "wb") as f:
            f.write(body)
        return path

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=hf_hub_download))
    return calls


def test_hf_source_uses_huggingface_hub_when_installed(server, tmp_path, monkeypatch, loopback_is_hf):
    calls = _stub_hub(monkeypatch, PTH)
    path = hub.fetch(_hf_source(server), timeout=5)
    assert calls == [{"repo_id": "timm/ghostnet_100.in1k", "filename": "pytorch_model.bin", "revision": "abc123",
                      "local_dir": str(_cache(tmp_path) / ".hf")}]
    assert path == str(_cache(tmp_path) / "timm-ghostnet_100.in1k.bin") and open(path, "rb").read() == PTH
    assert _Handler.requests == []  # not our downloader


def test_hf_download_is_verified_too(server, tmp_path, monkeypatch, loopback_is_hf):
    _stub_hub(monkeypatch, HTML)
    with pytest.raises(PretrainedError, match="it is an HTML page"):
        hub.fetch(_hf_source(server), timeout=5)
    assert not os.path.exists(_cache(tmp_path) / "timm-ghostnet_100.in1k.bin")


def test_hf_source_falls_back_to_our_downloader_without_huggingface_hub(server, tmp_path, loopback_is_hf):
    path = hub.fetch(_hf_source(server), timeout=5)  # sys.modules['huggingface_hub'] = None: ImportError
    assert open(path, "rb").read() == PTH and _Handler.requests == ["/timm/ghostnet_100.in1k/resolve/abc123/"
                                                                    "pytorch_model.bin"]
