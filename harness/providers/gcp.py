"""The ``gcp`` provider: the platform on a GKE cluster, its object storage in a
GCS bucket, both made with Google's own client libraries
(``google-cloud-container`` over its REST transport, ``google-cloud-storage``).

``create()`` makes a zonal (or regional) cluster with one node pool in the first
location of ``locations`` and, in that location's region, a bucket for each
store that keeps its data in object storage (the catalog's stores with
``uses_bucket``: today Cortex alone; VictoriaLogs keeps its data on its own
volume, a PersistentVolumeClaim, so it gets no bucket). Stores never share a
bucket (Cortex has no storage prefix: every top-level folder is a tenant). A
location that answers with a stockout (GKE: ``GCE_STOCKOUT``, "does not have
enough resources available", ``ZONE_RESOURCE_POOL_EXHAUSTED``) is cleaned of
what the failed attempt left and the next location is tried; any other error
fails at once as one line naming the step and the resource.

Everything it makes carries labels (``stackproof-managed=true``,
``stackproof-owner``, ``stackproof-run-id``, ``stackproof-expires`` as
``20261124t040000z``, UTC), so ``destroy()`` works from the labels alone and
:func:`janitor` finds what a crashed run left, a labelled bucket of any name
included (such as a store's bucket that an older version made). State (names,
locations; never a token) is kept in ``$STACKPROOF_STATE/gcp-<run id>/state.json``
to resume.

Configuration: project from the argument, ``STACKPROOF_GCP_PROJECT``,
``GOOGLE_CLOUD_PROJECT`` or the application-default credentials; locations from
the argument or ``STACKPROOF_GCP_LOCATIONS`` (comma list of zones or regions).
Credentials are ``google.auth.default()``. For tests only,
``STACKPROOF_GKE_ENDPOINT`` / ``STACKPROOF_GCS_ENDPOINT`` point the clients
elsewhere and switch to anonymous credentials unless some are passed in.

Every HTTP request to a Google API is counted per method in
``provider.api_calls`` (an :class:`ApiCalls`), retries and pages included.
"""

from __future__ import annotations

import datetime as dt
import functools
import getpass
import hashlib
import json
import os
import re
import shutil
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

from .. import say
from ..components import bucket_stores
from ..errors import ConfigError, StackproofError, one_line
from ..releases import Release
from ..target import Target
from .base import Provider, SwapHook, read_state, write_state
from .common import state_root
from .kube.verbs import DeployerVerbs

LABEL_MANAGED = "stackproof-managed"
LABEL_OWNER = "stackproof-owner"
LABEL_RUN_ID = "stackproof-run-id"
LABEL_EXPIRES = "stackproof-expires"

ENV_PROJECT = "STACKPROOF_GCP_PROJECT"
ENV_LOCATIONS = "STACKPROOF_GCP_LOCATIONS"
ENV_GKE_ENDPOINT = "STACKPROOF_GKE_ENDPOINT"
ENV_GCS_ENDPOINT = "STACKPROOF_GCS_ENDPOINT"
ENV_POLL_INTERVAL = "STACKPROOF_GCP_POLL_INTERVAL"

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
EXPIRY_FORMAT = "%Y%m%dt%H%M%Sz"  # a label value: lowercase, digits, no ':'
# how GKE and Compute Engine word a stockout (operation error, status message,
# condition code); quota (GCE_QUOTA_EXCEEDED) is deliberately not one of them
STOCKOUT_MARKERS = ("gce_stockout", "zone_resource_pool_exhausted", "does not have enough resources available",
                    "resource pool exhausted")

_ZONE = re.compile(r"^[a-z]+-[a-z]+\d+-[a-z]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
MAX_RUN_ID = 40  # the CI workflows' run ids (nightly-<run>-<attempt>-<provider>-<suite>) reach 39
# the stores that keep their data in a bucket, one bucket each; the rest keep it
# on their own volume. Metrics store first.
BUCKET_STORES = bucket_stores()
CLUSTER_NAME_MAX = 40  # GKE
BUCKET_NAME_MAX = 63  # GCS (without dots)
_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,14}$")
DEFAULT_TTL = timedelta(hours=6)
# seconds; every wait is bounded
DEFAULT_TIMEOUTS = {
    "operation": 2400,  # one GKE operation (create or delete a cluster)
    "deploy": 900,
    "namespace_delete": 300,
}
_SECRETS = [re.compile(p) for p in (r"ya29\.[\w.\-]+", r"(?i)bearer\s+\S+", r"(?i)(access_token|key)=[^&\s]+")]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# -- labels ------------------------------------------------------------------
def label_value(text: str) -> str:
    """``text`` made a valid GCP label value (lowercase, [a-z0-9_-], at most 63) that is
    also a valid Kubernetes label value (the deployer stamps the same labels on the
    namespace): it starts and ends with a letter or digit, or is empty."""
    return re.sub(r"[^a-z0-9_-]", "_", str(text).lower())[:63].strip("_-")


def format_expiry(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).strftime(EXPIRY_FORMAT)


def parse_expiry(value: str | None) -> dt.datetime | None:
    """The ``stackproof-expires`` label (``20261124t040000z`` or unix seconds), or None."""
    if not value:
        return None
    if value.isdigit():
        return dt.datetime.fromtimestamp(int(value), dt.timezone.utc)
    for fmt in (EXPIRY_FORMAT, "%Y%m%dt%H%Mz"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            pass
    return None


def make_labels(owner: str, run_id: str, expires: dt.datetime) -> dict[str, str]:
    return {LABEL_MANAGED: "true", LABEL_OWNER: label_value(owner), LABEL_RUN_ID: label_value(run_id),
            LABEL_EXPIRES: format_expiry(expires)}


def is_stockout(text: str) -> bool:
    low = (text or "").lower()
    return any(m in low for m in STOCKOUT_MARKERS)


def region_of(location: str) -> str:
    return location.rsplit("-", 1)[0] if _ZONE.match(location) else location


def _scrub(text: str, extra: tuple[str, ...] = ()) -> str:
    for s in extra:
        if s:
            text = text.replace(s, "***")
    for rx in _SECRETS:
        text = rx.sub("***", text)
    return text


def fit_name(name: str, limit: int, tail: str = "") -> str:
    """``name + tail`` when it is at most ``limit`` long; else ``name`` cut short and
    ended with a hash of all of it, so that two long names never become one."""
    if len(name) + len(tail) <= limit:
        return name + tail
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{name[: limit - len(tail) - len(digest) - 1].rstrip('-')}-{digest}{tail}"


# -- counting every request --------------------------------------------------
class ApiCalls:
    """HTTP requests to Google APIs, per method (``gke.create_cluster``,
    ``gcs.buckets.insert``...). Thread-safe."""

    def __init__(self):
        self._c: Counter = Counter()
        self._lock = threading.Lock()

    def add(self, method: str) -> None:
        with self._lock:
            self._c[method] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._c.items()))

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._c.values())

    @staticmethod
    def diff(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
        return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}


_GCS_METHODS = (
    ("POST", re.compile(r"/storage/v1/b$"), "gcs.buckets.insert"),
    ("GET", re.compile(r"/storage/v1/b$"), "gcs.buckets.list"),
    ("GET", re.compile(r"/storage/v1/b/[^/]+$"), "gcs.buckets.get"),
    ("PATCH", re.compile(r"/storage/v1/b/[^/]+$"), "gcs.buckets.patch"),
    ("DELETE", re.compile(r"/storage/v1/b/[^/]+$"), "gcs.buckets.delete"),
    ("GET", re.compile(r"/storage/v1/b/[^/]+/o$"), "gcs.objects.list"),
    ("DELETE", re.compile(r"/storage/v1/b/[^/]+/o/.+$"), "gcs.objects.delete"),
)


def _counting_adapter(calls: ApiCalls):
    from requests.adapters import HTTPAdapter
    from urllib.parse import urlsplit

    class CountingAdapter(HTTPAdapter):
        def send(self, request, **kw):
            path = urlsplit(request.url).path
            name = next((n for m, rx, n in _GCS_METHODS if m == request.method and rx.search(path)),
                        f"gcs.{request.method} {path}")
            calls.add(name)
            return super().send(request, **kw)

    return CountingAdapter()


def _counting_interceptor(calls: ApiCalls):
    from google.cloud.container_v1.services.cluster_manager.transports.rest import ClusterManagerRestInterceptor

    def hook(method: str):
        def pre(self, request, metadata):
            calls.add(f"gke.{method}")
            return request, metadata
        return pre

    attrs = {n: hook(n[4:]) for n in dir(ClusterManagerRestInterceptor) if n.startswith("pre_")}
    return type("CountingInterceptor", (ClusterManagerRestInterceptor,), attrs)()


# -- the thin layer over both clients -------------------------------------------
def _api_errors() -> tuple[type[BaseException], ...]:
    """What the Google clients raise for a failed call (HTTP error, retries
    exhausted, credentials, connection)."""
    import requests
    from google.api_core import exceptions as gexc
    from google.auth import exceptions as aexc
    return (gexc.GoogleAPICallError, gexc.RetryError, aexc.GoogleAuthError, requests.RequestException)


class GcpApi:
    """The two clients, the call helper that turns Google errors into one line,
    and GKE operation waiting."""

    def __init__(self, project: str | None = None, credentials=None, client_options: dict | None = None,
                 storage_client_options: dict | None = None, poll_interval: float | None = None,
                 calls: ApiCalls | None = None, progress: Callable[[str], None] = say):
        gke_ep, gcs_ep = os.environ.get(ENV_GKE_ENDPOINT), os.environ.get(ENV_GCS_ENDPOINT)
        self.client_options = client_options or ({"api_endpoint": gke_ep} if gke_ep else None)
        self.storage_client_options = storage_client_options or ({"api_endpoint": gcs_ep} if gcs_ep else None)
        self._project = project or os.environ.get(ENV_PROJECT) or os.environ.get("GOOGLE_CLOUD_PROJECT")
        self._credentials = credentials
        self._anonymous = credentials is None and bool(gke_ep or gcs_ep)
        if poll_interval is None:
            poll_interval = float(os.environ.get(ENV_POLL_INTERVAL) or 5.0)
        self.poll_interval = poll_interval
        self.calls = calls or ApiCalls()
        self.say = progress
        self._gke = self._gcs = None

    # -- credentials and project ---------------------------------------------
    def _resolve(self) -> None:
        if self._credentials is not None:
            return
        if self._anonymous:
            from google.auth.credentials import AnonymousCredentials
            self._credentials = AnonymousCredentials()
            return
        import google.auth
        from google.auth.exceptions import DefaultCredentialsError
        try:
            creds, adc_project = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
        except DefaultCredentialsError:
            raise StackproofError("gcp: no Google credentials found: run 'gcloud auth application-default login' "
                                  "or set GOOGLE_APPLICATION_CREDENTIALS") from None
        self._credentials = creds
        self._project = self._project or adc_project

    @property
    def credentials(self):
        self._resolve()
        return self._credentials

    @property
    def project(self) -> str:
        if not self._project:
            self._resolve()
        if not self._project:
            raise ConfigError(f"gcp: no project: pass --project or set {ENV_PROJECT}")
        return self._project

    def access_token(self) -> str | None:
        """A fresh access token of the credentials in use (None when anonymous)."""
        from google.auth.credentials import AnonymousCredentials
        creds = self.credentials
        if isinstance(creds, AnonymousCredentials):
            return None
        if not creds.valid:
            import google.auth.transport.requests
            self.call("refresh credentials", "access token", creds.refresh, google.auth.transport.requests.Request())
        return creds.token

    # -- clients ----------------------------------------------------------------
    @property
    def gke(self):
        if self._gke is None:
            from google.cloud.container_v1 import ClusterManagerClient
            from google.cloud.container_v1.services.cluster_manager.transports.rest import \
                ClusterManagerRestTransport
            transport = functools.partial(ClusterManagerRestTransport, interceptor=_counting_interceptor(self.calls))
            self._gke = ClusterManagerClient(credentials=self.credentials, transport=transport,
                                             client_options=self.client_options)
        return self._gke

    @property
    def gcs(self):
        if self._gcs is None:
            from google.auth.transport.requests import AuthorizedSession
            from google.cloud import storage
            session = AuthorizedSession(self.credentials)
            adapter = _counting_adapter(self.calls)
            session.mount("https://", adapter)
            session.mount("http://", adapter)
            client = storage.Client(project=self.project, credentials=self.credentials, _http=session,
                                    client_options=self.storage_client_options)
            # google-cloud-storage 3.x fetches bucket metadata in background
            # threads (for trace attributes) on first use of a bucket: extra
            # bucket GETs racing the deletes. Not wanted here.
            if getattr(client, "_bucket_metadata_cache", None) is not None:
                client._bucket_metadata_cache = None
            self._gcs = client
        return self._gcs

    # -- the call helper ----------------------------------------------------------
    def call(self, step: str, resource: str, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)``; a Google error becomes one line naming step and resource."""
        try:
            return fn(*args, **kwargs)
        except _api_errors() as exc:
            raise self.error(step, resource, exc) from None

    def error(self, step: str, resource: str, exc: BaseException) -> StackproofError:
        from google.api_core import exceptions as gexc
        if isinstance(exc, gexc.GoogleAPICallError):
            msg = re.sub(r"^[A-Z]+ \S+: ", "", exc.message or "")  # drop "METHOD URL: "
            why = f"{type(exc).__name__} ({exc.code}): {msg}"
        else:
            why = f"{type(exc).__name__}: {exc}"
        token = getattr(self._credentials, "token", None)
        return StackproofError(one_line(_scrub(f"gcp {step} {resource}: {why}", (token,) if token else ())))

    # -- GKE --------------------------------------------------------------------
    def loc_path(self, location: str) -> str:
        return f"projects/{self.project}/locations/{location}"

    def get_cluster(self, location: str, name: str):
        from google.api_core.exceptions import NotFound
        try:
            return self.gke.get_cluster(name=f"{self.loc_path(location)}/clusters/{name}")
        except NotFound:
            return None
        except _api_errors() as exc:
            raise self.error("get cluster", f"{name} in {location}", exc) from None

    def list_clusters(self, locations: list[str] | None = None) -> list:
        out = []
        for loc in locations or ["-"]:
            resp = self.call("list clusters", f"in {self.loc_path(loc)}", self.gke.list_clusters,
                             parent=self.loc_path(loc))
            out.extend(resp.clusters)
        return out

    def wait_operation(self, op, location: str, step: str, resource: str, timeout: float):
        """Poll ``op`` until DONE; bounded by ``timeout`` seconds."""
        from google.cloud.container_v1 import Operation
        name = f"{self.loc_path(location)}/operations/{op.name}"
        deadline = time.monotonic() + timeout
        while op.status != Operation.Status.DONE:
            if time.monotonic() > deadline:
                raise StackproofError(f"gcp {step} {resource}: operation {op.name} not done after {timeout:g} s "
                                      f"(still {op.status.name}); run destroy to remove what it left")
            time.sleep(self.poll_interval)
            op = self.call(step, resource, self.gke.get_operation, name=name)
        return op

    @staticmethod
    def operation_failure(op) -> str:
        """The error text of a DONE operation ('' when it succeeded), with condition codes."""
        parts = []
        if op.error.code or op.error.message:
            parts.append(op.error.message)
        if op.status_message and op.status_message not in parts:
            parts.append(op.status_message)
        if not parts:
            return ""
        codes = [c.code.name for c in list(op.cluster_conditions) + list(op.nodepool_conditions)
                 if c.code and c.code.name != "UNKNOWN"]
        if codes:
            parts.insert(0, "[" + ", ".join(dict.fromkeys(codes)) + "]")
        return " ".join(parts)

    @staticmethod
    def cluster_failure(cluster) -> str:
        codes = [c.code.name for c in cluster.conditions if c.code and c.code.name != "UNKNOWN"]
        msgs = [cluster.status_message] + [c.message for c in cluster.conditions]
        text = " ".join(dict.fromkeys(m for m in msgs if m)) or f"cluster status {cluster.status.name}"
        return (f"[{', '.join(dict.fromkeys(codes))}] " if codes else "") + text

    def running_operations(self, location: str, name: str) -> list:
        """Operations not yet DONE whose target is cluster ``name`` in ``location``."""
        from google.cloud.container_v1 import Operation
        resp = self.call("list operations", f"in {location}", self.gke.list_operations,
                         parent=self.loc_path(location))
        return [op for op in resp.operations if op.status != Operation.Status.DONE
                and op.target_link.rstrip("/").endswith(f"/clusters/{name}")]

    def start_delete_cluster(self, location: str, name: str, timeout: float):
        """Send the delete (waiting out an operation that blocks it); the
        delete operation, or None when the cluster is gone already."""
        from google.api_core import exceptions as gexc
        from google.cloud.container_v1 import Cluster
        resource = f"{name} in {location}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.gke.delete_cluster(name=f"{self.loc_path(location)}/clusters/{name}")
            except gexc.NotFound:
                return None
            except (gexc.BadRequest, gexc.FailedPrecondition, gexc.Conflict) as exc:
                # another operation (a create a crashed run left, a delete
                # already running) holds the cluster: wait for it, then retry
                blocking = self.running_operations(location, name)
                if not blocking or time.monotonic() > deadline:
                    raise self.error("delete cluster", resource, exc) from None
                for op in blocking:
                    if op.operation_type.name == "DELETE_CLUSTER":
                        self.say(f"gcp: cluster {resource} is being deleted already")
                        return op
                    self.say(f"gcp: waiting for operation {op.name} on cluster {resource} before deleting it")
                    self.wait_operation(op, location, "delete cluster", resource, deadline - time.monotonic())
            except _api_errors() as exc:
                raise self.error("delete cluster", resource, exc) from None
            cl = self.get_cluster(location, name)
            if cl is None:
                return None
            if cl.status == Cluster.Status.STOPPING:
                return None  # someone else's delete; wait_gone will see it off

    def delete_clusters(self, clusters: list[tuple[str, str]], timeout: float) -> list[str]:
        """Delete ``(location, name)`` clusters: every delete started first, then
        each waited on. Returns error lines (empty: all gone)."""
        errors, started = [], []
        for loc, name in clusters:
            try:
                started.append((loc, name, self.start_delete_cluster(loc, name, timeout)))
            except StackproofError as exc:
                errors.append(str(exc))
        for loc, name, op in started:
            resource = f"{name} in {loc}"
            try:
                if op is not None:
                    op = self.wait_operation(op, loc, "delete cluster", resource, timeout)
                    failure = self.operation_failure(op)
                    if failure:
                        raise StackproofError(one_line(f"gcp delete cluster {resource}: {failure}"))
                self.wait_gone(loc, name, timeout)
            except StackproofError as exc:
                errors.append(str(exc))
        return errors

    def wait_gone(self, location: str, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.get_cluster(location, name) is not None:
            if time.monotonic() > deadline:
                raise StackproofError(f"gcp delete cluster {name} in {location}: still there after {timeout:g} s")
            time.sleep(self.poll_interval)

    # -- GCS --------------------------------------------------------------------
    def list_buckets(self) -> list:
        return self.call("list buckets", f"in project {self.project}",
                         lambda: list(self.gcs.list_buckets(project=self.project)))

    def delete_bucket(self, name: str) -> int:
        """Empty (every object version) and delete bucket ``name``; the number
        of objects deleted. A missing bucket is fine."""
        from google.api_core.exceptions import NotFound
        bucket = self.gcs.bucket(name)
        try:
            blobs = list(self.gcs.list_blobs(bucket, versions=True))
        except NotFound:
            return 0
        except _api_errors() as exc:
            raise self.error("empty bucket", name, exc) from None
        deleted = 0
        for blob in blobs:  # one request each; every version (each blob has its generation)
            try:
                blob.delete()
                deleted += 1
            except NotFound:
                pass
            except _api_errors() as exc:
                raise self.error("empty bucket", name, exc) from None
        try:
            bucket.delete()
        except NotFound:
            pass
        except _api_errors() as exc:
            raise self.error("delete bucket", name, exc) from None
        return deleted


def _labels_of(resource) -> dict:
    labels = getattr(resource, "resource_labels", None)
    if labels is None:
        labels = getattr(resource, "labels", None) or {}
    return dict(labels)


def _created(resource) -> dt.datetime | None:
    t = getattr(resource, "time_created", None)  # a GCS bucket
    if t is not None:
        return t
    raw = getattr(resource, "create_time", "")  # a GKE cluster: RFC 3339 text
    if not raw:
        return None
    try:
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


# -- the provider ------------------------------------------------------------------
class GCPProvider(DeployerVerbs, Provider):
    name = "gcp"

    def __init__(self, run_id: str | None = None, project: str | None = None, locations: list[str] | None = None,
                 owner: str | None = None, ttl: timedelta = DEFAULT_TTL, name_prefix: str = "stackproof",
                 credentials=None, client_options: dict | None = None, deployer_factory: Callable | None = None,
                 *, storage_client_options: dict | None = None, poll_interval: float | None = None,
                 timeouts: dict | None = None, machine_type: str = "e2-standard-4", node_count: int = 2,
                 disk_size_gb: int = 50, progress: Callable[[str], None] = say):
        if not _PREFIX.match(name_prefix):
            raise ConfigError(f"gcp: name prefix {name_prefix!r} must be 1-15 of a-z, 0-9, '-', starting with a letter")
        if run_id is None:
            run_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + os.urandom(2).hex()
        if not _RUN_ID.match(run_id):
            raise ConfigError(f"gcp: run id {run_id!r} must be 1-{MAX_RUN_ID} of a-z, 0-9 and '-', starting with "
                              f"a letter or digit (it becomes a label value and part of resource names)")
        self.run_id = run_id
        self.name_prefix = name_prefix
        self.state_dir = state_root() / f"gcp-{run_id}"
        self.state: dict[str, Any] = self._load_state()
        project = project or self.state.get("project")
        if locations is None and os.environ.get(ENV_LOCATIONS):
            locations = [x.strip() for x in os.environ[ENV_LOCATIONS].split(",") if x.strip()]
        self.locations = list(locations) if locations is not None else list(self.state.get("locations") or [])
        for loc in self.locations:
            if not (_ZONE.match(loc) or _REGION.match(loc)):
                raise ConfigError(f"gcp: location {loc!r} is neither a zone (us-central1-a) nor a region (us-central1)")
        self.owner = owner or os.environ.get("STACKPROOF_OWNER") or _default_owner()
        self.ttl = ttl
        self.deployer_factory = deployer_factory
        self.timeouts = _timeouts(timeouts)
        self.machine_type, self.node_count, self.disk_size_gb = machine_type, node_count, disk_size_gb
        self.say = progress
        self.api_calls = ApiCalls()
        self.api = GcpApi(project, credentials, client_options, storage_client_options, poll_interval,
                          self.api_calls, progress)
        self._deployer = None
        self._deployer_token: str | None = None

    # -- names ----------------------------------------------------------------
    @property
    def cluster_name(self) -> str:
        return fit_name(f"{self.name_prefix}-{self.run_id}", CLUSTER_NAME_MAX)

    def bucket_name(self, store: str) -> str:
        """``<prefix>-<run id>-<project hash>-<store>``: bucket names are global across
        all of GCS, so a hash of the project keeps two projects using the same run id
        apart; a long run id is cut short and hashed (:func:`fit_name`) to fit 63."""
        if store not in BUCKET_STORES:
            raise ValueError(f"gcp: store {store!r} has no bucket (stores with one: {', '.join(BUCKET_STORES)})")
        digest = hashlib.sha256(self.api.project.encode()).hexdigest()[:6]
        return fit_name(f"{self.name_prefix}-{self.run_id}", BUCKET_NAME_MAX, f"-{digest}-{store}")

    @property
    def bucket_names(self) -> dict[str, str]:
        return {store: self.bucket_name(store) for store in BUCKET_STORES}

    @property
    def namespace(self) -> str:
        return f"stackproof-{self.run_id}"[:63]

    @property
    def labels(self) -> dict[str, str]:
        if "labels" not in self.state:
            self.state["labels"] = make_labels(self.owner, self.run_id, _utcnow() + self.ttl)
        return dict(self.state["labels"])

    # -- state ----------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def target_file(self) -> Path:
        return self.state_dir / "target.yaml"

    def _load_state(self) -> dict:
        return read_state(self.state_file, "gcp: state file")

    def _save_state(self) -> None:
        write_state(self.state_file, self.state)

    # -- create -----------------------------------------------------------------------
    def create(self) -> None:
        if not self.locations:
            raise ConfigError(f"gcp: no location: pass locations or set {ENV_LOCATIONS} (zones or a region, "
                              f"comma-separated)")
        self.state.update({"run_id": self.run_id, "project": self.api.project, "locations": self.locations,
                           "labels": self.labels, "name_prefix": self.name_prefix})
        self._save_state()
        location = self._create_cluster()
        for store in BUCKET_STORES:
            self._create_bucket(region_of(location), store)

    def _cluster_spec(self):
        from google.cloud import container_v1 as c
        return c.Cluster(
            name=self.cluster_name,
            description=f"stackproof run {self.run_id}",
            resource_labels=self.labels,
            release_channel=c.ReleaseChannel(channel=c.ReleaseChannel.Channel.REGULAR),
            node_pools=[c.NodePool(
                name="platform", initial_node_count=self.node_count,
                config=c.NodeConfig(machine_type=self.machine_type, disk_size_gb=self.disk_size_gb,
                                    disk_type="pd-balanced", oauth_scopes=[CLOUD_PLATFORM_SCOPE]),
                management=c.NodeManagement(auto_repair=True, auto_upgrade=True))],
        )

    def _create_cluster(self) -> str:
        """Make the cluster in the first location that has room; its location."""
        from google.api_core.exceptions import AlreadyExists
        from google.cloud.container_v1 import Cluster
        name = self.cluster_name
        known = self.state.get("cluster") or {}
        if known.get("status") == "running" and known.get("name") == name:
            cl = self.api.get_cluster(known["location"], name)
            if cl is not None and cl.status == Cluster.Status.RUNNING:
                return known["location"]
        locations = self.locations
        if known.get("location") in locations:  # resume where the last attempt was
            locations = locations[locations.index(known["location"]):]
        for i, loc in enumerate(locations):
            resource = f"{name} in {loc}"
            self.state["cluster"] = {"name": name, "location": loc, "status": "creating"}
            self._save_state()
            self.say(f"gcp: creating cluster {resource} ({self.node_count} x {self.machine_type})")
            try:
                op = self.api.gke.create_cluster(parent=self.api.loc_path(loc), cluster=self._cluster_spec())
            except AlreadyExists:
                failure = self._adopt_cluster(loc, name)
            except _api_errors() as exc:
                raise self.api.error("create cluster", resource, exc) from None
            else:
                op = self.api.wait_operation(op, loc, "create cluster", resource, self.timeouts["operation"])
                failure = self.api.operation_failure(op)
                if not failure:
                    cl = self.api.get_cluster(loc, name)
                    if cl is None or cl.status != Cluster.Status.RUNNING:
                        failure = self.api.cluster_failure(cl) if cl else "cluster vanished after its create"
            if not failure:
                self.state["cluster"]["status"] = "running"
                self._save_state()
                self.say(f"gcp: cluster {resource} is running")
                return loc
            if not is_stockout(failure):
                self.state["cluster"]["status"] = "failed"
                self._save_state()
                raise StackproofError(one_line(f"gcp create cluster {resource}: {_scrub(failure)}"))
            self.state.setdefault("stockouts", []).append(loc)
            nxt = locations[i + 1] if i + 1 < len(locations) else None
            self.say(f"gcp: stockout in {loc}" + (f"; removing what it left, then trying {nxt}" if nxt else ""))
            errors = self.api.delete_clusters([(loc, name)], self.timeouts["operation"])
            self.state["cluster"]["status"] = "stockout"
            self._save_state()
            if errors:
                raise StackproofError(errors[0])
        raise StackproofError(one_line(f"gcp create cluster {name}: every location stocked out "
                                        f"({', '.join(self.locations)})"))

    def _adopt_cluster(self, loc: str, name: str) -> str:
        """The cluster exists already (a resumed create): ours? then wait for it."""
        from google.cloud.container_v1 import Cluster
        resource = f"{name} in {loc}"
        cl = self.api.get_cluster(loc, name)
        if cl is None:
            raise StackproofError(f"gcp create cluster {resource}: it exists and does not; try again")
        if _labels_of(cl).get(LABEL_RUN_ID) != label_value(self.run_id):
            raise StackproofError(f"gcp create cluster {resource}: a cluster of that name exists and is not "
                                  f"this run's (label {LABEL_RUN_ID})")
        self.say(f"gcp: cluster {resource} exists already (resuming)")
        for op in self.api.running_operations(loc, name):
            self.api.wait_operation(op, loc, "create cluster", resource, self.timeouts["operation"])
        cl = self.api.get_cluster(loc, name)
        if cl is not None and cl.status == Cluster.Status.RUNNING:
            return ""
        return self.api.cluster_failure(cl) if cl else "cluster vanished"

    def _create_bucket(self, region: str, store: str) -> None:
        from google.api_core.exceptions import Conflict
        name = self.bucket_name(store)
        known = self.state.setdefault("buckets", {})
        known[store] = {"name": name, "location": region, "status": "creating"}
        self._save_state()
        bucket = self.api.gcs.bucket(name)
        bucket.labels = self.labels
        bucket.iam_configuration.uniform_bucket_level_access_enabled = True
        bucket.iam_configuration.public_access_prevention = "enforced"
        try:
            self.api.gcs.create_bucket(bucket, project=self.api.project, location=region)
            self.say(f"gcp: bucket {name} created in {region}")
        except Conflict:
            existing = self.api.call("get bucket", name, self.api.gcs.lookup_bucket, name)
            if existing is None or (existing.labels or {}).get(LABEL_RUN_ID) != label_value(self.run_id):
                raise StackproofError(f"gcp create bucket {name}: the name is taken by a bucket that is not this "
                                      f"run's; choose another run id or name prefix") from None
            self.say(f"gcp: bucket {name} exists already (resuming)")
        except _api_errors() as exc:
            raise self.api.error("create bucket", name, exc) from None
        known[store]["status"] = "ready"
        self._save_state()

    # -- Kubernetes ---------------------------------------------------------------------
    def _running_cluster(self):
        from google.cloud.container_v1 import Cluster
        known = self.state.get("cluster") or {}
        if not known.get("location"):
            raise StackproofError(f"gcp: run {self.run_id} has no cluster: run create first")
        cl = self.api.get_cluster(known["location"], known["name"])
        if cl is None or cl.status != Cluster.Status.RUNNING:
            status = cl.status.name if cl else "missing"
            raise StackproofError(f"gcp: cluster {known['name']} in {known['location']} is {status}, not RUNNING")
        return cl

    def kubeconfig(self) -> dict:
        """A kubeconfig (as a dict) for the cluster: its endpoint, its CA and a
        fresh access token of the credentials in use."""
        cl = self._running_cluster()
        ctx = f"gke_{self.api.project}_{cl.location}_{cl.name}"
        user: dict[str, str] = {}
        token = self.api.access_token()
        if token:
            user["token"] = token
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": ctx, "cluster": {
                "server": f"https://{cl.endpoint}",
                "certificate-authority-data": cl.master_auth.cluster_ca_certificate}}],
            "users": [{"name": ctx, "user": user}],
            "contexts": [{"name": ctx, "context": {"cluster": ctx, "user": ctx, "namespace": self.namespace}}],
            "current-context": ctx,
        }

    def _make_deployer(self):
        """The deployer, made anew when the access token changed (it expires after an hour)."""
        kubeconfig = self.kubeconfig()
        token = kubeconfig["users"][0]["user"].get("token")
        if self._deployer is None or token != self._deployer_token:
            factory = self.deployer_factory
            if factory is None:
                from .kube import KubeDeployer
                factory = KubeDeployer
            known = self.state.get("buckets") or {}  # may name a bucket an older version made: not handed on
            buckets = {store: (known.get(store) or {}).get("name") or self.bucket_name(store)
                       for store in BUCKET_STORES}
            # the bucket of each store that has one (not the logs store: its data is on its
            # volume); 'bucket' (the first, the metrics store's) because the deployer's storage
            # check asks for one
            storage = {"type": "gcs", "bucket": buckets[BUCKET_STORES[0]], "buckets": buckets}
            self._deployer = factory(kubeconfig=kubeconfig, namespace=self.namespace, storage=storage,
                                     labels=self.labels)
            self._deployer_token = token
        return self._deployer

    def deploy(self, release: Release) -> Target:
        target = self._make_deployer().deploy(release, timeout=self.timeouts["deploy"])
        self.state.update({"deployed": True, "release": release.name})
        self._save_state()
        return self._save_target(target, release)

    def upgrade(self, release: Release, on_swap: SwapHook | None = None) -> Target:
        target = self._make_deployer().upgrade(release, on_swap=on_swap, timeout=self.timeouts["deploy"])
        self.state["release"] = release.name
        self._save_state()
        return self._save_target(target, release)

    @property
    def deployer(self):
        """The platform's deployer (what :mod:`fixtures.liveness` asks)."""
        return self._make_deployer()

    def sibling(self, platform: str):
        """A platform of its own in namespace ``platform`` of this run's GKE cluster, with its
        own S3 server (:class:`~harness.providers.kube.sibling.SiblingPlatform`); its destroy
        deletes that namespace only."""
        from .kube.sibling import SiblingPlatform

        def deployer_of(namespace: str):
            factory = self.deployer_factory
            if factory is None:
                from .kube import KubeDeployer
                factory = KubeDeployer
            return factory(kubeconfig=self.kubeconfig(), namespace=namespace, storage=None, labels=self.labels)

        return SiblingPlatform(platform, deployer_of, "gcp", timeout=self.timeouts["deploy"])

    def _save_target(self, target: Target, release: Release) -> Target:
        target.provider = "gcp"
        target.release = release.name
        target.save(target.path or self.target_file)  # owner-only: it holds the tenants' tokens
        return target

    # -- destroy ---------------------------------------------------------------------------
    def _owned(self, resource) -> bool:
        labels = _labels_of(resource)
        return labels.get(LABEL_MANAGED) == "true" and labels.get(LABEL_RUN_ID) == label_value(self.run_id)

    def destroy(self) -> None:
        """Namespace (best effort), clusters, then buckets; found from the state
        file and from the labels, so it works after any crash. Idempotent."""
        self.state = self._load_state() or self.state
        errors: list[str] = []
        if self.state.get("deployed"):
            try:
                self._make_deployer().delete(timeout=self.timeouts["namespace_delete"])
            except Exception as exc:  # noqa: BLE001 -- best effort: the cluster goes next
                self.say(f"gcp: could not delete namespace {self.namespace} first "
                         f"({one_line(_scrub(str(exc)), 160)}); deleting the cluster anyway")
        clusters = {(c.location, c.name) for c in self.api.list_clusters() if self._owned(c)}
        known = self.state.get("cluster") or {}
        if known.get("location"):
            clusters.add((known["location"], known["name"]))
        if clusters:
            self.say("gcp: deleting cluster(s) " + ", ".join(f"{n} in {loc}" for loc, n in sorted(clusters)))
        errors += self.api.delete_clusters(sorted(clusters), self.timeouts["operation"])
        buckets = {b.name for b in self.api.list_buckets() if self._owned(b)}
        # the state file's too: each store's, and the one shared bucket of older versions
        known = [*(self.state.get("buckets") or {}).values(), self.state.get("bucket") or {}]
        buckets |= {b["name"] for b in known if b.get("name")}
        for name in sorted(buckets):
            try:
                n = self.api.delete_bucket(name)
                self.say(f"gcp: bucket {name} deleted ({n} objects)")
            except StackproofError as exc:
                errors.append(str(exc))
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            raise StackproofError(errors[0] + more)
        self._deployer = None
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.state = {}

    # -- status and artifacts ----------------------------------------------------------------
    def status(self) -> dict:
        known = self.state.get("cluster") or {}
        out: dict[str, Any] = {"provider": "gcp", "run_id": self.run_id, "state_file": str(self.state_file),
                               "owner": self.owner, "labels": self.state.get("labels"),
                               "release": self.state.get("release"),
                               "cluster": None, "buckets": None}
        if not self.state:
            return out
        out["project"] = self.state.get("project")
        if known.get("location"):
            cl = self.api.get_cluster(known["location"], known["name"])
            out["cluster"] = {"name": known["name"], "location": known["location"],
                              "status": cl.status.name if cl else "MISSING",
                              "endpoint": cl.endpoint if cl else None,
                              "node_pools": {p.name: p.status.name for p in cl.node_pools} if cl else {}}
        if self.state.get("buckets"):
            out["buckets"] = {}
            for store, known_bucket in sorted(self.state["buckets"].items()):
                name = known_bucket["name"]
                b = self.api.call("get bucket", name, self.api.gcs.lookup_bucket, name)
                out["buckets"][store] = {"name": name, "exists": b is not None,
                                         "location": b.location if b is not None else None}
        out["api_calls"] = self.api_calls.snapshot()
        return out

    def collect_artifacts(self, dest: Path) -> list[Path]:
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        paths: list[Path] = []
        if self.state.get("deployed"):
            try:
                paths += list(self._make_deployer().collect_artifacts(dest) or [])
            except StackproofError as exc:
                self.say(f"gcp: no artifacts from the cluster: {exc}")
        info = dest / "gcp-resources.json"
        safe = {k: v for k, v in self.state.items() if k in ("run_id", "project", "locations", "labels", "cluster",
                                                              "buckets", "stockouts", "release")}
        safe["api_calls"] = self.api_calls.snapshot()
        info.write_text(json.dumps(safe, indent=2, sort_keys=True) + "\n")
        return paths + [info]


def _timeouts(timeouts: dict | None) -> dict:
    unknown = sorted(set(timeouts or {}) - set(DEFAULT_TIMEOUTS))
    if unknown:
        raise ConfigError(f"gcp: unknown timeout {', '.join(unknown)} (known: {', '.join(DEFAULT_TIMEOUTS)})")
    return {**DEFAULT_TIMEOUTS, **(timeouts or {})}


def _default_owner() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# -- janitor ------------------------------------------------------------------------------
def janitor(older_than: timedelta | None = None, run_id: str | None = None, dry_run: bool = False,
            project: str | None = None, locations: list[str] | None = None, *, now: dt.datetime | None = None,
            credentials=None, client_options: dict | None = None, storage_client_options: dict | None = None,
            poll_interval: float | None = None, timeouts: dict | None = None,
            progress: Callable[[str], None] = say) -> list[dict]:
    """Delete what stackproof runs left: clusters and buckets labelled
    ``stackproof-managed=true`` that are of ``run_id`` (when given), else past
    their ``stackproof-expires`` or (with ``older_than``) older than that.
    Clusters go first (they use the buckets). ``locations`` limits the cluster
    listing (default: every location). One dict per resource: kind, name,
    location, run_id, owner, expires, reason, action ("deleted", "would delete",
    "failed: ...")."""
    now = now or _utcnow()
    operation_timeout = _timeouts(timeouts)["operation"]
    api = GcpApi(project, credentials, client_options, storage_client_options, poll_interval, None, progress)
    picked: list[tuple[str, Any, dict]] = []

    def consider(kind: str, res) -> None:
        labels = _labels_of(res)
        if labels.get(LABEL_MANAGED) != "true":
            return
        rid, expires = labels.get(LABEL_RUN_ID, ""), parse_expiry(labels.get(LABEL_EXPIRES))
        created = _created(res)
        if run_id is not None:
            reason = "run id" if rid == label_value(run_id) else ""
        elif expires is not None and expires <= now:
            reason = "expired"
        elif older_than is not None and created is not None and now - created > older_than:
            reason = f"older than {older_than}"
        else:
            reason = ""
        if not reason:
            return
        rec = {"kind": kind, "name": res.name, "location": getattr(res, "location", None), "run_id": rid,
               "owner": labels.get(LABEL_OWNER, ""), "expires": expires.isoformat() if expires else None,
               "reason": reason, "action": "would delete"}
        picked.append((kind, res, rec))

    for cl in api.list_clusters(locations):
        consider("cluster", cl)
    for b in api.list_buckets():
        consider("bucket", b)
    if dry_run:
        return [rec for _, _, rec in picked]
    clusters = [(res.location, res.name) for kind, res, _ in picked if kind == "cluster"]
    errors = api.delete_clusters(clusters, operation_timeout) if clusters else []
    for kind, res, rec in picked:
        if kind != "cluster":
            continue
        mine = [e for e in errors if f" {res.name} in {res.location}:" in e]
        rec["action"] = f"failed: {mine[0]}" if mine else "deleted"
    for kind, res, rec in picked:
        if kind != "bucket":
            continue
        try:
            api.delete_bucket(res.name)
            rec["action"] = "deleted"
        except StackproofError as exc:
            rec["action"] = f"failed: {exc}"
    for _, _, rec in picked:
        progress(f"janitor: {rec['kind']} {rec['name']} ({rec['reason']}): {rec['action']}")
    return [rec for _, _, rec in picked]
