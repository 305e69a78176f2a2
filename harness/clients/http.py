"""An HTTP session that authenticates as one tenant and trusts the platform CA.

Every response body it receives is scanned for the known secrets (those of
the platforms the run provisioned or loaded, :func:`harness.leaks.remember`):
a platform whose error page echoes the caller's token is a finding
(:func:`harness.leaks.scan_response`), which the fixtures turn into a failure of
the test that received it."""

from __future__ import annotations

import collections
import threading

import requests

from .. import __version__, leaks
from ..target import Target, Tenant

USER_AGENT = f"stackproof/{__version__}"


class TenantHTTP(requests.Session):
    """``requests.Session`` for one tenant (or anonymous with ``tenant=None``).

    Paths starting with ``/`` are relative to the gateway. The token is never
    part of ``repr``. The last requests of the process (method, path, status;
    never headers) are kept in :attr:`recent`, so that a store found dead can
    be reported with the requests that came just before. Every body received
    (not a streamed one: its reader scans what it reads) is scanned for secrets."""

    recent: "collections.deque[str]" = collections.deque(maxlen=5)
    _recent_lock = threading.Lock()

    def __init__(self, target: Target, tenant: Tenant | None, timeout: float = 30.0):
        super().__init__()
        self.target = target
        self.tenant = tenant
        self.verify = target.verify
        self.default_timeout = timeout
        self.headers["User-Agent"] = USER_AGENT
        if tenant is not None:
            self.headers["Authorization"] = f"Bearer {tenant.token}"

    def request(self, method, url, *args, **kwargs):
        if url.startswith("/"):
            url = self.target.url(url)
        kwargs.setdefault("timeout", self.default_timeout)
        # per request: requests lets REQUESTS_CA_BUNDLE/CURL_CA_BUNDLE override
        # a session's verify, which would drop the platform CA
        kwargs.setdefault("verify", self.verify)
        path = url.split("://", 1)[-1].split("/", 1)[-1].split("?", 1)[0]
        try:
            r = super().request(method, url, *args, **kwargs)
        except requests.RequestException as exc:
            self._remember(f"{method} /{path} -> {type(exc).__name__}")
            raise
        self._remember(f"{method} /{path} -> {r.status_code}")
        if not kwargs.get("stream"):
            scan(r)
        return r

    @classmethod
    def _remember(cls, what: str) -> None:
        with cls._recent_lock:
            cls.recent.append(what)

    def __repr__(self) -> str:
        who = self.tenant.name if self.tenant else "anonymous"
        return f"<TenantHTTP {who} {self.target.gateway_url}>"


def scan(response: requests.Response, data: bytes | None = None) -> None:
    """Scan a response's body (or ``data``, a part of a streamed one) for known secrets."""
    req = response.request
    path = (req.path_url if req is not None else "?").split("?", 1)[0]
    leaks.scan_response(f"{req.method if req is not None else '?'} {path} -> {response.status_code}",
                        response.content if data is None else data)
