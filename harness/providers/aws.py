"""The ``aws`` provider: an EKS cluster made with boto3, the platform deployed
into it by :class:`harness.providers.kube.KubeDeployer`.

What ``create()`` makes, in this order (``destroy()`` takes it away in reverse):

1. a VPC, two public subnets in two zones, an internet gateway, a route table
   with a default route and both subnets associated;
2. an S3 bucket for each store that keeps its data in object storage (the
   catalog's stores with ``uses_bucket``: today Cortex alone; VictoriaLogs
   keeps its data on its own volume, a PersistentVolumeClaim, so it gets no
   bucket), each tagged and with public access blocked; stores never share a
   bucket (Cortex has no storage prefix: every top-level folder is a tenant);
3. IAM roles for the cluster (AmazonEKSClusterPolicy) and for the nodes
   (AmazonEKSWorkerNodePolicy, AmazonEKS_CNI_Policy,
   AmazonEC2ContainerRegistryReadOnly, and an inline policy for exactly the
   buckets made, nothing wider);
4. an EKS cluster and one managed node group.

Every resource that takes tags carries ``stackproof:managed=true``,
``stackproof:owner``, ``stackproof:run-id``, ``stackproof:expires`` (ISO-8601
UTC), ``stackproof:created`` and ``stackproof:region``, so that
:func:`janitor` can find what a crashed run left behind. Names are derived
from the run id too (``<prefix>-<run id>...``), so ``destroy()`` works from a
fresh process with nothing but the run id: it discovers by tags and names
(a bucket by its store's name, tagged or not, and any other bucket under
``<prefix>-<run id>-`` by its run-id tag, such as a store's bucket that an
older version made), and uses the state file
(``$STACKPROOF_STATE/aws-<run id>/state.json``) only as an extra hint.

The clients are botocore's (boto3's core: ``boto3.client`` makes the same ones),
made from a session that shares its model loader across providers. The
endpoint is boto3's business: ``AWS_ENDPOINT_URL``, honoured by botocore itself,
points every client at another endpoint, e.g. moto's server in the harness's
own tests. Nothing here knows about it.

Every API call the provider makes is counted per operation
(``provider.api_calls``, and per phase in ``provider.api_calls_by_phase``).
Errors reach the user as one :class:`StackproofError` line naming the step
and the resource, never with a credential in it.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import ipaddress
import json
import math
import os
import re
import shutil
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from .. import say
from ..components import bucket_stores
from ..errors import ConfigError, StackproofError, one_line
from ..releases import Release
from ..target import Target
from .base import Provider, SwapHook, read_state, write_state
from .common import state_root
from .kube.verbs import DeployerVerbs

try:  # boto3's core (the 'cloud' extra): clients, waiters, presigning
    import botocore.session
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import BotoCoreError, ClientError, WaiterError
except ImportError:  # pragma: no cover - depends on the installed extras
    raise ConfigError("provider 'aws' needs boto3: pip install 'stackproof[cloud]'") from None

TAG_MANAGED = "stackproof:managed"
TAG_OWNER = "stackproof:owner"
TAG_RUN = "stackproof:run-id"
TAG_EXPIRES = "stackproof:expires"
TAG_CREATED = "stackproof:created"
TAG_REGION = "stackproof:region"

CLUSTER_POLICIES = ("AmazonEKSClusterPolicy",)
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
NODE_BUCKET_POLICY = "stackproof-bucket-access"
# the stores that keep their data in a bucket, one bucket each (see Names.bucket);
# the rest keep it on their own volume. Metrics store first.
BUCKET_STORES = bucket_stores()

# the EKS bearer token (aws-iam-authenticator / `aws eks get-token` format)
TOKEN_PREFIX = "k8s-aws-v1."
K8S_AWS_ID_HEADER = "x-k8s-aws-id"
PRESIGN_EXPIRES = 60

DEFAULT_TTL = timedelta(hours=6)
# seconds; every wait is bounded
DEFAULT_TIMEOUTS = {
    "vpc": 300,
    "cluster_create": 1800,
    "nodegroup_create": 1800,
    "cluster_delete": 1200,
    "nodegroup_delete": 1200,
    "load_balancer_delete": 600,
    "network_interface": 600,
    # retrying deletes refused with DependencyViolation (ENIs linger after a cluster goes)
    "dependency": 900,
    # retrying CreateCluster while a new IAM role propagates
    "iam_propagation": 120,
    "namespace_delete": 300,
    "deploy": 900,
}
# delay between checks of the bounded retry loops when no poll_interval is given
DEFAULT_POLL_INTERVAL = 10.0

_RUN_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_PREFIX_RE = re.compile(r"^[a-z](?:[a-z0-9-]{0,10}[a-z0-9])?$")
_NOT_FOUND = {"NoSuchEntity", "NoSuchBucket", "ResourceNotFoundException", "LoadBalancerNotFound",
              "TargetGroupNotFound", "Gateway.NotAttached", "InvalidGroup.NotFound", "NotFound", "404"}
_IN_USE = {"DependencyViolation", "ResourceInUseException", "ResourceInUse", "InvalidNetworkInterface.InUse",
           "DeleteConflict", "BucketNotEmpty", "OperationNotPermitted"}

_SECRETISH = re.compile(
    r"(?:\b(?:AKIA|ASIA)[0-9A-Z]{12,}\b)"
    r"|(?:X-Amz-(?:Signature|Credential|Security-Token)=[^&\s\"']+)"
    r"|(?:k8s-aws-v1\.[A-Za-z0-9_\-]+)"
    r"|(?:(?:aws_secret_access_key|aws_session_token|SecretAccessKey|SessionToken)\W+\S+)",
    re.IGNORECASE)


def _scrub(text: Any, limit: int = 300) -> str:
    """One line, no credentials, bounded length."""
    return one_line(_SECRETISH.sub("***", " ".join(str(text).split())), limit)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "") or exc.response.get(
        "ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _is_not_found(exc: ClientError) -> bool:
    code = _code(exc)
    return code in _NOT_FOUND or code.endswith(".NotFound") or code.endswith("NotFoundException")


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "error")
        msg = err.get("Message") or ""
        return _scrub(f"{code}: {msg}" if msg else code)
    return _scrub(exc) or type(exc).__name__


def region_from_env(region: str | None = None) -> str:
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ConfigError("aws: no region: pass one (e.g. --region eu-west-1) or set AWS_REGION")
    return region


def check_run_id(run_id: str, name_prefix: str = "stackproof") -> str:
    """A run id names AWS resources: lower-case letters, digits and '-', and short enough
    for the longest name made from it (IAM roles: 64, node groups and buckets: 63; a
    bucket's shortest form is ``<prefix>-<run id>-<hash>-<store letter>``)."""
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise ConfigError(f"aws: run id {run_id!r} must be lower-case letters, digits or '-' "
                          "(starting and ending with a letter or digit): it names AWS resources")
    longest = max_run_id_length(name_prefix)
    if len(run_id) > longest:
        raise ConfigError(f"aws: run id {run_id!r} is {len(run_id)} characters; with the name prefix "
                          f"{name_prefix!r} at most {longest} fit in the AWS resource names made from it")
    return run_id


def max_run_id_length(name_prefix: str = "stackproof") -> int:
    n = len(name_prefix) + 1
    return min(64 - n - len("-cluster"),  # IAM role
               63 - n - len("-nodes"),  # EKS node group
               63 - n - len(_short_bucket_tail("", "", "s")),  # S3 bucket, the shortest form
               63 - n)  # Kubernetes namespace


def ec2_tags(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_dict(tags: list[dict] | None) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in tags or []}


def _label_value(value: str) -> str:
    """A Kubernetes label value: at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends."""
    v = re.sub(r"[^A-Za-z0-9_.-]", "_", value)[:63].strip("_.-")
    return v or "unknown"


# ---------------------------------------------------------------------------
# names


@dataclass(frozen=True)
class Names:
    """Every name a run uses, derived from the prefix and the run id."""

    prefix: str
    run_id: str

    @property
    def cluster(self) -> str:
        return f"{self.prefix}-{self.run_id}"

    @property
    def nodegroup(self) -> str:
        return f"{self.prefix}-{self.run_id}-nodes"

    @property
    def cluster_role(self) -> str:
        return f"{self.prefix}-{self.run_id}-cluster"

    @property
    def node_role(self) -> str:
        return f"{self.prefix}-{self.run_id}-node"

    @property
    def role_path(self) -> str:
        return f"/{self.prefix}/"

    @property
    def namespace(self) -> str:
        return f"{self.prefix}-{self.run_id}"

    def bucket(self, account: str, region: str, store: str) -> str:
        """The bucket of ``store`` (one of ``BUCKET_STORES``): bucket names are global
        across AWS, so the account and region are in it,
        ``<prefix>-<run id>-<account>-<region>-<store>``; when that is longer than 63,
        ``<prefix>-<run id>-<hash of account and region>-<store's first letter>``."""
        if store not in BUCKET_STORES:
            raise ValueError(f"aws: store {store!r} has no bucket (stores with one: {', '.join(BUCKET_STORES)})")
        for tail in _bucket_tails(account, region, store):
            name = f"{self.prefix}-{self.run_id}{tail}"
            if len(name) <= 63:
                return name
        raise ConfigError(f"aws: run id {self.run_id!r} is too long for an S3 bucket name")  # check_run_id stops it

    def legacy_bucket(self, account: str, region: str) -> str:
        """The one bucket both stores shared before they got one each: still looked
        for, so destroy and the janitor clean up runs of older versions."""
        name = f"{self.prefix}-{self.run_id}-{account}-{region}"
        return name if len(name) <= 63 else f"{self.prefix}-{self.run_id}-{_legacy_bucket_hash(account, region)}"

    def buckets(self, account: str, region: str) -> dict[str, str]:
        return {store: self.bucket(account, region, store) for store in BUCKET_STORES}


_BUCKET_HASH_LEN = 8
_LEGACY_BUCKET_HASH_LEN = 10


def _bucket_hash(account: str, region: str) -> str:
    return hashlib.sha256(f"{account}:{region}".encode()).hexdigest()[:_BUCKET_HASH_LEN]


def _legacy_bucket_hash(account: str, region: str) -> str:
    return hashlib.sha256(f"{account}:{region}".encode()).hexdigest()[:_LEGACY_BUCKET_HASH_LEN]


def _short_bucket_tail(account: str, region: str, store: str) -> str:
    return f"-{_bucket_hash(account, region)}-{store[0]}"


def _bucket_tails(account: str, region: str, store: str) -> tuple[str, str]:
    """What follows ``<prefix>-<run id>`` in a bucket name of ``store``: the long form, the short form."""
    return f"-{account}-{region}-{store}", _short_bucket_tail(account, region, store)


def _bucket_run_id(name: str, prefix: str, account: str, region: str) -> str | None:
    """The run id in a stackproof bucket name of this account and region (the bucket
    of one of ``BUCKET_STORES``, or the shared bucket of older versions), else None.
    Any other bucket of a run is known by its tags alone (:func:`_tagged_buckets`)."""
    head = f"{prefix}-"
    tails = [t for store in BUCKET_STORES for t in _bucket_tails(account, region, store)]
    tails += [f"-{account}-{region}", f"-{_legacy_bucket_hash(account, region)}"]
    for tail in tails:
        if name.startswith(head) and name.endswith(tail):
            run = name[len(head): len(name) - len(tail)]
            if _RUN_ID_RE.match(run):
                return run
    return None


# ---------------------------------------------------------------------------
# counted clients, steps, waits


class Cloud:
    """boto3 clients for one region, each counting its API calls."""

    def __init__(self, region: str, poll_interval: float | None = None, timeouts: dict | None = None,
                 progress: Callable[[str], None] = say):
        self.region = region
        self.poll_interval = poll_interval
        unknown = sorted(set(timeouts or {}) - set(DEFAULT_TIMEOUTS))
        if unknown:
            raise ConfigError(f"aws: unknown timeout {', '.join(unknown)} (known: {', '.join(DEFAULT_TIMEOUTS)})")
        self.timeouts = {**DEFAULT_TIMEOUTS, **(timeouts or {})}
        self.say = progress
        self.calls: Counter = Counter()
        self.attempts: Counter = Counter()
        self.calls_by_phase: dict[str, Counter] = {}
        self.phase: str | None = None
        self._clients: dict[str, Any] = {}
        try:
            self.session = _botocore_session()
        except BotoCoreError as exc:
            raise StackproofError(f"aws: cannot start a session for region {region}: {_scrub(exc)}") from None
        self._config = BotoConfig(region_name=region, retries={"mode": "standard", "max_attempts": 5},
                                  connect_timeout=15, read_timeout=60, user_agent_extra="stackproof")

    def client(self, service: str):
        c = self._clients.get(service)
        if c is None:
            try:
                c = self.session.create_client(service, region_name=self.region, config=self._config)
            except BotoCoreError as exc:
                raise StackproofError(f"aws: cannot make a {service} client: {_scrub(exc)}") from None
            c.meta.events.register("before-call", self._count_call)
            c.meta.events.register("before-send", self._count_attempt)
            self._clients[service] = c
        return c

    def _key(self, model) -> str:
        return f"{model.service_model.service_name}:{model.name}"

    def _count_call(self, model=None, **_kwargs) -> None:
        if model is None:
            return
        key = self._key(model)
        self.calls[key] += 1
        if self.phase:
            self.calls_by_phase.setdefault(self.phase, Counter())[key] += 1

    def _count_attempt(self, request=None, **kwargs) -> None:
        # must return None: a value returned from before-send replaces the HTTP response
        name = kwargs.get("event_name", "")
        self.attempts[name.replace("before-send.", "", 1)] += 1
        return None

    @contextmanager
    def phase_of(self, phase: str) -> Iterator[None]:
        prev, self.phase = self.phase, phase
        try:
            yield
        finally:
            self.phase = prev

    # -- steps -------------------------------------------------------------
    @contextmanager
    def step(self, step: str, resource: str = "") -> Iterator[None]:
        """Turn botocore errors into one StackproofError line naming the step and resource."""
        where = f"aws: {step}" + (f" {resource}" if resource else "")
        try:
            yield
        except StackproofError:
            raise
        except ClientError as exc:
            raise StackproofError(f"{where}: {_describe_error(exc)}") from None
        except WaiterError as exc:
            raise StackproofError(f"{where}: {_describe_error(exc)}") from None
        except BotoCoreError as exc:
            raise StackproofError(f"{where}: {_describe_error(exc)}") from None

    def delay(self, default: float) -> float:
        return self.poll_interval if self.poll_interval is not None else default

    def wait(self, service: str, waiter_name: str, what: str, timeout_key: str, ok_failure: bool = False,
             **params) -> bool:
        """A boto3 waiter bounded by ``timeouts[timeout_key]`` seconds. Returns True when the
        waiter succeeded; False when it reached a failure state and ``ok_failure``; otherwise
        raises a one-line StackproofError (timeout, failure state, API error)."""
        client = self.client(service)
        waiter = client.get_waiter(waiter_name)
        timeout = float(self.timeouts[timeout_key])
        delay = self.delay(waiter.config.delay)
        attempts = max(1, math.ceil(timeout / max(delay, 0.001))) + 1
        try:
            waiter.wait(**params, WaiterConfig={"Delay": delay, "MaxAttempts": attempts})
            return True
        except WaiterError as exc:
            reason = str(exc.kwargs.get("reason", "")) if hasattr(exc, "kwargs") else ""
            last = _status_of(exc.last_response)
            if "Max attempts exceeded" in reason:
                secs = f"{timeout:.0f}" if timeout >= 10 else f"{timeout:g}"
                raise StackproofError(f"aws: {what}: timed out after {secs}s"
                                      + (f" (last status {last})" if last else "")) from None
            if "terminal failure state" in reason and ok_failure:
                return False
            if "terminal failure state" in reason:
                raise StackproofError(f"aws: {what}: reached a failure state"
                                      + (f" (status {last})" if last else "")) from None
            err = (exc.last_response or {}).get("Error") if isinstance(exc.last_response, dict) else None
            detail = f"{err.get('Code')}: {err.get('Message', '')}" if err else reason
            raise StackproofError(f"aws: {what}: {_scrub(detail)}") from None
        except ClientError as exc:
            raise StackproofError(f"aws: {what}: {_describe_error(exc)}") from None
        except BotoCoreError as exc:
            raise StackproofError(f"aws: {what}: {_describe_error(exc)}") from None

    def retry_in_use(self, fn: Callable[[], Any], what: str, timeout_key: str = "dependency") -> Any:
        """Call ``fn`` until it is not refused as in use (DependencyViolation and friends),
        bounded by ``timeouts[timeout_key]``; not-found counts as done (returns None)."""
        deadline = time.monotonic() + float(self.timeouts[timeout_key])
        delay = self.delay(DEFAULT_POLL_INTERVAL)
        while True:
            try:
                return fn()
            except ClientError as exc:
                if _is_not_found(exc):
                    return None
                if _code(exc) in _IN_USE and time.monotonic() < deadline:
                    time.sleep(delay)
                    continue
                raise StackproofError(f"aws: {what}: {_describe_error(exc)}") from None
            except BotoCoreError as exc:
                raise StackproofError(f"aws: {what}: {_describe_error(exc)}") from None

    def identity(self) -> dict:
        with self.step("get caller identity (sts)"):
            ident = self.client("sts").get_caller_identity()
        arn = ident.get("Arn", "")
        partition = arn.split(":")[1] if arn.count(":") >= 2 else "aws"
        return {"account": ident["Account"], "partition": partition or "aws"}


_LOADER = None


def _botocore_session():
    """A botocore session (boto3's client factory underneath) sharing one model loader
    with the other sessions of this process: loading service models is most of the cost
    of making clients, and a janitor or a test makes many."""
    global _LOADER
    session = botocore.session.get_session()
    if _LOADER is None:
        _LOADER = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _LOADER)
    session.user_agent_extra = "stackproof"
    return session


def _status_of(resp: Any) -> str | None:
    if not isinstance(resp, dict):
        return None
    for key in ("cluster", "nodegroup"):
        if isinstance(resp.get(key), dict) and resp[key].get("status"):
            return resp[key]["status"]
    for key in ("Vpcs", "Subnets", "NetworkInterfaces", "LoadBalancers"):
        items = resp.get(key)
        if isinstance(items, list) and items:
            st = items[0].get("State") or items[0].get("Status")
            if isinstance(st, dict):
                st = st.get("Code")
            if st:
                return str(st)
    err = resp.get("Error")
    if isinstance(err, dict) and err.get("Code"):
        return str(err["Code"])
    return None


# ---------------------------------------------------------------------------
# discovery and deletion (shared by destroy and the janitor)


@dataclass
class Inventory:
    """Everything of one run that exists in one region (and IAM)."""

    run_id: str
    clusters: list[str] = field(default_factory=list)
    nodegroups: list[tuple[str, str]] = field(default_factory=list)
    load_balancers: list[dict] = field(default_factory=list)  # {"id": arn or name, "type": "elbv2"|"elb"}
    target_groups: list[str] = field(default_factory=list)
    network_interfaces: list[dict] = field(default_factory=list)
    security_groups: list[dict] = field(default_factory=list)
    buckets: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    route_tables: list[dict] = field(default_factory=list)  # {"id", "associations": [ids]}
    subnets: list[str] = field(default_factory=list)
    internet_gateways: list[dict] = field(default_factory=list)  # {"id", "vpcs": [ids]}
    vpcs: list[str] = field(default_factory=list)

    def records(self) -> list[dict]:
        """(kind, id) of each resource, in deletion order."""
        out = [{"kind": "eks-nodegroup", "id": f"{c}/{n}"} for c, n in self.nodegroups]
        out += [{"kind": "eks-cluster", "id": c} for c in self.clusters]
        out += [{"kind": f"load-balancer ({lb['type']})", "id": lb["id"]} for lb in self.load_balancers]
        out += [{"kind": "target-group", "id": t} for t in self.target_groups]
        out += [{"kind": "network-interface", "id": e["id"]} for e in self.network_interfaces]
        out += [{"kind": "security-group", "id": g["id"]} for g in self.security_groups]
        out += [{"kind": "s3-bucket", "id": b} for b in self.buckets]
        out += [{"kind": "iam-role", "id": r} for r in self.roles]
        out += [{"kind": "route-table", "id": r["id"]} for r in self.route_tables]
        out += [{"kind": "subnet", "id": s} for s in self.subnets]
        out += [{"kind": "internet-gateway", "id": g["id"]} for g in self.internet_gateways]
        out += [{"kind": "vpc", "id": v} for v in self.vpcs]
        return out

    def empty(self) -> bool:
        return not self.records()


def _add(items: list, item) -> None:
    if item not in items:
        items.append(item)


def discover_run(cloud: Cloud, names: Names, account: str, hints: dict | None = None) -> Inventory:
    """Find every resource of one run: EC2 by the run-id tag (and the VPC's contents by
    VPC id, tagged or not: leaked ENIs, load balancers, security groups), EKS, IAM and
    S3 by their names. ``hints`` (ids from a state file) add to what is found."""
    hints = hints or {}
    run = names.run_id
    inv = Inventory(run)
    ec2 = cloud.client("ec2")
    run_filter = [{"Name": f"tag:{TAG_RUN}", "Values": [run]}, {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}]

    # -- EKS (by name) ---------------------------------------------------------
    eks = cloud.client("eks")
    with cloud.step("discover EKS cluster", names.cluster):
        try:
            cluster = eks.describe_cluster(name=names.cluster)["cluster"]
            inv.clusters.append(cluster["name"])
        except ClientError as exc:
            if not _is_not_found(exc):
                raise
    for c in inv.clusters:
        with cloud.step("list node groups of EKS cluster", c):
            try:
                for page in eks.get_paginator("list_nodegroups").paginate(clusterName=c):
                    inv.nodegroups += [(c, n) for n in page.get("nodegroups", [])]
            except ClientError as exc:
                if not _is_not_found(exc):
                    raise

    # -- VPCs (by tag, plus the state file's) and their contents ----------------
    with cloud.step("discover VPCs of run", run):
        inv.vpcs = [v["VpcId"] for v in _pages(ec2, "describe_vpcs", "Vpcs", Filters=run_filter)]
        extra = [v for v in [hints.get("vpc")] if v and v not in inv.vpcs]
        if extra:
            inv.vpcs += [v["VpcId"] for v in _pages(ec2, "describe_vpcs", "Vpcs",
                                                    Filters=[{"Name": "vpc-id", "Values": extra}])]
    if inv.vpcs:
        vpc_filter = [{"Name": "vpc-id", "Values": list(inv.vpcs)}]
        with cloud.step("discover contents of VPC", ",".join(inv.vpcs)):
            for sn in _pages(ec2, "describe_subnets", "Subnets", Filters=vpc_filter):
                _add(inv.subnets, sn["SubnetId"])
            for rt in _pages(ec2, "describe_route_tables", "RouteTables", Filters=vpc_filter):
                assoc = rt.get("Associations", [])
                if any(a.get("Main") for a in assoc):
                    continue  # the main route table goes with its VPC
                inv.route_tables.append({"id": rt["RouteTableId"],
                                         "associations": [a["RouteTableAssociationId"] for a in assoc
                                                          if a.get("RouteTableAssociationId")]})
            inv.network_interfaces, inv.security_groups = _vpc_leftovers(cloud, inv.vpcs)
            for igw in _pages(ec2, "describe_internet_gateways", "InternetGateways",
                              Filters=[{"Name": "attachment.vpc-id", "Values": list(inv.vpcs)}]):
                inv.internet_gateways.append({"id": igw["InternetGatewayId"],
                                              "vpcs": [a["VpcId"] for a in igw.get("Attachments", [])]})
        with cloud.step("discover load balancers in VPC", ",".join(inv.vpcs)):
            elbv2 = cloud.client("elbv2")
            for lb in _pages(elbv2, "describe_load_balancers", "LoadBalancers"):
                if lb.get("VpcId") in inv.vpcs:
                    inv.load_balancers.append({"id": lb["LoadBalancerArn"], "type": "elbv2"})
            for tg in _pages(elbv2, "describe_target_groups", "TargetGroups"):
                if tg.get("VpcId") in inv.vpcs:
                    inv.target_groups.append(tg["TargetGroupArn"])
            for lb in _pages(cloud.client("elb"), "describe_load_balancers", "LoadBalancerDescriptions"):
                if lb.get("VPCId") in inv.vpcs:
                    inv.load_balancers.append({"id": lb["LoadBalancerName"], "type": "elb"})
    # an internet gateway made but never attached (a create that failed in between)
    with cloud.step("discover internet gateways of run", run):
        for igw in _pages(ec2, "describe_internet_gateways", "InternetGateways", Filters=run_filter):
            if not any(g["id"] == igw["InternetGatewayId"] for g in inv.internet_gateways):
                inv.internet_gateways.append({"id": igw["InternetGatewayId"],
                                              "vpcs": [a["VpcId"] for a in igw.get("Attachments", [])]})

    # -- S3 (by name, then by tag) and IAM (by name) ------------------------------------
    # by name, tagged or not (a create may fail between a bucket and its tags): each
    # store's bucket, the shared one of older versions and the state file's
    s3 = cloud.client("s3")
    by_name = [*names.buckets(account, cloud.region).values(), names.legacy_bucket(account, cloud.region),
               *(hints.get("buckets") or {}).values()]
    for bucket in dict.fromkeys(by_name):
        with cloud.step("discover S3 bucket", bucket):
            try:
                s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
                _add(inv.buckets, bucket)
            except ClientError as exc:
                if not (_is_not_found(exc) or _code(exc) in ("403", "AccessDenied")):
                    raise
    # by the run-id tag, whatever the name: e.g. a store's bucket made by an older version
    with cloud.step("discover S3 buckets tagged with run", run):
        for bucket, tags in _tagged_buckets(cloud, f"{names.prefix}-{run}-"):
            if tags.get(TAG_MANAGED) == "true" and tags.get(TAG_RUN) == run:
                _add(inv.buckets, bucket["Name"])
    iam = cloud.client("iam")
    for role in (names.cluster_role, names.node_role):
        with cloud.step("discover IAM role", role):
            try:
                iam.get_role(RoleName=role)
                inv.roles.append(role)
            except ClientError as exc:
                if not _is_not_found(exc):
                    raise
    return inv


def _tagged_buckets(cloud: Cloud, prefix: str) -> list[tuple[dict, dict[str, str]]]:
    """The account's buckets in this region whose names start with ``prefix``, each
    with its tags ({} when it has none)."""
    s3 = cloud.client("s3")
    out = []
    for b in _pages(s3, "list_buckets", "Buckets", Prefix=prefix, BucketRegion=cloud.region):
        if not b["Name"].startswith(prefix) or b.get("BucketRegion", cloud.region) != cloud.region:
            continue  # an endpoint that ignores the filters
        try:
            tags = tag_dict(s3.get_bucket_tagging(Bucket=b["Name"]).get("TagSet"))
        except ClientError as exc:
            if not (_is_not_found(exc) or _code(exc) in ("NoSuchTagSet", "NoSuchTagSetError")):
                raise
            tags = {}
        out.append((b, tags))
    return out


def _vpc_leftovers(cloud: Cloud, vpcs: list[str]) -> tuple[list[dict], list[dict]]:
    """Network interfaces and non-default security groups in ``vpcs``: what EKS, the
    CNI and cloud load balancers leave behind."""
    ec2 = cloud.client("ec2")
    vpc_filter = [{"Name": "vpc-id", "Values": list(vpcs)}]
    enis = [{"id": eni["NetworkInterfaceId"], "status": eni.get("Status"),
             "requester_managed": eni.get("RequesterManaged", False), "attachment": eni.get("Attachment") or {}}
            for eni in _pages(ec2, "describe_network_interfaces", "NetworkInterfaces", Filters=vpc_filter)]
    sgs = [{"id": sg["GroupId"], "ingress": sg.get("IpPermissions", []), "egress": sg.get("IpPermissionsEgress", [])}
           for sg in _pages(ec2, "describe_security_groups", "SecurityGroups", Filters=vpc_filter)
           if sg.get("GroupName") != "default"]
    return enis, sgs


def _pages(client, method: str, key: str, **params) -> list[dict]:
    if client.can_paginate(method):
        out: list[dict] = []
        for page in client.get_paginator(method).paginate(**params):
            out += page.get(key, [])
        return out
    return getattr(client, method)(**params).get(key, [])


def destroy_inventory(cloud: Cloud, inv: Inventory) -> list[dict]:
    """Delete everything in ``inv`` in dependency order; returns what was deleted
    ({"kind", "id"}). Whatever is already gone is skipped, so this is idempotent."""
    done: list[dict] = []

    def record(kind: str, rid: str, **extra) -> None:
        done.append({"kind": kind, "id": rid, **extra})

    # 1. EKS: node groups, then the cluster (a creating one is waited for first)
    eks = cloud.client("eks")
    for cname in inv.clusters:
        cluster_status = _eks_status(cloud, "cluster", cname)
        if cluster_status in ("CREATING", "UPDATING", "PENDING"):
            cloud.say(f"EKS cluster {cname} is {cluster_status}: waiting before deleting it")
            cloud.wait("eks", "cluster_active", f"wait for EKS cluster {cname} to settle before deleting it",
                       "cluster_create", ok_failure=True, name=cname)
        groups = [n for c, n in inv.nodegroups if c == cname]
        for ng in groups:
            st = _eks_status(cloud, "nodegroup", cname, ng)
            if st in ("CREATING", "UPDATING"):
                cloud.say(f"node group {ng} is {st}: waiting before deleting it")
                cloud.wait("eks", "nodegroup_active", f"wait for node group {ng} to settle before deleting it",
                           "nodegroup_create", ok_failure=True, clusterName=cname, nodegroupName=ng)
            if st is None:
                continue
            if st != "DELETING":
                with cloud.step("delete EKS node group", f"{cname}/{ng}"):
                    try:
                        eks.delete_nodegroup(clusterName=cname, nodegroupName=ng)
                    except ClientError as exc:
                        if not _is_not_found(exc):
                            raise
            record("eks-nodegroup", f"{cname}/{ng}")
        for ng in groups:
            cloud.say(f"waiting for node group {ng} to be deleted")
            cloud.wait("eks", "nodegroup_deleted", f"wait for EKS node group {cname}/{ng} to be deleted",
                       "nodegroup_delete", clusterName=cname, nodegroupName=ng)
        st = _eks_status(cloud, "cluster", cname)
        if st is None:
            continue
        if st != "DELETING":
            cloud.retry_in_use(lambda: eks.delete_cluster(name=cname), f"delete EKS cluster {cname}",
                               "nodegroup_delete")
        record("eks-cluster", cname)
        cloud.say(f"waiting for EKS cluster {cname} to be deleted")
        cloud.wait("eks", "cluster_deleted", f"wait for EKS cluster {cname} to be deleted", "cluster_delete",
                   name=cname)

    # 2. what Kubernetes may have left in the VPC: load balancers, target groups,
    #    network interfaces, security groups
    elbv2 = cloud.client("elbv2")
    v2_arns = []
    for lb in inv.load_balancers:
        if lb["type"] == "elbv2":
            if cloud.retry_in_use(lambda: elbv2.delete_load_balancer(LoadBalancerArn=lb["id"]),
                                  f"delete load balancer {lb['id']}") is not None:
                record("load-balancer (elbv2)", lb["id"])
                v2_arns.append(lb["id"])
        else:
            elb = cloud.client("elb")
            if cloud.retry_in_use(lambda: elb.delete_load_balancer(LoadBalancerName=lb["id"]),
                                  f"delete classic load balancer {lb['id']}") is not None:
                record("load-balancer (elb)", lb["id"])
    if v2_arns:
        cloud.wait("elbv2", "load_balancers_deleted", "wait for load balancers to be deleted",
                   "load_balancer_delete", LoadBalancerArns=v2_arns)
    for tg in inv.target_groups:
        if cloud.retry_in_use(lambda: elbv2.delete_target_group(TargetGroupArn=tg),
                              f"delete target group {tg}") is not None:
            record("target-group", tg)

    ec2 = cloud.client("ec2")
    if inv.vpcs and (inv.clusters or inv.load_balancers):
        # listed again now that the cluster and load balancers are gone: they take
        # some of their interfaces and groups with them, and may have made others
        with cloud.step("list what is left in VPC", ",".join(inv.vpcs)):
            inv.network_interfaces, inv.security_groups = _vpc_leftovers(cloud, inv.vpcs)
    for eni in inv.network_interfaces:
        eid = eni["id"]
        att = eni.get("attachment") or {}
        if eni.get("status") == "in-use":
            if att.get("AttachmentId") and not eni.get("requester_managed") and att.get("DeviceIndex", 0) != 0:
                with cloud.step("detach network interface", eid):
                    try:
                        ec2.detach_network_interface(AttachmentId=att["AttachmentId"], Force=True)
                    except ClientError as exc:
                        if not _is_not_found(exc):
                            raise
            # interfaces of instances, load balancers and EKS go with their owners
            if not cloud.wait("ec2", "network_interface_available",
                              f"wait for network interface {eid} to be released", "network_interface",
                              ok_failure=True, NetworkInterfaceIds=[eid]):
                continue  # it went away by itself
        if cloud.retry_in_use(lambda: ec2.delete_network_interface(NetworkInterfaceId=eid),
                              f"delete network interface {eid}") is not None:
            record("network-interface", eid)

    # security groups may reference each other: drop those rules first
    for sg in inv.security_groups:
        for direction, perms in (("ingress", sg.get("ingress", [])), ("egress", sg.get("egress", []))):
            refs = [p for p in perms if p.get("UserIdGroupPairs")]
            if not refs:
                continue
            clean = [{k: v for k, v in p.items() if k in ("IpProtocol", "FromPort", "ToPort", "UserIdGroupPairs")}
                     for p in refs]
            fn = ec2.revoke_security_group_ingress if direction == "ingress" else ec2.revoke_security_group_egress
            cloud.retry_in_use(lambda: fn(GroupId=sg["id"], IpPermissions=clean),
                               f"revoke {direction} rules of security group {sg['id']}")
    for sg in inv.security_groups:
        if cloud.retry_in_use(lambda: ec2.delete_security_group(GroupId=sg["id"]),
                              f"delete security group {sg['id']}") is not None:
            record("security-group", sg["id"])

    # 3. the buckets: every object version and delete marker, then the bucket
    for bucket in inv.buckets:
        n = _empty_bucket(cloud, bucket)
        s3 = cloud.client("s3")

        def _delete_bucket(b=bucket):
            try:
                return s3.delete_bucket(Bucket=b)
            except ClientError as exc:
                if _code(exc) == "BucketNotEmpty":  # a late writer: empty again, then retry
                    _empty_bucket(cloud, b)
                raise
        if cloud.retry_in_use(_delete_bucket, f"delete S3 bucket {bucket}") is not None:
            record("s3-bucket", bucket, objects_deleted=n)

    # 4. IAM roles: managed policies detached, inline policies and instance profiles removed
    iam = cloud.client("iam")
    for role in inv.roles:
        with cloud.step("detach policies of IAM role", role):
            try:
                for page in iam.get_paginator("list_attached_role_policies").paginate(RoleName=role):
                    for pol in page.get("AttachedPolicies", []):
                        cloud.retry_in_use(lambda: iam.detach_role_policy(RoleName=role, PolicyArn=pol["PolicyArn"]),
                                           f"detach {pol['PolicyName']} from IAM role {role}")
                for page in iam.get_paginator("list_role_policies").paginate(RoleName=role):
                    for pname in page.get("PolicyNames", []):
                        cloud.retry_in_use(lambda: iam.delete_role_policy(RoleName=role, PolicyName=pname),
                                           f"delete inline policy {pname} of IAM role {role}")
                for page in iam.get_paginator("list_instance_profiles_for_role").paginate(RoleName=role):
                    for prof in page.get("InstanceProfiles", []):
                        cloud.retry_in_use(lambda: iam.remove_role_from_instance_profile(
                            InstanceProfileName=prof["InstanceProfileName"], RoleName=role),
                            f"remove IAM role {role} from instance profile {prof['InstanceProfileName']}")
            except ClientError as exc:
                if not _is_not_found(exc):
                    raise
                continue
        if cloud.retry_in_use(lambda: iam.delete_role(RoleName=role), f"delete IAM role {role}") is not None:
            record("iam-role", role)

    # 5. the network: route tables (disassociated first), subnets, internet gateways
    #    (detached first), VPCs
    for rt in inv.route_tables:
        for assoc in rt["associations"]:
            cloud.retry_in_use(lambda: ec2.disassociate_route_table(AssociationId=assoc),
                               f"disassociate route table {rt['id']} ({assoc})")
        if cloud.retry_in_use(lambda: ec2.delete_route_table(RouteTableId=rt["id"]),
                              f"delete route table {rt['id']}") is not None:
            record("route-table", rt["id"])
    for sn in inv.subnets:
        if cloud.retry_in_use(lambda: ec2.delete_subnet(SubnetId=sn), f"delete subnet {sn}") is not None:
            record("subnet", sn)
    for igw in inv.internet_gateways:
        for vpc in igw["vpcs"]:
            cloud.retry_in_use(lambda: ec2.detach_internet_gateway(InternetGatewayId=igw["id"], VpcId=vpc),
                               f"detach internet gateway {igw['id']} from {vpc}")
        if cloud.retry_in_use(lambda: ec2.delete_internet_gateway(InternetGatewayId=igw["id"]),
                              f"delete internet gateway {igw['id']}") is not None:
            record("internet-gateway", igw["id"])
    for vpc in inv.vpcs:
        if cloud.retry_in_use(lambda: ec2.delete_vpc(VpcId=vpc), f"delete VPC {vpc}") is not None:
            record("vpc", vpc)
    return done


def _eks_status(cloud: Cloud, kind: str, cluster: str, nodegroup: str | None = None) -> str | None:
    eks = cloud.client("eks")
    what = f"{cluster}/{nodegroup}" if nodegroup else cluster
    with cloud.step(f"describe EKS {kind}", what):
        try:
            if nodegroup:
                return eks.describe_nodegroup(clusterName=cluster, nodegroupName=nodegroup)["nodegroup"]["status"]
            return eks.describe_cluster(name=cluster)["cluster"]["status"]
        except ClientError as exc:
            if _is_not_found(exc):
                return None
            raise


def _empty_bucket(cloud: Cloud, bucket: str) -> int:
    """Delete every object version, delete marker and unfinished multipart upload."""
    s3 = cloud.client("s3")
    deleted = 0
    with cloud.step("empty S3 bucket", bucket):
        try:
            for _ in range(5):  # passes: a late writer may add objects while we delete
                batch_seen = 0
                for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
                    objs = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                            for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]
                    for i in range(0, len(objs), 1000):
                        chunk = objs[i:i + 1000]
                        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
                        errs = resp.get("Errors", [])
                        if errs:
                            e = errs[0]
                            raise StackproofError(f"aws: empty S3 bucket {bucket}: {len(errs)} objects not deleted "
                                                  f"(first: {_scrub(e.get('Code'))}: {_scrub(e.get('Message'))})")
                        deleted += len(chunk)
                        batch_seen += len(chunk)
                if not batch_seen:
                    break
            for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                for up in page.get("Uploads", []):
                    s3.abort_multipart_upload(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        except ClientError as exc:
            if not _is_not_found(exc):
                raise
    return deleted


# ---------------------------------------------------------------------------
# the EKS bearer token and kubeconfig


def eks_token(sts_client, cluster_name: str) -> str:
    """The bearer token EKS accepts (aws-iam-authenticator's format, as ``aws eks
    get-token`` makes it): a presigned STS GetCallerIdentity URL (valid 60 s) with the
    ``x-k8s-aws-id: <cluster>`` header among the signed headers, base64url without
    padding, prefixed ``k8s-aws-v1.``. A secret: never log it."""

    def add_header(request, **_kwargs):
        request.headers[K8S_AWS_ID_HEADER] = cluster_name

    handler_id = f"stackproof-k8s-aws-id-{uuid.uuid4().hex}"
    sts_client.meta.events.register("before-sign.sts.GetCallerIdentity", add_header, unique_id=handler_id)
    try:
        url = sts_client.generate_presigned_url("get_caller_identity", Params={}, ExpiresIn=PRESIGN_EXPIRES,
                                                HttpMethod="GET")
    finally:
        sts_client.meta.events.unregister("before-sign.sts.GetCallerIdentity", unique_id=handler_id)
    return TOKEN_PREFIX + base64.urlsafe_b64encode(url.encode()).decode().rstrip("=")


def build_kubeconfig(cluster_name: str, endpoint: str, ca_data: str, token: str, user: str = "stackproof") -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint,
                                                         "certificate-authority-data": ca_data}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": user}}],
        "current-context": cluster_name,
    }


# ---------------------------------------------------------------------------
# the provider


class AWSProvider(DeployerVerbs, Provider):
    name = "aws"

    def __init__(self, run_id: str | None = None, region: str | None = None, owner: str | None = None,
                 ttl: timedelta = DEFAULT_TTL, name_prefix: str = "stackproof",
                 deployer_factory: Callable[..., Any] | None = None, *,
                 poll_interval: float | None = None, timeouts: dict | None = None,
                 kubernetes_version: str | None = None, instance_types: tuple[str, ...] = ("t3.large",),
                 node_count: int = 2, vpc_cidr: str = "10.42.0.0/16", zones: list[str] | None = None,
                 state_dir: Path | None = None, progress: Callable[[str], None] = say):
        if not isinstance(name_prefix, str) or not _PREFIX_RE.match(name_prefix):
            raise ConfigError(f"aws: name prefix {name_prefix!r} must be 1-12 lower-case letters, digits or '-'")
        self.run_id = check_run_id(run_id, name_prefix) if run_id is not None else "sp" + uuid.uuid4().hex[:10]
        self.region = region_from_env(region)
        # a tag value: letters, digits, spaces and _ . : / = + - @
        self.owner = re.sub(r"[^\w .:/=+\-@]", "_", owner or os.environ.get("STACKPROOF_OWNER")
                            or _default_owner())[:200] or "unknown"
        self.ttl = ttl
        self.names = Names(name_prefix, self.run_id)
        self.deployer_factory = deployer_factory
        self.kubernetes_version = kubernetes_version
        self.instance_types = list(instance_types)
        self.node_count = int(node_count)
        try:
            net = ipaddress.ip_network(vpc_cidr)
        except ValueError:
            raise ConfigError(f"aws: VPC CIDR {vpc_cidr!r} is not a network") from None
        if not (16 <= net.prefixlen <= 24) or net.version != 4:
            raise ConfigError(f"aws: VPC CIDR {vpc_cidr!r} must be an IPv4 network from /16 to /24")
        self.vpc_cidr = str(net)
        self.zones = list(zones) if zones else None
        self.say = progress
        self.cloud = Cloud(self.region, poll_interval=poll_interval, timeouts=timeouts, progress=progress)
        self.state_dir = Path(state_dir) if state_dir else state_root() / f"aws-{self.run_id}"
        self.state: dict = self._load_state()
        self._deployer = None

    # -- counts -------------------------------------------------------------
    @property
    def api_calls(self) -> Counter:
        """API calls per operation (``service:Operation``), all phases."""
        return self.cloud.calls

    @property
    def api_calls_by_phase(self) -> dict[str, Counter]:
        return self.cloud.calls_by_phase

    # -- state ------------------------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    @property
    def target_file(self) -> Path:
        return self.state_dir / "target.yaml"

    def _load_state(self) -> dict:
        return read_state(self.state_file, "aws: state file")

    def _save_state(self) -> None:
        """Persist ids after each step, so a later process can resume or destroy."""
        write_state(self.state_file, self.state)

    def tags(self) -> dict[str, str]:
        return {TAG_MANAGED: "true", TAG_OWNER: self.owner, TAG_RUN: self.run_id,
                TAG_EXPIRES: self.state["expires"], TAG_CREATED: self.state["created"], TAG_REGION: self.region}

    # -- create ------------------------------------------------------------------
    def create(self) -> None:
        """Make the network, bucket, roles, cluster and node group; resumes a failed create
        (steps already done, as the state file records them, are skipped)."""
        with self.cloud.phase_of("create"):
            if self.state.get("complete"):
                return
            if not self.state:
                now = _utcnow()
                self.state = {"provider": "aws", "run_id": self.run_id, "region": self.region,
                              "owner": self.owner, "name_prefix": self.names.prefix,
                              "created": _iso(now), "expires": _iso(now + self.ttl)}
                self._save_state()
            self.say(f"aws: creating run {self.run_id} in {self.region} (expires {self.state['expires']})")
            if "account" not in self.state:
                self.state.update(self.cloud.identity())
                self._save_state()
            self._create_vpc()
            self._create_subnets()
            self._create_internet_gateway()
            self._create_routes()
            for store in BUCKET_STORES:
                self._create_bucket(store)
            self._create_roles()
            self._create_cluster()
            self._create_nodegroup()
            self.state["complete"] = True
            self._save_state()

    def _create_vpc(self) -> None:
        ec2 = self.cloud.client("ec2")
        name = f"{self.names.cluster}-vpc"
        if "vpc" not in self.state:
            with self.cloud.step("create VPC", name):
                vpc = ec2.create_vpc(CidrBlock=self.vpc_cidr, TagSpecifications=[{
                    "ResourceType": "vpc", "Tags": ec2_tags({**self.tags(), "Name": name})}])["Vpc"]
            self.state["vpc"] = vpc["VpcId"]
            self._save_state()
        vpc_id = self.state["vpc"]
        if not self.state.get("vpc_ready"):
            self.cloud.wait("ec2", "vpc_available", f"wait for VPC {vpc_id} to be available", "vpc", VpcIds=[vpc_id])
            with self.cloud.step("enable DNS hostnames of VPC", vpc_id):
                ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsSupport={"Value": True})
                ec2.modify_vpc_attribute(VpcId=vpc_id, EnableDnsHostnames={"Value": True})
            self.state["vpc_ready"] = True
            self._save_state()

    def _create_subnets(self) -> None:
        ec2 = self.cloud.client("ec2")
        if "zones" not in self.state:
            zones = self.zones
            if not zones:
                with self.cloud.step("list availability zones of", self.region):
                    azs = ec2.describe_availability_zones(Filters=[
                        {"Name": "state", "Values": ["available"]},
                        {"Name": "zone-type", "Values": ["availability-zone"]}])["AvailabilityZones"]
                zones = sorted(z["ZoneName"] for z in azs)[:2]
            if len(zones) < 2:
                raise StackproofError(f"aws: region {self.region} has fewer than two available zones for EKS")
            self.state["zones"] = zones[:2]
            self._save_state()
        subnets = self.state.setdefault("subnets", [])
        net = ipaddress.ip_network(self.vpc_cidr)
        blocks = list(net.subnets(prefixlen_diff=3))  # eighths: room for more subnets later
        for i, zone in enumerate(self.state["zones"]):
            if i < len(subnets):
                continue
            cidr = str(blocks[i])
            name = f"{self.names.cluster}-public-{zone}"
            tags = {**self.tags(), "Name": name, "kubernetes.io/role/elb": "1",
                    f"kubernetes.io/cluster/{self.names.cluster}": "shared"}
            with self.cloud.step("create subnet", f"{name} ({cidr})"):
                sn = ec2.create_subnet(VpcId=self.state["vpc"], CidrBlock=cidr, AvailabilityZone=zone,
                                       TagSpecifications=[{"ResourceType": "subnet", "Tags": ec2_tags(tags)}])
            subnets.append(sn["Subnet"]["SubnetId"])
            self._save_state()
        if not self.state.get("subnets_public"):
            for sid in subnets:
                with self.cloud.step("map public IPs on launch in subnet", sid):
                    ec2.modify_subnet_attribute(SubnetId=sid, MapPublicIpOnLaunch={"Value": True})
            self.state["subnets_public"] = True
            self._save_state()

    def _create_internet_gateway(self) -> None:
        ec2 = self.cloud.client("ec2")
        name = f"{self.names.cluster}-igw"
        if "internet_gateway" not in self.state:
            with self.cloud.step("create internet gateway", name):
                igw = ec2.create_internet_gateway(TagSpecifications=[{
                    "ResourceType": "internet-gateway", "Tags": ec2_tags({**self.tags(), "Name": name})}])
            self.state["internet_gateway"] = igw["InternetGateway"]["InternetGatewayId"]
            self._save_state()
        if not self.state.get("internet_gateway_attached"):
            igw_id = self.state["internet_gateway"]
            with self.cloud.step("attach internet gateway", f"{igw_id} to {self.state['vpc']}"):
                ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=self.state["vpc"])
            self.state["internet_gateway_attached"] = True
            self._save_state()

    def _create_routes(self) -> None:
        ec2 = self.cloud.client("ec2")
        name = f"{self.names.cluster}-public"
        if "route_table" not in self.state:
            with self.cloud.step("create route table", name):
                rt = ec2.create_route_table(VpcId=self.state["vpc"], TagSpecifications=[{
                    "ResourceType": "route-table", "Tags": ec2_tags({**self.tags(), "Name": name})}])
            self.state["route_table"] = rt["RouteTable"]["RouteTableId"]
            self._save_state()
        rt_id = self.state["route_table"]
        if not self.state.get("default_route"):
            with self.cloud.step("create default route in route table", rt_id):
                ec2.create_route(RouteTableId=rt_id, DestinationCidrBlock="0.0.0.0/0",
                                 GatewayId=self.state["internet_gateway"])
            self.state["default_route"] = True
            self._save_state()
        assocs = self.state.setdefault("route_table_associations", {})
        for sid in self.state["subnets"]:
            if sid in assocs:
                continue
            with self.cloud.step("associate route table", f"{rt_id} with subnet {sid}"):
                assocs[sid] = ec2.associate_route_table(RouteTableId=rt_id, SubnetId=sid)["AssociationId"]
            self._save_state()

    def _create_bucket(self, store: str) -> None:
        """The bucket of one store, tagged, public access blocked."""
        s3 = self.cloud.client("s3")
        bucket = self.names.bucket(self.state["account"], self.region, store)
        buckets = self.state.setdefault("buckets", {})
        if store not in buckets:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if self.region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            with self.cloud.step(f"create S3 bucket for {store}", bucket):
                try:
                    s3.create_bucket(**kwargs)
                except ClientError as exc:
                    if _code(exc) != "BucketAlreadyOwnedByYou":
                        raise
            buckets[store] = bucket
            self._save_state()
        configured = self.state.setdefault("buckets_configured", [])
        if store not in configured:
            with self.cloud.step("tag S3 bucket", bucket):
                s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": ec2_tags(self.tags())})
            with self.cloud.step("block public access to S3 bucket", bucket):
                s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True})
            configured.append(store)
            self._save_state()

    def _policy_arn(self, name: str) -> str:
        return f"arn:{self.state.get('partition', 'aws')}:iam::aws:policy/{name}"

    def _create_roles(self) -> None:
        iam = self.cloud.client("iam")
        roles = self.state.setdefault("roles", {})
        attached = self.state.setdefault("role_policies", {})
        partition = self.state.get("partition", "aws")
        bucket_arns = [f"arn:{partition}:s3:::{self.state['buckets'][store]}" for store in BUCKET_STORES]
        for kind, role, service, policies in (
                ("cluster", self.names.cluster_role, "eks.amazonaws.com", CLUSTER_POLICIES),
                ("node", self.names.node_role, "ec2.amazonaws.com", NODE_POLICIES)):
            if kind not in roles:
                trust = {"Version": "2012-10-17", "Statement": [{
                    "Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}
                with self.cloud.step("create IAM role", role):
                    try:
                        arn = iam.create_role(
                            RoleName=role, Path=self.names.role_path, AssumeRolePolicyDocument=json.dumps(trust),
                            Description=f"stackproof run {self.run_id}: {kind}", Tags=ec2_tags(self.tags()),
                        )["Role"]["Arn"]
                    except ClientError as exc:
                        if _code(exc) != "EntityAlreadyExists":
                            raise
                        existing = iam.get_role(RoleName=role)["Role"]  # ours only if tagged with this run
                        if tag_dict(iam.list_role_tags(RoleName=role).get("Tags")).get(TAG_RUN) != self.run_id:
                            raise
                        arn = existing["Arn"]
                roles[kind] = arn
                self._save_state()
            done = attached.setdefault(kind, [])
            for pol in policies:
                if pol in done:
                    continue
                with self.cloud.step("attach policy to IAM role", f"{pol} to {role}"):
                    iam.attach_role_policy(RoleName=role, PolicyArn=self._policy_arn(pol))
                done.append(pol)
                self._save_state()
            if kind == "node" and NODE_BUCKET_POLICY not in done:
                doc = {"Version": "2012-10-17", "Statement": [  # the buckets made, nothing wider
                    {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"], "Resource": bucket_arns},
                    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
                     "Resource": [f"{arn}/*" for arn in bucket_arns]}]}
                with self.cloud.step("put bucket access policy on IAM role", role):
                    iam.put_role_policy(RoleName=role, PolicyName=NODE_BUCKET_POLICY, PolicyDocument=json.dumps(doc))
                done.append(NODE_BUCKET_POLICY)
                self._save_state()

    def _create_cluster(self) -> None:
        eks = self.cloud.client("eks")
        name = self.names.cluster
        if "cluster" not in self.state:
            kwargs: dict[str, Any] = {
                "name": name, "roleArn": self.state["roles"]["cluster"],
                "resourcesVpcConfig": {"subnetIds": list(self.state["subnets"]), "endpointPublicAccess": True,
                                       "endpointPrivateAccess": True},
                "tags": self.tags(),
            }
            if self.kubernetes_version:
                kwargs["version"] = self.kubernetes_version
            self.say(f"aws: creating EKS cluster {name} (10-15 minutes on AWS)")
            deadline = time.monotonic() + float(self.cloud.timeouts["iam_propagation"])
            while True:
                try:
                    with self.cloud.step("create EKS cluster", name):
                        try:
                            eks.create_cluster(**kwargs)
                        except ClientError as exc:
                            if _code(exc) == "ResourceInUseException" and _eks_status(self.cloud, "cluster", name):
                                pass  # made by an earlier attempt of this run (names are per run)
                            elif (_code(exc) == "InvalidParameterException" and "role" in _describe_error(exc).lower()
                                  and time.monotonic() < deadline):
                                raise _RetryLater() from None  # a new IAM role is not visible to EKS yet
                            else:
                                raise
                    break
                except _RetryLater:
                    time.sleep(self.cloud.delay(DEFAULT_POLL_INTERVAL))
            self.state["cluster"] = {"name": name}
            self._save_state()
        if self.state["cluster"].get("status") != "ACTIVE":
            self.cloud.wait("eks", "cluster_active", f"wait for EKS cluster {name} to be ACTIVE", "cluster_create",
                            name=name)
            with self.cloud.step("describe EKS cluster", name):
                c = eks.describe_cluster(name=name)["cluster"]
            self.state["cluster"] = {"name": name, "status": c["status"], "endpoint": c.get("endpoint"),
                                     "ca": (c.get("certificateAuthority") or {}).get("data"),
                                     "version": c.get("version"), "arn": c.get("arn")}
            self._save_state()

    def _create_nodegroup(self) -> None:
        eks = self.cloud.client("eks")
        cluster, ng = self.names.cluster, self.names.nodegroup
        if "nodegroup" not in self.state:
            self.say(f"aws: creating node group {ng} ({self.node_count} x {', '.join(self.instance_types)})")
            with self.cloud.step("create EKS node group", f"{cluster}/{ng}"):
                try:
                    eks.create_nodegroup(
                        clusterName=cluster, nodegroupName=ng, nodeRole=self.state["roles"]["node"],
                        subnets=list(self.state["subnets"]), instanceTypes=self.instance_types,
                        scalingConfig={"minSize": self.node_count, "maxSize": self.node_count + 1,
                                       "desiredSize": self.node_count},
                        labels={"stackproof/run-id": self.run_id}, tags=self.tags())
                except ClientError as exc:
                    if not (_code(exc) == "ResourceInUseException"
                            and _eks_status(self.cloud, "nodegroup", cluster, ng)):
                        raise
            self.state["nodegroup"] = {"name": ng}
            self._save_state()
        if self.state["nodegroup"].get("status") != "ACTIVE":
            self.cloud.wait("eks", "nodegroup_active", f"wait for EKS node group {cluster}/{ng} to be ACTIVE",
                            "nodegroup_create", clusterName=cluster, nodegroupName=ng)
            self.state["nodegroup"]["status"] = "ACTIVE"
            self._save_state()

    # -- kubeconfig and the deployer ------------------------------------------------
    def kubeconfig(self) -> dict:
        """A kubeconfig dict for the cluster, with a fresh EKS bearer token (valid about
        15 minutes; a secret). Built without the aws CLI."""
        with self.cloud.phase_of("kubeconfig"):
            c = self.state.get("cluster") or {}
            if not c.get("endpoint") or not c.get("ca"):
                with self.cloud.step("describe EKS cluster", self.names.cluster):
                    info = self.cloud.client("eks").describe_cluster(name=self.names.cluster)["cluster"]
                c = {**c, "endpoint": info.get("endpoint"), "ca": (info.get("certificateAuthority") or {}).get("data")}
            if not c.get("endpoint") or not c.get("ca"):
                raise StackproofError(f"aws: EKS cluster {self.names.cluster} has no endpoint or CA yet")
            with self.cloud.step("sign an EKS token for cluster", self.names.cluster):
                token = eks_token(self.cloud.client("sts"), self.names.cluster)
            return build_kubeconfig(self.names.cluster, c["endpoint"], c["ca"], token,
                                    user=f"{self.names.prefix}-{self.run_id}")

    def labels(self) -> dict[str, str]:
        return {"app.kubernetes.io/managed-by": "stackproof", "stackproof/run-id": _label_value(self.run_id),
                "stackproof/owner": _label_value(self.owner)}

    def storage(self) -> dict:
        """What the deployer needs: the bucket of each store that has one (``buckets``;
        not a store that keeps its data on its volume, as the logs store does);
        ``bucket`` (the first, the metrics store's) because the deployer's storage
        check asks for one."""
        known = self.state.get("buckets") or {}  # may name a bucket an older version made: not handed on
        buckets = {store: known.get(store) or self.names.bucket(self.state.get("account", ""), self.region, store)
                   for store in BUCKET_STORES}
        return {"type": "s3", "bucket": buckets[BUCKET_STORES[0]], "buckets": buckets, "region": self.region}

    def _make_deployer(self, where: str, namespace: str | None = None):
        """The Kubernetes deployer for this cluster (a fresh token each time); errors are
        one line prefixed with ``where`` (the step). ``namespace``: a sibling platform's
        (:meth:`sibling`), with its own S3 server in the cluster rather than the run's buckets."""
        factory = self.deployer_factory
        if factory is None:
            try:
                from .kube import KubeDeployer  # another module; imported only when needed
            except ImportError as exc:
                raise StackproofError(f"{where}: the Kubernetes deployer (harness.providers.kube) is not "
                                      f"available: {_scrub(exc)}") from None
            factory = KubeDeployer
        kubeconfig = self.kubeconfig()
        try:
            if namespace is not None:
                return factory(kubeconfig, namespace, None, self.labels())
            return factory(kubeconfig, self.names.namespace, self.storage(), self.labels())
        except StackproofError as exc:
            raise _rewrap(exc, where, kubeconfig) from None
        except Exception as exc:
            raise StackproofError(f"{where}: cannot set up the Kubernetes client: "
                                  f"{_one_line(exc, kubeconfig)}") from None

    def _save_target(self, target: Target, release: Release) -> Target:
        target.provider = "aws"
        target.release = release.name
        target.save(target.path or self.target_file)  # owner-only: it holds the tenants' tokens
        return target

    def deploy(self, release: Release) -> Target:
        """Create the cloud resources (if not yet made), then hand the cluster to the
        Kubernetes deployer; returns its target (saved as a target file)."""
        if not self.state.get("complete"):
            self.create()
        where = f"aws: deploy {release.name} to EKS cluster {self.names.cluster}"
        with self.cloud.phase_of("deploy"):
            self.state["namespace"] = self.names.namespace  # before anything runs there: destroy cleans it
            self._save_state()
            deployer = self._make_deployer(where)
            self._deployer = deployer
            timeout = int(self.cloud.timeouts["deploy"])
            try:
                target = deployer.deploy(release, tenants=None, timeout=timeout)
            except StackproofError as exc:
                raise _rewrap(exc, where) from None
            except Exception as exc:
                raise StackproofError(f"{where}: {_one_line(exc)}") from None
            self.state["release"] = release.name
            self._save_state()
            return self._save_target(target, release)

    def upgrade(self, release: Release, on_swap: SwapHook | None = None) -> Target:
        where = f"aws: upgrade EKS cluster {self.names.cluster} to {release.name}"
        if not self.state.get("complete"):
            raise StackproofError(f"{where}: nothing deployed for run {self.run_id}")
        with self.cloud.phase_of("upgrade"):
            deployer = self._make_deployer(where)  # a fresh token: the old one may have expired
            self._deployer = deployer
            try:
                target = deployer.upgrade(release, on_swap=on_swap, timeout=int(self.cloud.timeouts["deploy"]))
            except StackproofError as exc:
                raise _rewrap(exc, where) from None
            except Exception as exc:
                raise StackproofError(f"{where}: {_one_line(exc)}") from None
            self.state["release"] = release.name
            self._save_state()
            return self._save_target(target, release)

    def _deployer_for(self, what: str):
        """The deployer for one of the deployer's verbs (:class:`~.kube.verbs.DeployerVerbs`), with a
        fresh token; an error names the verb."""
        return self._make_deployer(f"aws: {what}")

    @property
    def deployer(self):
        """The platform's deployer, with a fresh token (what :mod:`fixtures.liveness` asks)."""
        return self._make_deployer("aws: the platform's deployer")

    def sibling(self, platform: str):
        """A platform of its own in namespace ``platform`` of this run's EKS cluster, with its
        own S3 server (:class:`~harness.providers.kube.sibling.SiblingPlatform`); its destroy
        deletes that namespace only."""
        from .kube.sibling import SiblingPlatform

        return SiblingPlatform(platform, lambda ns: self._make_deployer(f"aws: platform {ns}", namespace=ns), "aws",
                               timeout=int(self.cloud.timeouts["deploy"]))

    # -- destroy, status, artifacts ------------------------------------------------
    def _delete_namespace(self) -> None:
        """Best effort: deleting the namespace makes Kubernetes delete its cloud load
        balancers before the VPC goes."""
        if not self.state.get("namespace") or not self.state.get("cluster"):
            return
        if _eks_status(self.cloud, "cluster", self.names.cluster) != "ACTIVE":
            return
        try:
            deployer = self._make_deployer(f"aws: delete namespace {self.names.namespace}")
            deployer.delete(timeout=int(self.cloud.timeouts["namespace_delete"]))
            self.say(f"aws: namespace {self.names.namespace} deleted")
        except Exception as exc:  # the cloud teardown below must run regardless
            self.say(f"aws: could not delete namespace {self.names.namespace} (continuing): {_one_line(exc)}")

    def destroy(self) -> list[dict]:
        """Delete everything of this run, in reverse order. Works from tags and names
        alone (a new process, a lost state file), resumes after a failed create or a
        failed destroy, and is a no-op when nothing is left. Returns what it deleted."""
        with self.cloud.phase_of("destroy"):
            self.state = self._load_state() or self.state
            self._delete_namespace()
            account = self.state.get("account") or self.cloud.identity()["account"]
            inv = discover_run(self.cloud, self.names, account, hints=self.state)
            if inv.empty():
                self.say(f"aws: nothing of run {self.run_id} left in {self.region}")
                deleted: list[dict] = []
            else:
                self.say(f"aws: deleting {len(inv.records())} resources of run {self.run_id}")
                deleted = destroy_inventory(self.cloud, inv)
            shutil.rmtree(self.state_dir, ignore_errors=True)
            self.state = {}
            self._deployer = None
            return deleted

    def status(self) -> dict:
        with self.cloud.phase_of("status"):
            out: dict[str, Any] = {"provider": "aws", "run_id": self.run_id, "region": self.region,
                                   "state_file": str(self.state_file), "expires": self.state.get("expires"),
                                   "owner": self.owner}
            if not self.state:
                out["state"] = "absent"
                return out
            out["vpc"] = self.state.get("vpc")
            out["buckets"] = self.state.get("buckets")
            cl = _eks_status(self.cloud, "cluster", self.names.cluster) if self.state.get("cluster") else None
            ng = (_eks_status(self.cloud, "nodegroup", self.names.cluster, self.names.nodegroup)
                  if cl and self.state.get("nodegroup") else None)
            out["cluster"] = {"name": self.names.cluster, "status": cl,
                              "endpoint": (self.state.get("cluster") or {}).get("endpoint")}
            out["nodegroup"] = {"name": self.names.nodegroup, "status": ng}
            out["release"] = self.state.get("release")
            out["state"] = ("running" if self.state.get("release") and cl == "ACTIVE" and ng == "ACTIVE" else
                            "created" if self.state.get("complete") else "partial")
            return out

    def collect_artifacts(self, dest: Path) -> list[Path]:
        """The deployer's logs and manifests (if deployed), the run's resource ids and its
        API call counts. Nothing here holds a token."""
        dest = Path(dest)
        dest.mkdir(parents=True, exist_ok=True)
        out: list[Path] = []
        if self._deployer is not None:
            try:
                out += list(self._deployer.collect_artifacts(dest))
            except Exception as exc:
                self.say(f"aws: could not collect Kubernetes artifacts: {_one_line(exc)}")
        res = dest / "aws-resources.json"
        res.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        calls = dest / "aws-api-calls.json"
        calls.write_text(json.dumps({"total": dict(self.api_calls), "by_phase": {
            k: dict(v) for k, v in self.api_calls_by_phase.items()}}, indent=2, sort_keys=True) + "\n")
        return out + [res, calls]


class _RetryLater(Exception):
    pass


def _default_owner() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _one_line(exc: BaseException, kubeconfig: dict | None = None) -> str:
    text = str(exc).splitlines()[0] if str(exc).strip() else ""
    if kubeconfig:
        for u in kubeconfig.get("users", []):
            tok = (u.get("user") or {}).get("token")
            if tok:
                text = text.replace(tok, "***")
    text = _scrub(text)
    name = type(exc).__name__
    return f"{name}: {text}" if text and not isinstance(exc, StackproofError) else (text or name)


def _rewrap(exc: StackproofError, where: str, kubeconfig: dict | None = None) -> StackproofError:
    """The same kind of error, its message prefixed with the step (ComponentError keeps its log tail)."""
    msg = _one_line(exc, kubeconfig)
    if msg.startswith("aws: "):
        new_msg = msg
    else:
        new_msg = f"{where}: {msg}"
    try:
        new = type(exc)(new_msg)
    except TypeError:
        new = StackproofError(new_msg)
    if hasattr(exc, "log_tail"):
        new.log_tail = exc.log_tail  # type: ignore[attr-defined]
    return new


# ---------------------------------------------------------------------------
# the janitor


def janitor(older_than: timedelta | None = None, run_id: str | None = None, dry_run: bool = False,
            region: str | None = None, *, now: datetime | None = None, name_prefix: str = "stackproof",
            poll_interval: float | None = None, timeouts: dict | None = None,
            progress: Callable[[str], None] = say) -> list[dict]:
    """Find what stackproof made in ``region`` (and IAM) and delete the runs that are
    past their ``stackproof:expires`` tag, or were created more than ``older_than``
    ago, or (with ``run_id``) everything of that one run regardless of age.

    Discovery goes service by service: EC2 by the ``stackproof:managed`` tag, EKS
    clusters, IAM roles (under the ``/<prefix>/`` path) and S3 buckets by name prefix,
    then their tags. Each selected run is deleted with the same code as
    ``AWSProvider.destroy`` (dependency order, idempotent). Returns one dict per
    resource: kind, id, run_id, expires, action ("deleted", "would delete", or
    "failed" with an "error" line when that run's deletion failed)."""
    region = region_from_env(region)
    if run_id is not None:
        check_run_id(run_id, name_prefix)
    now = now or _utcnow()
    cloud = Cloud(region, poll_interval=poll_interval, timeouts=timeouts, progress=progress)
    with cloud.phase_of("janitor"):
        account = cloud.identity()["account"]
        runs = scan_runs(cloud, account, name_prefix)
        selected = []
        for rid, meta in sorted(runs.items()):
            if run_id is not None:
                if rid == run_id:
                    selected.append(rid)
                continue
            expires, created = meta.get("expires"), meta.get("created")
            if expires is not None and expires <= now:
                selected.append(rid)
            elif older_than is not None and created is not None and created <= now - older_than:
                selected.append(rid)
        if run_id is not None and run_id not in selected:
            selected.append(run_id)  # by name alone: a run whose tags never got written
        out: list[dict] = []
        for rid in selected:
            meta = runs.get(rid, {})
            expires = _iso(meta["expires"]) if meta.get("expires") else None
            names = Names(name_prefix, rid)
            inv = discover_run(cloud, names, account)
            if inv.empty():
                continue
            base = {"run_id": rid, "expires": expires}
            if dry_run:
                out += [{**r, **base, "action": "would delete"} for r in inv.records()]
                continue
            progress(f"aws janitor: deleting run {rid} (expires {expires or 'unknown'})")
            try:
                deleted = destroy_inventory(cloud, inv)
                out += [{**r, **base, "action": "deleted"} for r in deleted]
            except StackproofError as exc:
                out += [{**r, **base, "action": "failed", "error": str(exc)} for r in inv.records()]
        progress(f"aws janitor: {len(out)} resources, {sum(cloud.calls.values())} API calls")
        return out


def scan_runs(cloud: Cloud, account: str, name_prefix: str = "stackproof") -> dict[str, dict]:
    """Every stackproof run with anything in this region: run id -> {"expires", "created"}
    (the earliest seen on any of its resources; None when no resource says)."""
    region = cloud.region
    runs: dict[str, dict] = {}

    def seen(rid: str | None, tags: dict[str, str], created: datetime | None = None) -> None:
        if not rid or not _RUN_ID_RE.match(rid):
            return
        if tags.get(TAG_REGION) and tags[TAG_REGION] != region:
            return
        meta = runs.setdefault(rid, {"expires": None, "created": None})
        for key, value in (("expires", _parse_iso(tags.get(TAG_EXPIRES))),
                           ("created", _parse_iso(tags.get(TAG_CREATED)) or created)):
            if value is not None and (meta[key] is None or value < meta[key]):
                meta[key] = value

    managed = [{"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]}]
    ec2 = cloud.client("ec2")
    with cloud.step("janitor: list tagged EC2 resources in", region):
        for vpc in _pages(ec2, "describe_vpcs", "Vpcs", Filters=managed):
            t = tag_dict(vpc.get("Tags"))
            seen(t.get(TAG_RUN), t)
        for igw in _pages(ec2, "describe_internet_gateways", "InternetGateways", Filters=managed):
            t = tag_dict(igw.get("Tags"))
            seen(t.get(TAG_RUN), t)
    eks = cloud.client("eks")
    with cloud.step("janitor: list EKS clusters in", region):
        for page in eks.get_paginator("list_clusters").paginate():
            for cname in page.get("clusters", []):
                if not cname.startswith(f"{name_prefix}-"):
                    continue
                try:
                    c = eks.describe_cluster(name=cname)["cluster"]
                except ClientError as exc:
                    if _is_not_found(exc):
                        continue
                    raise
                t = c.get("tags") or {}
                if t.get(TAG_MANAGED) == "true":
                    seen(t.get(TAG_RUN), t, c.get("createdAt"))
    iam = cloud.client("iam")
    with cloud.step("janitor: list IAM roles under", f"/{name_prefix}/"):
        for page in iam.get_paginator("list_roles").paginate(PathPrefix=f"/{name_prefix}/"):
            for role in page.get("Roles", []):
                try:
                    t = tag_dict(iam.list_role_tags(RoleName=role["RoleName"]).get("Tags"))
                except ClientError as exc:
                    if _is_not_found(exc):
                        continue
                    raise
                if t.get(TAG_MANAGED) == "true":
                    seen(t.get(TAG_RUN), t, role.get("CreateDate"))
    with cloud.step("janitor: list S3 buckets of account", account):
        # a bucket store's (tagged or not) by its name; any other by its tags
        for b, t in _tagged_buckets(cloud, f"{name_prefix}-"):
            tag_run = t.get(TAG_RUN) if t.get(TAG_MANAGED) == "true" else None
            seen(tag_run or _bucket_run_id(b["Name"], name_prefix, account, region), t, b.get("CreationDate"))
    return runs
