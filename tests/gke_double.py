"""A TEST DOUBLE of the GKE v1 REST API and of the GCS JSON API, for stackproof's
own tests only. It is not Google Kubernetes Engine, not Cloud Storage and not an
emulator of either: it keeps a few dicts in memory, answers on loopback over
plain HTTP, and never creates a machine, a Kubernetes API server or a byte of
storage. The real ``google-cloud-container`` and ``google-cloud-storage``
clients talk to it through ``client_options={"api_endpoint": double.url}``.

Implemented (GKE v1, the ``projects/*/locations/*`` forms, JSON bodies in the
camelCase shapes the REST transport sends and parses):

* ``POST   /v1/projects/{p}/locations/{l}/clusters`` -> an Operation (CREATE_CLUSTER);
  node pools only inline in the cluster (``cluster.nodePools``)
* ``GET    /v1/projects/{p}/locations/{l}/clusters`` (``l`` may be ``-``: every location)
* ``GET    /v1/projects/{p}/locations/{l}/clusters/{c}``
* ``DELETE /v1/projects/{p}/locations/{l}/clusters/{c}`` -> an Operation (DELETE_CLUSTER);
  ``400 FAILED_PRECONDITION`` while another operation runs on the cluster, as GKE does
* ``GET    /v1/projects/{p}/locations/{l}/clusters/{c}/nodePools[/{np}]``
* ``GET    /v1/projects/{p}/locations/{l}/operations[/{op}]``

Operations go RUNNING -> DONE after ``polls_to_done`` GETs of that operation.
A cluster carries name, location, status, endpoint (an address of TEST-NET-3),
``masterAuth.clusterCaCertificate`` (base64 PEM of a CA generated per double),
resourceLabels, nodePools, createTime. Failures can be ordered per location
(``fail_in[location] = kind``):

* ``"stockout"``: the create operation ends DONE with GKE's stockout shape
  (``error``, ``statusMessage``, ``detail``, ``clusterConditions[].code =
  GCE_STOCKOUT``, text "Google Compute Engine does not have enough resources
  available to fulfill request") and the cluster is left in status ERROR;
* ``"quota"``: the same with ``GCE_QUOTA_EXCEEDED`` and GKE's "Insufficient
  regional quota" text (canonical code RESOURCE_EXHAUSTED too, on purpose);
* ``"permission"``: the create call itself answers ``403 PERMISSION_DENIED``.

Implemented (GCS JSON API, ``/storage/v1``): bucket insert (409 when taken),
get, list (``project``, ``prefix``, paging with ``maxResults``/``pageToken``),
delete (409 when not empty); object list (paging) and delete. Objects are put
in with :meth:`GKEDouble.put_object` (no upload endpoint).

Not implemented (answers ``501 UNIMPLEMENTED``): everything else, e.g. the
``zones/*`` forms, node pool create/delete/update, cluster update, set-labels,
cancel, server config, IAM; GCS uploads, downloads, object metadata, batch,
bucket patch, ACLs. No authentication is checked: the ``Authorization`` header
is only recorded. Every request is recorded as :class:`Request`
(method, path, query, authorization) in :attr:`GKEDouble.requests`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
_CLUSTER_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")
_ZONE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$")

STOCKOUT_TEXT = ("Try a different location, or try again later: Google Compute Engine does not have "
                 "enough resources available to fulfill request: {location}.")
QUOTA_TEXT = ("Insufficient regional quota to satisfy request: resource \"CPUS\": request requires '8.0' "
              "and is short '4.0'. project has a quota of '24.0' with '4.0' available.")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    authorization: str | None


class _ApiError(Exception):
    def __init__(self, code: int, status: str, message: str, reason: str | None = None):
        super().__init__(message)
        self.code, self.status, self.message, self.reason = code, status, message, reason

    def body(self) -> dict:
        err = {"code": self.code, "message": self.message, "status": self.status}
        if self.reason:
            err["errors"] = [{"message": self.message, "domain": "global", "reason": self.reason}]
        return {"error": err}


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _ca_pem_b64() -> str:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gke-double-ca")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return base64.b64encode(cert.public_bytes(serialization.Encoding.PEM)).decode()


def _check_labels(labels: dict, what: str) -> None:
    for k, v in (labels or {}).items():
        if not _LABEL_KEY.match(k) or not _LABEL_VALUE.match(str(v)):
            raise _ApiError(400, "INVALID_ARGUMENT", f"Invalid {what} label {k!r}: {v!r}", "invalid")


class GKEDouble:
    """Start with ``with GKEDouble() as d:``; point clients at ``d.url``."""

    def __init__(self, polls_to_done: int = 2, gcs_page_size: int = 1000):
        self.polls_to_done = polls_to_done
        self.gcs_page_size = gcs_page_size
        self.fail_in: dict[str, str] = {}
        self.clusters: dict[tuple[str, str, str], dict] = {}  # (project, location, name)
        self.operations: dict[tuple[str, str, str], dict] = {}  # (project, location, op id)
        self.buckets: dict[str, dict] = {}  # name -> resource (+ "_objects")
        self.requests: list[Request] = []
        self.ca_b64 = _ca_pem_b64()
        self._lock = threading.Lock()
        self._ip = 10
        self._server: ThreadingHTTPServer | None = None

    # -- lifecycle ------------------------------------------------------
    def start(self) -> "GKEDouble":
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out in two writes

            def _serve(self):
                double._handle(self)

            do_GET = do_POST = do_DELETE = do_PUT = do_PATCH = _serve

            def log_message(self, *args):  # quiet
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="gke-double", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "GKEDouble":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server, "double not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # -- what tests look at -----------------------------------------------
    def calls(self) -> Counter:
        """Requests by ``"METHOD /path/template"`` (ids replaced by ``*``)."""
        c: Counter = Counter()
        for r in self.requests:
            p = re.sub(r"/(projects|locations|clusters|operations|nodePools|b|o)/[^/]+", r"/\1/*", r.path)
            c[f"{r.method} {p}"] += 1
        return c

    def put_object(self, bucket: str, name: str, data: bytes = b"") -> None:
        with self._lock:
            b = self.buckets[bucket]
            b["_objects"][name] = {"kind": "storage#object", "bucket": bucket, "name": name,
                                   "generation": str(time.time_ns()), "size": str(len(data)),
                                   "timeCreated": _now()}

    def seed_cluster(self, project: str, location: str, name: str, labels: dict | None = None,
                     status: str = "RUNNING") -> dict:
        """A cluster made outside the code under test (e.g. someone else's)."""
        with self._lock:
            c = self._new_cluster(project, location, {"name": name, "resourceLabels": labels or {},
                                                      "nodePools": [{"name": "pool", "initialNodeCount": 1}]})
            c["status"] = status
            return c

    def seed_bucket(self, project: str, name: str, labels: dict | None = None) -> dict:
        with self._lock:
            return self._new_bucket(project, {"name": name, "labels": labels or {}})

    # -- HTTP plumbing ------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        with self._lock:
            self.requests.append(Request(h.command, path, parts.query, h.headers.get("Authorization")))
        try:
            body = json.loads(raw) if raw else {}
            with self._lock:
                code, payload = self._route(h.command, path, query, body)
        except _ApiError as e:
            code, payload = e.code, e.body()
        except json.JSONDecodeError:
            code, payload = 400, _ApiError(400, "INVALID_ARGUMENT", "request body is not JSON").body()
        data = b"" if payload is None else json.dumps(payload).encode()
        h.send_response(code)
        if data:
            h.send_header("Content-Type", "application/json; charset=UTF-8")
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if data:
            h.wfile.write(data)

    def _route(self, method: str, path: str, query: dict, body: dict) -> tuple[int, dict | None]:
        m = re.fullmatch(r"/v1/projects/([^/]+)/locations/([^/]+)/(clusters|operations)(?:/([^/:]+))?"
                         r"(?:/nodePools(?:/([^/:]+))?)?", path)
        if m:
            project, location, kind, ident, pool = m.groups()
            nodepools = path.rstrip("/").split("/")[-1] == "nodePools" or pool is not None
            if kind == "operations" and not nodepools:
                if method == "GET" and ident:
                    return 200, self._get_operation(project, location, ident)
                if method == "GET":
                    return 200, self._list_operations(project, location)
            elif kind == "clusters" and nodepools and ident and method == "GET":
                c = self._cluster(project, location, ident)
                if pool is None:
                    return 200, {"nodePools": c["nodePools"]}
                for np in c["nodePools"]:
                    if np["name"] == pool:
                        return 200, np
                raise _ApiError(404, "NOT_FOUND", f"Not found: node pool {pool!r}.")
            elif kind == "clusters" and not nodepools:
                if method == "POST" and not ident:
                    return 200, self._create_cluster(project, location, body.get("cluster") or {})
                if method == "GET" and not ident:
                    return 200, self._list_clusters(project, location)
                if method == "GET":
                    return 200, self._cluster(project, location, ident)
                if method == "DELETE":
                    return 200, self._delete_cluster(project, location, ident)
        m = re.fullmatch(r"/storage/v1/b(?:/([^/]+)(?:/o(?:/(.+))?)?)?", path)
        if m:
            bucket, obj = m.group(1), m.group(2)
            objects = path.startswith(f"/storage/v1/b/{bucket}/o") if bucket else False
            if not bucket:
                if method == "POST":
                    return 200, self._new_bucket(_q(query, "project"), body)
                if method == "GET":
                    return 200, self._list_buckets(_q(query, "project"), query)
            elif not objects:
                if method == "GET":
                    return 200, _public(self._bucket(bucket))
                if method == "DELETE":
                    b = self._bucket(bucket)
                    if b["_objects"]:
                        raise _ApiError(409, "CONFLICT", "The bucket you tried to delete is not empty.",
                                        "conflict")
                    del self.buckets[bucket]
                    return 204, None
            elif obj is None and method == "GET":
                return 200, self._list_objects(self._bucket(bucket), query)
            elif obj is not None and method == "DELETE":
                b = self._bucket(bucket)
                if b["_objects"].pop(obj, None) is None:
                    raise _ApiError(404, "NOT_FOUND", f"No such object: {bucket}/{obj}", "notFound")
                return 204, None
        raise _ApiError(501, "UNIMPLEMENTED", f"{method} {path} is not implemented by the GKE/GCS test double")

    # -- GKE ------------------------------------------------------------------
    def _new_cluster(self, project: str, location: str, spec: dict) -> dict:
        name = spec.get("name") or ""
        self._ip += 1
        pools = []
        for np in spec.get("nodePools") or []:
            pools.append({**np, "status": "PROVISIONING",
                          "selfLink": f"https://container.googleapis.com/v1/projects/{project}/locations/"
                                      f"{location}/clusters/{name}/nodePools/{np.get('name')}"})
        zonal = bool(_ZONE.match(location))
        c = {
            "name": name, "description": spec.get("description", ""),
            "location": location, "locations": [location] if zonal else [f"{location}-{z}" for z in "abc"],
            "status": "PROVISIONING", "endpoint": f"203.0.113.{self._ip}",
            "masterAuth": {"clusterCaCertificate": self.ca_b64},
            "resourceLabels": dict(spec.get("resourceLabels") or {}), "labelFingerprint": secrets.token_hex(4),
            "nodePools": pools, "createTime": _now(), "currentMasterVersion": "1.33.5-gke.1000",
            "selfLink": f"https://container.googleapis.com/v1/projects/{project}/locations/{location}/clusters/{name}",
        }
        if zonal:
            c["zone"] = location
        self.clusters[(project, location, name)] = c
        return c

    def _new_operation(self, project: str, location: str, kind: str, cluster: str, outcome: dict) -> dict:
        op_id = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(4)}"
        op = {"name": op_id, "location": location, "operationType": kind, "status": "RUNNING",
              "selfLink": f"https://container.googleapis.com/v1/projects/{project}/locations/{location}"
                          f"/operations/{op_id}",
              "targetLink": f"https://container.googleapis.com/v1/projects/{project}/locations/{location}"
                            f"/clusters/{cluster}",
              "startTime": _now()}
        if _ZONE.match(location):
            op["zone"] = location
        self.operations[(project, location, op_id)] = {"op": op, "polls": 0, "outcome": outcome,
                                                       "cluster": (project, location, cluster)}
        return op

    def _create_cluster(self, project: str, location: str, spec: dict) -> dict:
        if not (_ZONE.match(location) or _REGION.match(location)):
            raise _ApiError(400, "INVALID_ARGUMENT", f"Location {location!r} is not a zone or a region.")
        name = spec.get("name") or ""
        if not _CLUSTER_NAME.match(name):
            raise _ApiError(400, "INVALID_ARGUMENT", f"Invalid cluster name {name!r}.")
        pools = spec.get("nodePools") or []
        if not pools or any(int(p.get("initialNodeCount") or 0) < 1 for p in pools):
            raise _ApiError(400, "INVALID_ARGUMENT", "Cluster needs a node pool with initialNodeCount >= 1.")
        _check_labels(spec.get("resourceLabels") or {}, "resource")
        if (project, location, name) in self.clusters:
            raise _ApiError(409, "ALREADY_EXISTS", f"Already exists: projects/{project}/locations/{location}"
                                                   f"/clusters/{name}.")
        kind = self.fail_in.get(location)
        if kind == "permission":
            raise _ApiError(403, "PERMISSION_DENIED", f"Required \"container.clusters.create\" permission(s) "
                                                      f"for \"projects/{project}\".")
        self._new_cluster(project, location, spec)
        outcome = {"status": "RUNNING"}
        if kind == "stockout":
            msg = STOCKOUT_TEXT.format(location=location)
            outcome = {"status": "ERROR", "message": msg, "code": "GCE_STOCKOUT"}
        elif kind == "quota":
            outcome = {"status": "ERROR", "message": QUOTA_TEXT, "code": "GCE_QUOTA_EXCEEDED"}
        return self._new_operation(project, location, "CREATE_CLUSTER", name, outcome)

    def _cluster(self, project: str, location: str, name: str) -> dict:
        c = self.clusters.get((project, location, name))
        if c is None:
            raise _ApiError(404, "NOT_FOUND", f"Not found: projects/{project}/locations/{location}/clusters/{name}.")
        return c

    def _list_clusters(self, project: str, location: str) -> dict:
        return {"clusters": [c for (p, loc, _), c in self.clusters.items()
                             if p == project and (location == "-" or loc == location)]}

    def _running_op(self, key: tuple) -> dict | None:
        for o in self.operations.values():
            if o["cluster"] == key and o["op"]["status"] != "DONE":
                return o["op"]
        return None

    def _delete_cluster(self, project: str, location: str, name: str) -> dict:
        c = self._cluster(project, location, name)
        running = self._running_op((project, location, name))
        if running:
            verb = "creating" if running["operationType"] == "CREATE_CLUSTER" else "deleting"
            raise _ApiError(400, "FAILED_PRECONDITION", f"Operation {running['name']} is currently {verb} cluster "
                                                        f"{name}. Please wait and try again once it is done.")
        c["status"] = "STOPPING"
        return self._new_operation(project, location, "DELETE_CLUSTER", name, {"delete": True})

    def _get_operation(self, project: str, location: str, op_id: str) -> dict:
        o = self.operations.get((project, location, op_id))
        if o is None:
            raise _ApiError(404, "NOT_FOUND", f"Not found: operation {op_id}.")
        op = o["op"]
        if op["status"] != "DONE":
            o["polls"] += 1
            if o["polls"] >= self.polls_to_done:
                self._finish(o)
        return op

    def _finish(self, o: dict) -> None:
        op, outcome = o["op"], o["outcome"]
        op["status"], op["endTime"] = "DONE", _now()
        if outcome.get("delete"):
            self.clusters.pop(o["cluster"], None)
            return
        c = self.clusters.get(o["cluster"])
        if c is None:
            return
        c["status"] = outcome["status"]
        for np in c["nodePools"]:
            np["status"] = outcome["status"]
        if outcome["status"] == "ERROR":
            cond = {"code": outcome["code"], "message": outcome["message"], "canonicalCode": "RESOURCE_EXHAUSTED"}
            c["statusMessage"] = outcome["message"]
            c["conditions"] = [cond]
            op.update({"statusMessage": outcome["message"], "detail": outcome["message"],
                       "error": {"code": 8, "message": outcome["message"]}, "clusterConditions": [cond]})
        else:
            c["currentNodeCount"] = sum(int(p.get("initialNodeCount") or 0) for p in c["nodePools"])

    def _list_operations(self, project: str, location: str) -> dict:
        return {"operations": [o["op"] for (p, loc, _), o in self.operations.items()
                               if p == project and (location == "-" or loc == location)]}

    # -- GCS ----------------------------------------------------------------------
    def _new_bucket(self, project: str | None, body: dict) -> dict:
        name = body.get("name") or ""
        if not project:
            raise _ApiError(400, "INVALID_ARGUMENT", "Required parameter: project", "required")
        if not _BUCKET.match(name) or "google" in name or name.startswith("goog"):
            raise _ApiError(400, "INVALID_ARGUMENT", f"Invalid bucket name: '{name}'", "invalid")
        _check_labels(body.get("labels") or {}, "bucket")
        if name in self.buckets:
            raise _ApiError(409, "CONFLICT", "The requested bucket name is not available. The bucket namespace is "
                                             "shared by all users of the system. Please select a different name "
                                             "and try again.", "conflict")
        b = {**body, "kind": "storage#bucket", "id": name, "name": name, "projectNumber": "123456789012",
             "_project": project, "location": (body.get("location") or "US").upper(),
             "locationType": "region" if body.get("location") else "multi-region",
             "storageClass": body.get("storageClass") or "STANDARD", "timeCreated": _now(), "updated": _now(),
             "metageneration": "1", "etag": "CAE=", "labels": dict(body.get("labels") or {}), "_objects": {}}
        self.buckets[name] = b
        return _public(b)

    def _bucket(self, name: str) -> dict:
        b = self.buckets.get(name)
        if b is None:
            raise _ApiError(404, "NOT_FOUND", "The specified bucket does not exist.", "notFound")
        return b

    def _page(self, items: list, query: dict) -> tuple[list, str | None]:
        size = min(int(_q(query, "maxResults") or self.gcs_page_size), self.gcs_page_size)
        start = int(_q(query, "pageToken") or 0)
        nxt = start + size
        return items[start:nxt], (str(nxt) if nxt < len(items) else None)

    def _list_buckets(self, project: str | None, query: dict) -> dict:
        if not project:
            raise _ApiError(400, "INVALID_ARGUMENT", "Required parameter: project", "required")
        prefix = _q(query, "prefix") or ""
        items = [_public(b) for n, b in sorted(self.buckets.items())
                 if b["_project"] == project and n.startswith(prefix)]
        page, token = self._page(items, query)
        out = {"kind": "storage#buckets", "items": page}
        if token:
            out["nextPageToken"] = token
        return out

    def _list_objects(self, b: dict, query: dict) -> dict:
        prefix = _q(query, "prefix") or ""
        items = [o for n, o in sorted(b["_objects"].items()) if n.startswith(prefix)]
        page, token = self._page(items, query)
        out = {"kind": "storage#objects", "items": page}
        if token:
            out["nextPageToken"] = token
        return out


def _q(query: dict, key: str) -> str | None:
    v = query.get(key)
    return v[0] if v else None


def _public(b: dict) -> dict:
    return {k: v for k, v in b.items() if not k.startswith("_")}
