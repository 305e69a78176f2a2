"""The few Kubernetes API calls the deployer makes: server-side apply, get,
list and delete of the kinds it renders, and a bounded ``/version`` check,
on the connection the ``kubernetes`` client sets up from a kubeconfig (TLS,
client certificates, bearer tokens, exec plugins). Every failure is one
:class:`ApiError` line naming the server or the object; nothing is retried
here, since callers poll with deadlines of their own.
"""

from __future__ import annotations

import json
import re
import threading
from urllib.parse import urlencode, urlsplit

from ...errors import ConfigError, StackproofError, one_line

# the field manager of every apply (and the managed-by label of every object)
FIELD_MANAGER = "stackproof"

# (apiVersion, kind) -> (path prefix, plural, namespaced)
RESOURCES = {
    ("v1", "Namespace"): ("/api/v1", "namespaces", False),
    ("v1", "ServiceAccount"): ("/api/v1", "serviceaccounts", True),
    ("v1", "ConfigMap"): ("/api/v1", "configmaps", True),
    ("v1", "Secret"): ("/api/v1", "secrets", True),
    ("v1", "Service"): ("/api/v1", "services", True),
    ("v1", "Pod"): ("/api/v1", "pods", True),
    ("v1", "PersistentVolumeClaim"): ("/api/v1", "persistentvolumeclaims", True),
    ("v1", "Node"): ("/api/v1", "nodes", False),
    ("apps/v1", "StatefulSet"): ("/apis/apps/v1", "statefulsets", True),
}


class ApiError(StackproofError):
    def __init__(self, message: str, status: int = 0):
        super().__init__(message)
        self.status = status


class KubeApi:
    """The few calls the deployer makes, on the connection (TLS, client
    certificates, bearer tokens, exec plugins) that
    ``kubernetes.config.new_client_from_config_dict`` sets up, for the
    kubeconfig's ``context`` (default: its current context). No retries:
    callers poll with deadlines of their own."""

    def __init__(self, kubeconfig: dict, timeout: float = 10.0, context: str | None = None):
        try:
            from kubernetes import config as kube_config
        except ImportError:  # pragma: no cover - the 'cloud' extra
            raise StackproofError("the kubernetes package is missing: pip install 'stackproof[cloud]'") from None
        if not isinstance(kubeconfig, dict) or not kubeconfig.get("clusters"):
            raise ConfigError("kubeconfig: expected a mapping with 'clusters', 'users' and 'contexts'")
        names = [c.get("name") for c in kubeconfig.get("contexts") or [] if isinstance(c, dict)]
        if context is not None and context not in names:
            raise ConfigError(f"kubeconfig: no context {context!r} (contexts: {', '.join(map(str, names)) or 'none'})")
        if context is None and not kubeconfig.get("current-context"):
            raise ConfigError(f"kubeconfig: no current-context; name one with --context "
                              f"(contexts: {', '.join(map(str, names)) or 'none'})")
        self.context = context or kubeconfig["current-context"]
        try:
            self.client = kube_config.new_client_from_config_dict(kubeconfig, context=context)
        except Exception as exc:  # the loader's errors name the bad field
            raise ConfigError(f"kubeconfig: {one_line(exc)}") from None
        self.server = self.client.configuration.host.rstrip("/")
        self.timeout = timeout

    def _headers(self, content_type: str | None) -> dict:
        headers = {"Accept": "application/json", "User-Agent": "stackproof"}
        if content_type:
            headers["Content-Type"] = content_type
        # refreshes an exec plugin's token when it expires
        auth = self.client.configuration.auth_settings().get("BearerToken")
        if auth and auth.get("value"):
            headers[auth.get("key", "authorization")] = auth["value"]
        return headers

    def request(self, method: str, path: str, *, query: dict | None = None, body: dict | None = None,
                content_type: str | None = None, timeout: float | None = None,
                ok: tuple[int, ...] = (200, 201), allow: tuple[int, ...] = ()) -> tuple[int, bytes]:
        """One request; a status in ``ok`` or ``allow`` is returned, anything
        else raises :class:`ApiError` with the server's one-line reason."""
        import urllib3

        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        t = timeout or self.timeout
        try:
            r = self.client.rest_client.pool_manager.request(
                method, url, body=json.dumps(body).encode() if body is not None else None,
                headers=self._headers(content_type), timeout=urllib3.Timeout(connect=min(t, 5.0), read=t),
                retries=False, preload_content=True)
        except Exception as exc:  # urllib3's connection errors: one line, no traceback
            raise ApiError(f"cannot reach the Kubernetes API at {self.server}: "
                           f"{self.reason(exc, t, urlsplit(self.server).hostname)}") from None
        if r.status in ok or r.status in allow:
            return r.status, r.data
        raise ApiError(f"{method} {path}: HTTP {r.status} {self.status_message(r.data) or r.reason}", r.status)

    def json(self, method: str, path: str, **kw) -> tuple[int, dict]:
        status, data = self.request(method, path, **kw)
        try:
            return status, json.loads(data) if data else {}
        except ValueError:
            return status, {}

    @staticmethod
    def status_message(data: bytes) -> str:
        try:
            return one_line(json.loads(data).get("message", ""))
        except (ValueError, AttributeError):
            return one_line(data.decode(errors="replace"), 200)

    @staticmethod
    def reason(exc: BaseException, timeout: float, host: str | None = None) -> str:
        """The root cause of a failed connection, in a few words."""
        seen = exc
        for _ in range(5):
            inner = getattr(seen, "reason", None)
            if not isinstance(inner, BaseException):
                break
            seen = inner
        text = str(seen)
        name = type(seen).__name__
        if "NameResolution" in name or re.search(r"Name or service not known|nodename nor servname|"
                                                 r"Temporary failure in name resolution|No address associated", text):
            return f"cannot resolve the host name {host}" if host else "cannot resolve the host name"
        if "Timeout" in name or "timed out" in text:
            return f"no answer within {timeout:g}s"
        if "refused" in text.lower():
            return "connection refused"
        if "SSL" in name or "certificate" in text.lower():
            return f"TLS: {one_line(text, 160)}"
        m = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        return one_line(m.group(1), 160) if m else f"{name}: {one_line(text, 160)}"

    def check(self) -> dict:
        """GET /version with a short bounded timeout, or one line saying why not.
        The bound holds for name resolution too, which no socket timeout covers."""
        bound = min(self.timeout, 5.0)
        answer: dict = {}

        def ask() -> None:
            try:
                answer["ok"] = self.request("GET", "/version", timeout=bound, allow=(401, 403))
            except BaseException as exc:  # handed to the caller's thread
                answer["error"] = exc

        asker = threading.Thread(target=ask, name="stackproof-kube-version", daemon=True)
        asker.start()
        asker.join(bound + 1.0)
        if "error" in answer:
            raise answer["error"]
        if "ok" not in answer:
            raise ApiError(f"cannot reach the Kubernetes API at {self.server}: no answer within {bound:g}s")
        status, data = answer["ok"]
        if status != 200:
            raise ApiError(f"the Kubernetes API at {self.server} refused stackproof's credentials "
                           f"(HTTP {status} on /version)", status)
        try:
            return json.loads(data)
        except ValueError:
            raise ApiError(f"cannot reach the Kubernetes API at {self.server}: /version did not answer JSON "
                           f"(not a Kubernetes API server?)") from None

    # -- objects -----------------------------------------------------------
    @staticmethod
    def path(api_version: str, kind: str, name: str, namespace: str | None = None) -> str:
        prefix, plural, namespaced = RESOURCES[(api_version, kind)]
        if namespaced:
            return f"{prefix}/namespaces/{namespace}/{plural}/{name}"
        return f"{prefix}/{plural}/{name}"

    def apply(self, manifest: dict) -> dict:
        """Server-side apply: the server merges, validates and owns the result."""
        meta = manifest["metadata"]
        path = self.path(manifest["apiVersion"], manifest["kind"], meta["name"], meta.get("namespace"))
        return self._patch(path, f"applying {manifest['kind']} {meta.get('namespace', '') and meta['namespace'] + '/'}"
                           f"{meta['name']}", manifest, "application/apply-patch+yaml",
                           query={"fieldManager": FIELD_MANAGER, "force": "true"})

    def _patch(self, path: str, doing: str, body: dict, content_type: str, query: dict | None = None) -> dict:
        """A PATCH whose refusal by the server says what was being done (``doing``) and the server's reason."""
        try:
            return self.json("PATCH", path, query=query, body=body, content_type=content_type)[1]
        except ApiError as exc:
            if exc.status:
                raise ApiError(f"{doing} failed: {str(exc).split(': ', 1)[-1]}", exc.status) from None
            raise

    def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict | None:
        status, obj = self.json("GET", self.path(api_version, kind, name, namespace), allow=(404,))
        return None if status == 404 else obj

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None,
               grace_seconds: int | None = None) -> bool:
        body: dict = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        status, _ = self.request("DELETE", self.path(api_version, kind, name, namespace), ok=(200, 202),
                                 allow=(404,), body=body, content_type="application/json")
        return status != 404

    def scale(self, api_version: str, kind: str, name: str, namespace: str, replicas: int) -> dict:
        """Set ``spec.replicas`` through the scale subresource (what ``kubectl scale`` does)."""
        return self._patch(self.path(api_version, kind, name, namespace) + "/scale",
                           f"scaling {kind} {namespace}/{name} to {replicas}", {"spec": {"replicas": replicas}},
                           "application/merge-patch+json")

    def merge_patch(self, api_version: str, kind: str, name: str, namespace: str | None, patch: dict) -> dict:
        """A JSON merge patch (RFC 7386) of one object: the keys given are set, a null removes one."""
        return self._patch(self.path(api_version, kind, name, namespace),
                           f"patching {kind} {namespace + '/' if namespace else ''}{name}", patch,
                           "application/merge-patch+json")

    def list(self, path: str, selector: str | None = None) -> list[dict]:
        status, obj = self.json("GET", path, query={"labelSelector": selector} if selector else None, allow=(404,))
        return [] if status == 404 else obj.get("items", [])
