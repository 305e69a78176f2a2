"""A broken stand-in for a platform's gateway, for proving that the security
suite's checks can fail: a small reverse proxy on 127.0.0.1 in front of a real
gateway (HTTPS, the platform's CA), which passes every request through except
for the defects it is armed with:

- ``tail-refused``: tenant B's tail is answered 403;
- ``tail-closed``: tenant B's tail is answered 200 and ended at once;
- ``cross-metadata``, ``cross-exemplars``, ``cross-logsql``, ``cross-log-rules``:
  the metadata API (the exemplars API, LogsQL's query, the log rule evaluator's
  rules) answers with tenant A's data whoever asks (it goes on with A's token);
- ``tenant-blind-cache``: GET answers are cached by path and query, without the
  tenant, and a later ask of the same URL by anyone gets the cached answer;
  with ``cache-logs-only`` only the LogsQL paths' answers, with ``cache-b-only``
  only tenant B's answers (so that only "B asks, then A" can see it);
- ``echo-token``: every answer of 400 or more echoes the caller's
  ``Authorization`` header in its body.

Real HTTP on both sides; nothing in the code under test is patched. The proxy
speaks plain HTTP (its target file's gateway is ``http://``).
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests

_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
        "transfer-encoding", "upgrade", "content-length", "host", "content-encoding"}
STREAMING = ("/select/logsql/tail",)
CROSS_PATHS = {"cross-metadata": "/prometheus/api/v1/metadata", "cross-exemplars": "/prometheus/api/v1/query_exemplars",
               "cross-logsql": "/select/logsql/query", "cross-log-rules": "/vmalert/api/v1/rules"}


class StandinGateway:
    """The proxy: ``StandinGateway(upstream, ca_file, tokens, defects).start()``; ``url``; ``stop()``.
    ``tokens``: tenant name -> token (A is the first, B the second)."""

    def __init__(self, upstream: str, ca_file: str | None, tokens: dict[str, str], defects=()):
        self.upstream = upstream.rstrip("/")
        self.verify = ca_file or True
        names = list(tokens)
        self.token_a, self.token_b = tokens[names[0]], tokens[names[1]]
        self.defects = set(defects)
        self.cache: dict[str, tuple[int, dict, bytes]] = {}
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> "StandinGateway":
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy.handle(self)

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # -- one request ---------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0))
        path = h.path.split("?", 1)[0]
        auth = h.headers.get("Authorization", "")
        is_b = auth == f"Bearer {self.token_b}"
        if path in STREAMING and is_b and "tail-refused" in self.defects:
            return self._answer(h, 403, {"Content-Type": "text/plain"}, b"403 Forbidden: no tail for you\n")
        if path in STREAMING and is_b and "tail-closed" in self.defects:
            return self._answer(h, 200, {"Content-Type": "application/stream+json"}, b"")
        headers = {k: v for k, v in h.headers.items() if k.lower() not in _HOP}
        headers["Accept-Encoding"] = "identity"
        if auth and any(CROSS_PATHS[d] == path for d in self.defects if d in CROSS_PATHS):
            headers["Authorization"] = f"Bearer {self.token_a}"
        cacheable = (h.command == "GET" and path not in STREAMING and "tenant-blind-cache" in self.defects
                     and (path.startswith("/select/logsql/") or "cache-logs-only" not in self.defects))
        if cacheable and h.path in self.cache:
            return self._answer(h, *self.cache[h.path])
        r = requests.request(h.command, self.upstream + h.path, data=body or None, headers=headers,
                             verify=self.verify, stream=True, timeout=(10, 600), allow_redirects=False)
        out = {k: v for k, v in r.headers.items() if k.lower() not in _HOP}
        if path in STREAMING and r.status_code == 200:
            return self._stream(h, r, out)
        data = r.raw.read()
        if r.status_code >= 400 and "echo-token" in self.defects:
            data += f"\nyou sent: Authorization: {auth}\n".encode()
        if cacheable and r.status_code == 200 and (is_b or "cache-b-only" not in self.defects):
            self.cache[h.path] = (r.status_code, out, data)
        self._answer(h, r.status_code, out, data)

    @staticmethod
    def _answer(h, status: int, headers: dict, data: bytes) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(data)

    @staticmethod
    def _stream(h, r: requests.Response, headers: dict) -> None:
        h.send_response(200)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            for chunk in r.raw.stream(1024, decode_content=False):
                if chunk:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    h.wfile.flush()
            h.wfile.write(b"0\r\n\r\n")
        except OSError:
            pass  # the client closed its tail
        finally:
            r.close()
