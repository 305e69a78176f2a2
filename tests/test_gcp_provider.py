"""The gcp provider end to end through the real google-cloud-container and
google-cloud-storage clients, over HTTP, to the GKE/GCS test double
(``tests/gke_double.py``): no Google account is reached from here."""

from __future__ import annotations

import base64
import datetime as dt
import shutil
import stat
from datetime import timedelta

import pytest
from cryptography import x509
from google.oauth2.credentials import Credentials

from harness.errors import ConfigError, StackproofError
from harness.providers.gcp import (LABEL_EXPIRES, LABEL_MANAGED, LABEL_OWNER, LABEL_RUN_ID,
                                   GCPProvider, fit_name, format_expiry, is_stockout, janitor, label_value,
                                   parse_expiry)
from harness.releases import Release
from harness.target import Target, Tenant

from .gke_double import GKEDouble

PROJECT = "stackproof-test-1"
ZA, ZB = "us-central1-a", "us-central1-b"
TOKEN = "ya29.test-token-d0ub1e"  # what the credentials in use hold; must never reach a message


@pytest.fixture
def double(state_dir, monkeypatch):
    for var in ("GOOGLE_CLOUD_PROJECT", "STACKPROOF_GCP_PROJECT", "STACKPROOF_GCP_LOCATIONS"):
        monkeypatch.delenv(var, raising=False)
    with GKEDouble(polls_to_done=2) as d:
        monkeypatch.setenv("STACKPROOF_GKE_ENDPOINT", d.url)
        monkeypatch.setenv("STACKPROOF_GCS_ENDPOINT", d.url)
        yield d


class Say(list):
    def __call__(self, msg: str) -> None:
        self.append(msg)


class RecordingDeployer:
    """Stands in for harness.providers.kube.KubeDeployer (another module,
    which needs a real Kubernetes API): records what the provider hands it."""

    made: list["RecordingDeployer"] = []

    def __init__(self, kubeconfig: dict, namespace: str, storage: dict, labels: dict):
        self.kubeconfig, self.namespace, self.storage, self.labels = kubeconfig, namespace, storage, labels
        self.calls: list[str] = []
        RecordingDeployer.made.append(self)

    def deploy(self, release, tenants=None, timeout=900) -> Target:
        self.calls.append(f"deploy {release.name}")
        return Target(name=self.namespace, gateway_url="https://gateway.invalid",
                      tenants=[Tenant("tenant-a", "secret-a"), Tenant("stackproof-system", "secret-s", "system")])

    def upgrade(self, release, on_swap=None, timeout=900) -> Target:
        self.calls.append(f"upgrade {release.name}")
        return Target(name=self.namespace, gateway_url="https://gateway.invalid",
                      tenants=[Tenant("tenant-a", "secret-a"), Tenant("stackproof-system", "secret-s", "system")])

    def collect_artifacts(self, dest):
        self.calls.append("collect")
        return []

    def delete(self, timeout=300) -> None:
        self.calls.append("delete")


def provider(run_id: str, say: Say | None = None, **kw) -> GCPProvider:
    kw.setdefault("project", PROJECT)
    kw.setdefault("locations", [ZA, ZB])
    kw.setdefault("credentials", Credentials(token=TOKEN))
    kw.setdefault("poll_interval", 0.01)
    return GCPProvider(run_id=run_id, owner="Jane.Doe@example.com", progress=say if say is not None else Say(), **kw)


def writes(d: GKEDouble, since: int = 0) -> list[str]:
    return [f"{r.method} {r.path}" for r in d.requests[since:] if r.method != "GET"]


# -- labels and stockout words -------------------------------------------------------
def test_label_values_and_expiry_follow_gcp_label_rules():
    assert label_value("Jane.Doe@example.com") == "jane_doe_example_com"
    assert len(label_value("x" * 100)) == 63
    # valid as a Kubernetes label value too (the namespace carries the same labels)
    assert label_value("_ci-bot@example.org.") == "ci-bot_example_org"
    assert label_value("a" * 62 + "@b") == "a" * 62
    when = dt.datetime(2026, 11, 24, 4, 0, 5, tzinfo=dt.timezone.utc)
    assert format_expiry(when) == "20261124t040005z"
    assert parse_expiry("20261124t040005z") == when
    assert parse_expiry("20261124t0400z") == when.replace(second=0)
    assert parse_expiry(str(int(when.timestamp()))) == when
    assert parse_expiry("soon") is None and parse_expiry(None) is None


@pytest.mark.parametrize("text,stockout", [
    # GKE's operation text for a zonal stockout
    ("Try a different location, or try again later: Google Compute Engine does not have enough resources "
     "available to fulfill request: us-central1-a.", True),
    # a node pool's instance group reporting it
    ("Google Compute Engine: Not all instances running in IGM after 35m. Current errors: [GCE_STOCKOUT]: Instance "
     "'gke-x' creation failed: The zone 'projects/p/zones/europe-west3-c' does not have enough resources available "
     "to fulfill the request.", True),
    ("code: ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", True),
    ("[GCE_QUOTA_EXCEEDED] Insufficient regional quota to satisfy request: resource \"CPUS\"", False),
    ("Quota 'CPUS_ALL_REGIONS' exceeded. Limit: 24.0 globally.", False),
    ("Required \"container.clusters.create\" permission(s) for \"projects/p\".", False),
])
def test_only_stockouts_count_as_stockouts(text, stockout):
    assert is_stockout(text) is stockout


def test_bad_configuration_is_one_line_naming_the_thing(double):
    with pytest.raises(ConfigError, match="location 'mars-1'"):
        provider("cfg-1", locations=["mars-1"])
    with pytest.raises(ConfigError, match="run id 'Bad_Run'"):
        provider("Bad_Run")
    with pytest.raises(ConfigError, match=r"run id 'a{41}' must be 1-40 of"):
        provider("a" * 41)
    p = provider("cfg-2", project=None, credentials=None)  # endpoints set: anonymous, no ADC project
    with pytest.raises(ConfigError, match="no project"):
        p.create()
    with pytest.raises(ConfigError, match="no location"):
        provider("cfg-3", locations=[]).create()
    with pytest.raises(ConfigError, match=r"^gcp: unknown timeout operaton \(known: operation, deploy, "
                                          r"namespace_delete\)$"):
        provider("cfg-4", timeouts={"operaton": 1})
    assert double.requests == []


# -- end to end ----------------------------------------------------------------------
def test_create_deploy_destroy_end_to_end(double, state_dir):
    say = Say()
    RecordingDeployer.made.clear()
    p = provider("e2e-1", say, deployer_factory=RecordingDeployer, ttl=timedelta(hours=6))
    started = dt.datetime.now(dt.timezone.utc)
    p.create()
    create_calls = p.api_calls.snapshot()

    # one cluster with its node pool, in the first zone, labelled
    assert list(double.clusters) == [(PROJECT, ZA, "stackproof-e2e-1")]
    cl = double.clusters[(PROJECT, ZA, "stackproof-e2e-1")]
    assert cl["status"] == "RUNNING"
    [pool] = cl["nodePools"]
    assert (pool["name"], pool["initialNodeCount"], pool["config"]["machineType"]) == ("platform", 2, "e2-standard-4")
    labels = cl["resourceLabels"]
    assert {k: labels[k] for k in (LABEL_MANAGED, LABEL_OWNER, LABEL_RUN_ID)} == {
        LABEL_MANAGED: "true", LABEL_OWNER: "jane_doe_example_com", LABEL_RUN_ID: "e2e-1"}
    expires = parse_expiry(labels[LABEL_EXPIRES])
    assert timedelta(hours=6) - timedelta(seconds=5) <= expires - started <= timedelta(hours=6, seconds=60)
    # a bucket for each store that keeps its data in one: Cortex alone (VictoriaLogs keeps
    # its data on its volume); in the cluster's region, same labels, private
    names = p.bucket_names
    assert list(names) == ["cortex"] and sorted(double.buckets) == sorted(names.values())
    for store, bname in names.items():
        assert bname.startswith("stackproof-e2e-1-") and bname.endswith(f"-{store}")
        bucket = double.buckets[bname]
        assert bucket["labels"] == labels and bucket["location"] == "US-CENTRAL1"
        assert bucket["iamConfiguration"]["uniformBucketLevelAccess"]["enabled"] is True
        assert bucket["iamConfiguration"]["publicAccessPrevention"] == "enforced"
    assert {s: b["name"] for s, b in p.state["buckets"].items()} == names
    # every request carried the credentials in use; the count is the double's count
    assert {r.authorization for r in double.requests} == {f"Bearer {TOKEN}"}
    assert sum(create_calls.values()) == len(double.requests)

    # kubeconfig: endpoint, CA, token
    kc = p.kubeconfig()
    ctx = next(c for c in kc["contexts"] if c["name"] == kc["current-context"])["context"]
    cluster = next(c for c in kc["clusters"] if c["name"] == ctx["cluster"])["cluster"]
    user = next(u for u in kc["users"] if u["name"] == ctx["user"])["user"]
    assert cluster["server"] == f"https://{cl['endpoint']}"
    assert cluster["certificate-authority-data"] == double.ca_b64
    ca = x509.load_pem_x509_certificate(base64.b64decode(cluster["certificate-authority-data"]))
    assert ca.subject.rfc4514_string() == "CN=gke-double-ca"
    assert user == {"token": TOKEN}
    assert ctx["namespace"] == "stackproof-e2e-1" and kc["kind"] == "Config"

    # deploy hands the kubeconfig, namespace, bucket and labels to the deployer
    release = Release("2026.10", {"cortex": "v1.19.0", "victorialogs": "v1.24.0", "prometheus": "v3.5.0",
                                  "gateway": "1"})
    target = p.deploy(release)
    [dep] = RecordingDeployer.made
    assert dep.calls == ["deploy 2026.10"]
    assert dep.kubeconfig == kc and dep.namespace == "stackproof-e2e-1"
    assert dep.storage == {"type": "gcs", "bucket": names["cortex"], "buckets": names} and dep.labels == labels
    assert (target.provider, target.release) == ("gcp", "2026.10")
    target_file = p.state_dir / "target.yaml"
    assert stat.S_IMODE(target_file.stat().st_mode) == 0o600
    p.upgrade(release)
    assert dep.calls[-1] == "upgrade 2026.10" and len(RecordingDeployer.made) == 1  # same token: same deployer
    st = p.status()
    assert (st["cluster"]["status"], st["cluster"]["location"]) == ("RUNNING", ZA)
    assert st["buckets"] == {s: {"name": n, "exists": True, "location": "US-CENTRAL1"} for s, n in names.items()}
    assert st["release"] == "2026.10"
    arts = p.collect_artifacts(state_dir / "artifacts")
    assert TOKEN not in "".join(a.read_text() for a in arts) and "secret-a" not in arts[-1].read_text()

    # destroy: namespace first, then cluster, then the buckets (each emptied first): the
    # run's, and the logs store's bucket of an older version, a name no longer made,
    # known by its labels alone
    old = names["cortex"].removesuffix("-cortex") + "-loki"
    double.seed_bucket(PROJECT, old, labels=labels)
    for i in range(3):
        double.put_object(names["cortex"], f"tenant-a/blocks/{i}/meta.json", b"{}")
    for i in range(2):
        double.put_object(old, f"tenant-a/chunks/{i}", b"x")
    before, mark = p.api_calls.snapshot(), len(double.requests)
    p.destroy()
    destroy_calls = p.api_calls.diff(p.api_calls.snapshot(), before)
    assert dep.calls[-1] == "delete"
    assert double.clusters == {} and double.buckets == {}
    assert not p.state_dir.exists()
    w = writes(double, mark)
    cluster_gone = w.index(f"DELETE /v1/projects/{PROJECT}/locations/{ZA}/clusters/stackproof-e2e-1")
    for bname, obj in ((names["cortex"], "tenant-a/blocks/0/meta.json"), (old, "tenant-a/chunks/0")):
        emptied, deleted = w.index(f"DELETE /storage/v1/b/{bname}/o/{obj}"), w.index(f"DELETE /storage/v1/b/{bname}")
        assert cluster_gone < emptied < deleted
    assert destroy_calls["gcs.objects.delete"] == 5 and destroy_calls["gcs.buckets.delete"] == 2

    # destroy again: a no-op (lists only)
    mark = len(double.requests)
    p.destroy()
    assert writes(double, mark) == []
    assert len(double.requests) - mark == 2  # list clusters, list buckets
    print(f"\nAPI calls: create {sum(create_calls.values())} {create_calls}; "
          f"destroy {sum(destroy_calls.values())} {destroy_calls}")


def test_destroy_works_from_labels_alone(double):
    """A run whose process and state file are gone: found by its labels; what is
    not its own (another run, an unlabelled cluster) is left alone."""
    double.seed_cluster(PROJECT, ZA, "someone-elses")
    double.seed_bucket(PROJECT, "someone-elses-bucket")
    provider("other-1", locations=[ZB]).create()
    provider("lost-1").create()
    shutil.rmtree(provider("lost-1").state_dir)

    again = GCPProvider(run_id="lost-1", project=PROJECT, poll_interval=0.01, progress=Say())  # anonymous
    assert again.state == {}
    again.destroy()
    assert sorted(k[2] for k in double.clusters) == ["someone-elses", "stackproof-other-1"]
    assert sorted(double.buckets) == sorted(["someone-elses-bucket", *provider("other-1").bucket_names.values()])
    assert double.requests[-1].authorization is None  # anonymous when only the endpoints are set


def test_long_run_ids_fit_every_name(double):
    """The CI workflows' longest run ids (39 characters; the CI check allows 40) are
    accepted; cluster and bucket names fit GKE's 40 and GCS's 63 and stay apart
    even when two run ids share a long beginning."""
    nightly = "nightly-999999999999-10-gcp-conformance"
    ids = [nightly, nightly[:-1] + "x", "a" * 40, "a" * 39 + "b"]
    for prefix in ("stackproof", "stackproof-ci-1"):  # the default, the longest allowed
        clusters, buckets = set(), set()
        for rid in ids:
            p = provider(rid, name_prefix=prefix)
            assert len(p.cluster_name) <= 40 and all(len(b) <= 63 for b in p.bucket_names.values())
            assert all(b.endswith(f"-{s}") for s, b in p.bucket_names.items())
            clusters.add(p.cluster_name)
            buckets |= set(p.bucket_names.values())
        assert len(clusters) == len(ids) and len(buckets) == len(ids)  # one bucket a run: Cortex's
    assert fit_name("stackproof-short", 40) == "stackproof-short"  # short names as before
    p = provider(nightly, locations=[ZA])
    p.create()  # the double checks the names as GKE and GCS would
    assert len(double.clusters) == 1 and sorted(double.buckets) == sorted(p.bucket_names.values())
    assert {b["labels"][LABEL_RUN_ID] for b in double.buckets.values()} == {nightly}
    p.destroy()
    assert double.clusters == {} and double.buckets == {}


# -- stockouts and other errors ------------------------------------------------------------
def test_stockout_is_retried_in_the_next_zone_after_cleaning_the_first(double):
    double.fail_in[ZA] = "stockout"
    say = Say()
    p = provider("so-1", say)
    p.create()
    assert list(double.clusters) == [(PROJECT, ZB, "stackproof-so-1")]
    assert double.clusters[(PROJECT, ZB, "stackproof-so-1")]["status"] == "RUNNING"
    assert not any(loc == ZA for _, loc, _ in double.clusters)
    w = writes(double)
    assert w[:3] == [f"POST /v1/projects/{PROJECT}/locations/{ZA}/clusters",
                     f"DELETE /v1/projects/{PROJECT}/locations/{ZA}/clusters/stackproof-so-1",
                     f"POST /v1/projects/{PROJECT}/locations/{ZB}/clusters"]
    assert p.state["stockouts"] == [ZA] and p.status()["cluster"]["location"] == ZB
    assert any("stockout in us-central1-a" in m for m in say)
    assert {double.buckets[n]["location"] for n in p.bucket_names.values()} == {"US-CENTRAL1"}
    p.destroy()
    assert double.clusters == {} and double.buckets == {}


def test_stockout_everywhere_fails_with_one_line(double):
    double.fail_in[ZA] = double.fail_in[ZB] = "stockout"
    p = provider("so-2")
    with pytest.raises(StackproofError) as err:
        p.create()
    assert str(err.value) == f"gcp create cluster stackproof-so-2: every location stocked out ({ZA}, {ZB})"
    assert double.clusters == {}  # each failed attempt was cleaned up
    p.destroy()
    assert double.clusters == {} and double.buckets == {}


@pytest.mark.parametrize("kind,words", [("quota", "[GCE_QUOTA_EXCEEDED] Insufficient regional quota"),
                                        ("permission", "Forbidden (403): Required \"container.clusters.create\"")])
def test_other_errors_are_not_retried(double, kind, words):
    double.fail_in[ZA] = kind
    p = provider(f"err-{kind}")
    with pytest.raises(StackproofError) as err:
        p.create()
    msg = str(err.value)
    assert msg.startswith(f"gcp create cluster stackproof-err-{kind} in {ZA}: ") and words in msg
    assert "\n" not in msg and TOKEN not in msg and "http://" not in msg
    assert not any(f"/locations/{ZB}/" in r.path for r in double.requests)  # never tried the next zone
    assert double.buckets == {}
    p.destroy()
    assert double.clusters == {} and double.buckets == {}


def test_operation_wait_is_bounded_and_destroy_waits_out_a_running_create(double):
    double.polls_to_done = 10_000  # the create never finishes while we wait
    p = provider("slow-1", timeouts={"operation": 0.2})
    with pytest.raises(StackproofError, match=r"gcp create cluster stackproof-slow-1 in us-central1-a: operation "
                                              r"operation-\S+ not done after 0.2 s \(still RUNNING\)"):
        p.create()
    double.polls_to_done = 2
    p.timeouts["operation"] = 30
    p.destroy()  # the delete is refused while the create runs: waits for it, then deletes
    assert double.clusters == {}
    path = f"/v1/projects/{PROJECT}/locations/{ZA}/clusters/stackproof-slow-1"
    # refused once (400 FAILED_PRECONDITION: the create runs), then accepted
    assert writes(double).count(f"DELETE {path}") == 2
    assert f"GET /v1/projects/{PROJECT}/locations/{ZA}/operations" in [f"{r.method} {r.path}" for r in double.requests]


# -- janitor -----------------------------------------------------------------------------------
def test_janitor_deletes_expired_leftovers_only(double):
    crashed = provider("crashed-1", ttl=timedelta(hours=1))
    crashed.create()
    shutil.rmtree(crashed.state_dir)  # the run died: no state, no destroy
    # and an older version made it a bucket for its logs store too: known by its labels alone
    old = crashed.bucket_name("cortex").removesuffix("-cortex") + "-loki"
    double.seed_bucket(PROJECT, old, labels=crashed.labels)
    live = provider("live-1", ttl=timedelta(hours=6), locations=[ZB])
    live.create()
    double.seed_cluster(PROJECT, ZA, "not-ours", labels={"team": "x"})
    later = dt.datetime.now(dt.timezone.utc) + timedelta(hours=2)
    opts = dict(now=later, poll_interval=0.01, progress=Say())

    mark = len(double.requests)
    dry = janitor(None, None, True, PROJECT, None, **opts)
    assert writes(double, mark) == []
    assert [(r["kind"], r["name"], r["run_id"], r["reason"], r["action"]) for r in dry] == [
        ("cluster", "stackproof-crashed-1", "crashed-1", "expired", "would delete"),
        ("bucket", crashed.bucket_name("cortex"), "crashed-1", "expired", "would delete"),
        ("bucket", old, "crashed-1", "expired", "would delete")]
    assert parse_expiry(format_expiry(dt.datetime.fromisoformat(dry[0]["expires"]))) < later

    done = janitor(None, None, False, PROJECT, None, **opts)
    assert [(r["kind"], r["name"], r["action"]) for r in done] == [
        ("cluster", "stackproof-crashed-1", "deleted"), ("bucket", crashed.bucket_name("cortex"), "deleted"),
        ("bucket", old, "deleted")]
    assert sorted(k[2] for k in double.clusters) == ["not-ours", "stackproof-live-1"]
    assert sorted(double.buckets) == sorted(live.bucket_names.values())

    # the unexpired run: not by age unless asked, yes by its run id
    assert janitor(timedelta(hours=1), None, True, PROJECT, [ZB], poll_interval=0.01, progress=Say()) == []
    assert [r["reason"] for r in janitor(timedelta(hours=1), None, True, PROJECT, [ZB], **opts)] == \
        ["older than 1:00:00"] * 2
    gone = janitor(None, "live-1", False, PROJECT, None, poll_interval=0.01, progress=Say())
    assert [(r["kind"], r["action"]) for r in gone] == [("cluster", "deleted"), ("bucket", "deleted")]
    assert list(double.clusters) == [(PROJECT, ZA, "not-ours")] and double.buckets == {}


def test_unreachable_endpoint_is_one_line(double, monkeypatch):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("STACKPROOF_GKE_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(StackproofError) as err:
        provider("down-1").create()
    msg = str(err.value)
    assert msg.startswith(f"gcp create cluster stackproof-down-1 in {ZA}: ConnectionError: ") and "\n" not in msg
    assert TOKEN not in msg


def test_janitor_command_line(double, monkeypatch):
    """``stackproof janitor --provider gcp`` against the double: dry run, then by run id."""
    from .conftest import run_cli

    provider("cli-1").create()
    monkeypatch.setenv("STACKPROOF_GCP_POLL_INTERVAL", "0.01")
    r = run_cli("janitor", "--provider", "gcp", "--project", PROJECT, "--run-id", "cli-1", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("would delete") == 2 and "stackproof-cli-1" in r.stdout
    assert len(double.clusters) == 1 and len(double.buckets) == 1
    r = run_cli("janitor", "--provider", "gcp", "--project", PROJECT, "--older-than", "6h")
    assert r.returncode == 0 and "nothing of stackproof's to delete" in r.stdout, r.stdout + r.stderr
    r = run_cli("janitor", "--provider", "gcp", "--project", PROJECT, "--run-id", "cli-1")
    assert r.returncode == 0 and r.stdout.count("deleted") == 2, r.stdout + r.stderr
    assert double.clusters == {} and double.buckets == {}
