"""A throw-away HTTP server on 127.0.0.1 and a network-free environment, for the published-weights tests
(test_hub.py, test_pretrained.py). Loopback only: nothing here reaches another address."""
import contextlib
import threading
from http.server import ThreadingHTTPServer

from mindghost.hub import ENV_CACHE_ROOT, ENV_MIRROR, ENV_WEIGHTS_CACHE

PROXY_VARS = ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@contextlib.contextmanager
def serve(handler_cls):
    """Run `handler_cls` on a free port of 127.0.0.1 in a thread; yields the base URL, shuts down after."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler_cls)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(timeout=10)


def isolate(monkeypatch, tmp_path) -> None:
    """A private weights cache under `tmp_path`, no mirror folder, and no proxy (one from the environment must
    not see the loopback calls)."""
    for var in PROXY_VARS + (ENV_MIRROR, ENV_CACHE_ROOT):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv(ENV_WEIGHTS_CACHE, str(tmp_path / "cache"))
