"""The aws provider against moto's server, over real HTTP.

moto's server runs as a subprocess on a free loopback port; boto3 reaches it
through ``AWS_ENDPOINT_URL`` (boto3's own setting: the provider has no
endpoint code), via a small fault-injecting reverse proxy
(``tests/faultproxy.py``) that can answer an AWS-shaped error for the Nth call
of one operation. Nothing in the provider is patched. moto stands in for AWS
because AWS cannot be reached from here.

No test here resolves an outside name, nor tries to: moto's EKS clusters live
at made-up ``*.eks.amazonaws.com`` hosts, so the pytest-path test, the one that
hands a cluster to the real Kubernetes deployer, has the proxy answer EKS's
DescribeCluster with a real kube-apiserver on loopback as the cluster's
endpoint and CA (``LoopbackControlPlane``, as tests/test_kube_deployer.py
uses), the way EKS names its API server. Every lookup the network guard
(tests/netguard) refuses in this process fails the test that made it.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from harness.components.kubeapiserver import LoopbackControlPlane, resolve_etcd, resolve_kube_apiserver
from harness.errors import StackproofError
from harness.ports import free_ports
from harness.releases import Catalog
from harness.target import Target, Tenant
from tests.aws_inventory import Inventory
from tests.faultproxy import FaultProxy

REPO = Path(__file__).resolve().parent.parent
REGION = "eu-west-1"
ACCESS_KEY = "AKIAMOTOSTACKPROOF01"
SECRET_KEY = "sp-moto-secret-" + secrets.token_hex(12)
# short waits: moto answers at once, and a regression should fail in seconds, not hang
FAST = {"poll_interval": 0.01, "progress": lambda msg: None,
        "timeouts": {key: 5 for key in ("vpc", "cluster_create", "nodegroup_create", "cluster_delete",
                                        "nodegroup_delete", "load_balancer_delete", "network_interface",
                                        "dependency", "iam_propagation", "namespace_delete")}}

# every API call one create() makes, in order (checked against a real create below)
CREATE_CALLS = [
    "sts:GetCallerIdentity",
    "ec2:CreateVpc", "ec2:DescribeVpcs", "ec2:ModifyVpcAttribute", "ec2:ModifyVpcAttribute",
    "ec2:DescribeAvailabilityZones", "ec2:CreateSubnet", "ec2:CreateSubnet",
    "ec2:ModifySubnetAttribute", "ec2:ModifySubnetAttribute",
    "ec2:CreateInternetGateway", "ec2:AttachInternetGateway",
    "ec2:CreateRouteTable", "ec2:CreateRoute", "ec2:AssociateRouteTable", "ec2:AssociateRouteTable",
    "s3:CreateBucket", "s3:PutBucketTagging", "s3:PutPublicAccessBlock",  # cortex's bucket, the only one
    "iam:CreateRole", "iam:AttachRolePolicy",
    "iam:CreateRole", "iam:AttachRolePolicy", "iam:AttachRolePolicy", "iam:AttachRolePolicy", "iam:PutRolePolicy",
    "eks:CreateCluster", "eks:DescribeCluster", "eks:DescribeCluster",
    "eks:CreateNodegroup", "eks:DescribeNodegroup",
]


def _fault_points() -> list[tuple[str, int]]:
    seen: Counter = Counter()
    out = []
    for op in CREATE_CALLS:
        seen[op] += 1
        out.append((op, seen[op]))
    return out


FAULT_POINTS = _fault_points()
FAULT_ROWS: list[dict] = []
FIGURES: dict = {}


# -- the moto server, the proxy, the environment --------------------------------------

@pytest.fixture(scope="session")
def moto_url(tmp_path_factory):
    port = free_ports(1)[0]
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}  # AmazonEKS*Policy and friends
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(f"{url}/moto-api/", timeout=2)
            break
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto server did not start: {log.read_text()[-2000:]}", pytrace=False)
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def proxy(moto_url):
    p = FaultProxy(moto_url).start()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def aws_env(proxy, tmp_path_factory):
    """Fake credentials, the region, AWS_ENDPOINT_URL at the proxy, an isolated state root,
    and no way to reach a real AWS account's configuration."""
    state = tmp_path_factory.mktemp("state")
    mp = pytest.MonkeyPatch()
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"):
        mp.delenv(var, raising=False)
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": REGION,
           "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": proxy.url, "AWS_EC2_METADATA_DISABLED": "true",
           "AWS_CONFIG_FILE": str(state / "no-aws-config"),
           "AWS_SHARED_CREDENTIALS_FILE": str(state / "no-aws-credentials"), "STACKPROOF_STATE": str(state),
           "STACKPROOF_OWNER": "ci-bot@example.org"}
    for k, v in env.items():
        mp.setenv(k, v)
    yield {"state": state, **env}
    mp.undo()


@pytest.fixture(scope="session")
def inventory(aws_env, moto_url) -> Inventory:
    return Inventory(moto_url, REGION)  # straight to moto: never faulted, never counted


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory):
    """A real Kubernetes API server (and its etcd) on loopback, to be an EKS cluster's
    endpoint: it checks TLS and bearer tokens as EKS's does (an EKS token is not one
    of its tokens). Built from their Go modules into the binary cache on first use."""
    cp = LoopbackControlPlane(tmp_path_factory.mktemp("kube"), resolve_kube_apiserver(), resolve_etcd())
    cp.start()
    yield cp
    cp.stop()


@pytest.fixture(autouse=True)
def _no_outside_names(monkeypatch):
    """Fails a test that even tried to resolve a name that is not this machine's:
    the network guard refuses it (and a test could pass by expecting the refusal)."""
    refused: list[str] = []
    guarded = socket.getaddrinfo

    def recording(host, *args, **kwargs):
        try:
            return guarded(host, *args, **kwargs)
        except socket.gaierror as exc:
            if "network guard" in str(exc):
                refused.append(str(host))
            raise

    monkeypatch.setattr(socket, "getaddrinfo", recording)
    yield
    assert not refused, f"tried to resolve names that are not this machine's: {sorted(set(refused))}"


@pytest.fixture(autouse=True)
def _clean_proxy(proxy):
    proxy.disarm()
    yield
    proxy.disarm()


@pytest.fixture(scope="module", autouse=True)
def _print_figures(request):
    yield
    lines = []
    if FAULT_ROWS:
        lines.append("aws provider: a fault at each create call, then destroy (resources left)")
        lines.append(f"{'#':>2}  {'failing call':<30} {'left before destroy':>19} {'after destroy':>13}  error")
        for i, r in enumerate(FAULT_ROWS, 1):
            lines.append(f"{i:>2}  {r['call']:<30} {r['before']:>19} {r['after']:>13}  {r['error'][:110]}")
    for key, value in FIGURES.items():
        lines.append(f"{key}: {json.dumps(value, sort_keys=True)}")
    if not lines:
        return
    out = Path(os.environ.get("STACKPROOF_AWS_FIGURES", "")) if os.environ.get("STACKPROOF_AWS_FIGURES") else None
    if out:
        out.write_text("\n".join(lines) + "\n")
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None:
        print("\n".join(lines))
        return
    with capman.global_and_fixture_disabled():  # shown without -s
        tr.write_line("")
        for line in lines:
            tr.write_line(line)


def _run_id(tag: str) -> str:
    return f"{tag}{uuid.uuid4().hex[:6]}"


def _total(c: Counter) -> int:
    return sum(c.values())


def _aws():
    from harness.providers.aws import AWSProvider  # after the environment is set
    return AWSProvider


def _assert_clean_message(msg: str, *secrets_: str) -> None:
    assert "\n" not in msg, msg
    assert msg.startswith("aws: "), msg
    for s in (SECRET_KEY, ACCESS_KEY, *secrets_):
        assert s not in msg


# -- end to end -------------------------------------------------------------------------

def test_create_kubeconfig_destroy_end_to_end(aws_env, proxy, inventory, moto_url, tmp_path):
    AWSProvider = _aws()
    rid = _run_id("e2e")
    seen = proxy.record()
    p = AWSProvider(run_id=rid, ttl=timedelta(hours=2), **FAST)
    t0 = time.monotonic()
    p.create()
    create_s = time.monotonic() - t0
    assert seen == CREATE_CALLS, "create's calls changed: update CREATE_CALLS (the fault-injection steps)"
    create_calls = Counter(p.api_calls_by_phase["create"])
    assert sum(create_calls.values()) == len(CREATE_CALLS)

    # -- every resource exists and carries the tags ----------------------------------
    created = datetime.fromisoformat(p.state["created"].replace("Z", "+00:00"))
    expires = datetime.fromisoformat(p.state["expires"].replace("Z", "+00:00"))
    assert expires - created == timedelta(hours=2)
    assert p.state["expires"].endswith("Z") and "T" in p.state["expires"]

    def check_tags(tags: dict, what: str):
        assert tags.get("stackproof:managed") == "true", what
        assert tags.get("stackproof:run-id") == rid, what
        assert tags.get("stackproof:owner") == "ci-bot@example.org", what
        assert tags.get("stackproof:expires") == p.state["expires"], what
        assert tags.get("stackproof:region") == REGION, what

    tagd = lambda items: {t["Key"]: t["Value"] for t in items or []}  # noqa: E731
    ec2, iam, eks, s3 = inventory.ec2, inventory.iam, inventory.eks, inventory.s3
    vpc = ec2.describe_vpcs(VpcIds=[p.state["vpc"]])["Vpcs"][0]
    check_tags(tagd(vpc["Tags"]), "vpc")
    assert ec2.describe_vpc_attribute(VpcId=vpc["VpcId"], Attribute="enableDnsHostnames")[
        "EnableDnsHostnames"]["Value"] is True
    subnets = ec2.describe_subnets(SubnetIds=p.state["subnets"])["Subnets"]
    assert len(subnets) == 2 and len({s["AvailabilityZone"] for s in subnets}) == 2
    for sn in subnets:
        check_tags(tagd(sn["Tags"]), "subnet")
        assert sn["VpcId"] == vpc["VpcId"] and sn["MapPublicIpOnLaunch"] is True
        assert tagd(sn["Tags"]).get("kubernetes.io/role/elb") == "1"
    igw = ec2.describe_internet_gateways(InternetGatewayIds=[p.state["internet_gateway"]])["InternetGateways"][0]
    check_tags(tagd(igw["Tags"]), "internet gateway")
    assert [a["VpcId"] for a in igw["Attachments"]] == [vpc["VpcId"]]
    rt = ec2.describe_route_tables(RouteTableIds=[p.state["route_table"]])["RouteTables"][0]
    check_tags(tagd(rt["Tags"]), "route table")
    assert any(r.get("DestinationCidrBlock") == "0.0.0.0/0" and r.get("GatewayId") == igw["InternetGatewayId"]
               for r in rt["Routes"])
    assert sorted(a["SubnetId"] for a in rt["Associations"] if not a.get("Main")) == sorted(p.state["subnets"])
    # a bucket for each store that keeps its data in one: Cortex alone (VictoriaLogs keeps
    # its data on its volume); tagged, in the region, public access blocked
    buckets = p.state["buckets"]
    account = p.state["account"]
    assert buckets == {"cortex": f"stackproof-{rid}-{account}-{REGION}-cortex"}
    assert sorted(buckets.values()) == inventory.bucket_names(rid)
    for store, bucket in buckets.items():
        check_tags(tagd(s3.get_bucket_tagging(Bucket=bucket)["TagSet"]), f"{store} bucket")
        assert s3.get_bucket_location(Bucket=bucket)["LocationConstraint"] == REGION
        assert s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True}, store
    assert p.storage() == {"type": "s3", "bucket": buckets["cortex"], "buckets": buckets, "region": REGION}
    want_policies = {p.names.cluster_role: {"AmazonEKSClusterPolicy"},
                     p.names.node_role: {"AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                                         "AmazonEC2ContainerRegistryReadOnly"}}
    for role, policies in want_policies.items():
        r = iam.get_role(RoleName=role)["Role"]
        assert r["Path"] == "/stackproof/"
        check_tags(tagd(iam.list_role_tags(RoleName=role)["Tags"]), role)
        got = {a["PolicyName"] for a in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]}
        assert got == policies
    inline = iam.get_role_policy(RoleName=p.names.node_role, PolicyName="stackproof-bucket-access")["PolicyDocument"]
    if isinstance(inline, str):
        inline = json.loads(inline)
    arns = sorted(f"arn:aws:s3:::{b}" for b in buckets.values())
    # exactly the bucket made, and nothing wider: no wildcard bucket, no other action
    granted = {(a, r) for st in inline["Statement"] for a in st["Action"] for r in
               (st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]])}
    assert all(st["Effect"] == "Allow" for st in inline["Statement"])
    assert granted == ({(a, r) for a in ("s3:ListBucket", "s3:GetBucketLocation") for r in arns}
                       | {(a, f"{r}/*") for a in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject") for r in arns})
    cl = eks.describe_cluster(name=p.names.cluster)["cluster"]
    check_tags(cl["tags"], "cluster")
    assert cl["roleArn"] == iam.get_role(RoleName=p.names.cluster_role)["Role"]["Arn"]
    assert sorted(cl["resourcesVpcConfig"]["subnetIds"]) == sorted(p.state["subnets"])
    ng = eks.describe_nodegroup(clusterName=p.names.cluster, nodegroupName=p.names.nodegroup)["nodegroup"]
    check_tags(ng["tags"], "node group")
    assert ng["nodeRole"] == iam.get_role(RoleName=p.names.node_role)["Role"]["Arn"]
    assert ng["status"] == "ACTIVE"
    counts = inventory.count(rid)
    assert counts["vpcs"] == 1 and counts["subnets"] == 2 and counts["internet_gateways"] == 1
    assert counts["route_tables"] == 1 and counts["iam_roles"] == 2 and counts["attached_policies"] == 4
    assert counts["eks_clusters"] == 1 and counts["nodegroups"] == 1 and counts["s3_buckets"] == 1

    # -- the kubeconfig and its EKS token ------------------------------------------------
    kc = p.kubeconfig()
    assert kc["clusters"][0]["cluster"]["server"] == cl["endpoint"]
    assert kc["clusters"][0]["cluster"]["certificate-authority-data"] == cl["certificateAuthority"]["data"]
    assert kc["current-context"] == p.names.cluster
    token = kc["users"][0]["user"]["token"]
    assert token.startswith("k8s-aws-v1.")
    body = token[len("k8s-aws-v1."):]
    assert "=" not in body and "+" not in body and "/" not in body  # base64url, no padding
    url = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    parts = urlsplit(url)
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}" == aws_env["AWS_ENDPOINT_URL"]  # STS, at the configured endpoint
    assert q["Action"] == "GetCallerIdentity" and q["Version"] == "2011-06-15"
    assert q["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert q["X-Amz-Expires"] == "60"
    assert "x-k8s-aws-id" in q["X-Amz-SignedHeaders"].split(";")
    assert "host" in q["X-Amz-SignedHeaders"].split(";")
    assert q["X-Amz-Credential"].split("/")[2:] == [REGION, "sts", "aws4_request"]
    assert len(q["X-Amz-Signature"]) == 64
    # a token is a secret: not in the state file, status, or artifacts
    st = p.status()
    assert st["state"] == "created" and st["cluster"]["status"] == "ACTIVE"
    arts = p.collect_artifacts(tmp_path / "artifacts")
    for blob in [p.state_file.read_text(), json.dumps(st)] + [a.read_text() for a in arts]:
        assert token not in blob and q["X-Amz-Signature"] not in blob and SECRET_KEY not in blob

    # -- what Kubernetes would leave in the VPC, and a versioned bucket with data ----------
    elbv2, elb = inventory.elbv2, inventory.elb
    sn = p.state["subnets"]
    ec2.create_network_interface(SubnetId=sn[0], Description="leaked by a CNI")
    sg_lb = ec2.create_security_group(GroupName="k8s-elb-a1", Description="lb", VpcId=vpc["VpcId"])["GroupId"]
    sg_nodes = ec2.create_security_group(GroupName="k8s-nodes", Description="n", VpcId=vpc["VpcId"])["GroupId"]
    ec2.authorize_security_group_ingress(GroupId=sg_nodes, IpPermissions=[{
        "IpProtocol": "tcp", "FromPort": 8080, "ToPort": 8080, "UserIdGroupPairs": [{"GroupId": sg_lb}]}])
    elbv2.create_load_balancer(Name="k8s-gateway", Subnets=sn, SecurityGroups=[sg_lb], Type="application")
    elbv2.create_target_group(Name="k8s-gateway-tg", Protocol="HTTP", Port=80, VpcId=vpc["VpcId"])
    elb.create_load_balancer(LoadBalancerName="k8s-classic", Subnets=sn[:1], SecurityGroups=[sg_lb],
                             Listeners=[{"Protocol": "TCP", "LoadBalancerPort": 80, "InstancePort": 80}])
    # the logs store's bucket of an older version (stores with their data on a volume have
    # none now): a name the provider no longer makes, known by its run-id tag alone
    cortex_bucket, old_bucket = buckets["cortex"], f"stackproof-{rid}-{account}-{REGION}-loki"
    s3.create_bucket(Bucket=old_bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
    s3.put_bucket_tagging(Bucket=old_bucket, Tagging={"TagSet": s3.get_bucket_tagging(Bucket=cortex_bucket)["TagSet"]})
    # both buckets versioned, with versions, a delete marker and an unfinished multipart upload
    for bucket in (cortex_bucket, old_bucket):
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    for i in range(3):
        s3.put_object(Bucket=cortex_bucket, Key="tenant-a/01ABC/index", Body=b"v" * (i + 1))
    s3.put_object(Bucket=cortex_bucket, Key="tenant-a/gone", Body=b"x")
    s3.delete_object(Bucket=cortex_bucket, Key="tenant-a/gone")  # a delete marker over a version
    s3.create_multipart_upload(Bucket=cortex_bucket, Key="tenant-a/02ABC/chunks/000001")
    for i in range(2):
        s3.put_object(Bucket=old_bucket, Key="index/index_20000/tenant-a/db.gz", Body=b"i" * (i + 1))
    s3.put_object(Bucket=old_bucket, Key="tenant-a/chunk-gone", Body=b"c")
    s3.delete_object(Bucket=old_bucket, Key="tenant-a/chunk-gone")
    s3.create_multipart_upload(Bucket=old_bucket, Key="tenant-a/big-chunk")
    assert [len(inventory.multipart_uploads(b)) for b in (cortex_bucket, old_bucket)] == [1, 1]
    vpc_ids = [vpc["VpcId"]]
    before = inventory.count(rid, vpc_ids)
    assert before["network_interfaces"] == 1 and before["security_groups"] == 2 and before["load_balancers"] == 2

    # -- destroy from a new process's point of view: only the run id ---------------------
    p2 = AWSProvider(run_id=rid, **FAST)
    t0 = time.monotonic()
    deleted = p2.destroy()
    destroy_s = time.monotonic() - t0
    after = inventory.count(rid, vpc_ids)
    assert _total(after) == 0, dict(+after)
    kinds = Counter(d["kind"] for d in deleted)
    assert kinds["eks-nodegroup"] == 1 and kinds["eks-cluster"] == 1 and kinds["vpc"] == 1
    assert kinds["network-interface"] == 1 and kinds["security-group"] == 2 and kinds["target-group"] == 1
    assert kinds["load-balancer (elbv2)"] == 1 and kinds["load-balancer (elb)"] == 1
    emptied = {d["id"]: d["objects_deleted"] for d in deleted if d["kind"] == "s3-bucket"}
    assert emptied == {cortex_bucket: 5, old_bucket: 4}  # versions + delete marker (uploads aborted)
    order = [d["kind"] for d in deleted]
    assert order.index("eks-nodegroup") < order.index("eks-cluster") < order.index("vpc")
    assert order.index("iam-role") > order.index("eks-cluster")
    assert not p2.state_dir.exists()
    destroy_calls = Counter(p2.api_calls_by_phase["destroy"])
    # each bucket listed and emptied, its upload aborted, then deleted
    assert destroy_calls["s3:AbortMultipartUpload"] == 2 and destroy_calls["s3:DeleteBucket"] == 2
    assert destroy_calls["s3:ListMultipartUploads"] >= 2 and destroy_calls["s3:DeleteObjects"] == 2

    # -- destroy again: nothing to do, nothing deleted --------------------------------
    p3 = AWSProvider(run_id=rid, **FAST)
    assert p3.destroy() == []
    again = Counter(p3.api_calls_by_phase["destroy"])
    assert not [op for op in again if op.split(":")[1].startswith(("Delete", "Detach", "Disassociate"))]
    assert _total(inventory.count(rid, vpc_ids)) == 0

    # the same create + destroy without the Kubernetes leftovers, for the figures
    rid2 = _run_id("fig")
    q1 = AWSProvider(run_id=rid2, **FAST)
    q1.create()
    q1.destroy()
    FIGURES["api calls, one create"] = {"total": sum(q1.api_calls_by_phase["create"].values()),
                                        "per operation": dict(q1.api_calls_by_phase["create"])}
    FIGURES["api calls, one destroy (clean cluster, state file present)"] = {
        "total": sum(q1.api_calls_by_phase["destroy"].values()),
        "per operation": dict(q1.api_calls_by_phase["destroy"])}
    FIGURES["api calls, destroy with k8s leftovers (ENI, 2 SGs, ALB, CLB, TG, 9 object versions, 2 uploads)"] = {
        "total": sum(destroy_calls.values()), "per operation": dict(destroy_calls)}
    FIGURES["api calls, destroy again (no-op)"] = {"total": sum(again.values()), "per operation": dict(again)}
    FIGURES["moto wall seconds"] = {"create": round(create_s, 2), "destroy with leftovers": round(destroy_s, 2)}


def test_destroy_works_from_tags_alone(aws_env, inventory):
    """No state file at all (another machine, a lost home directory): tags and names suffice."""
    AWSProvider = _aws()
    rid = _run_id("tags")
    p = AWSProvider(run_id=rid, **FAST)
    p.create()
    vpcs = inventory.vpc_ids(rid)
    shutil.rmtree(p.state_dir)
    assert _total(inventory.count(rid)) > 0
    deleted = AWSProvider(run_id=rid, **FAST).destroy()
    assert len(deleted) == 10  # nodegroup, cluster, bucket, 2 roles, route table, 2 subnets, IGW, VPC
    assert sorted(d["id"] for d in deleted if d["kind"] == "s3-bucket") == sorted(p.state["buckets"].values())
    assert _total(inventory.count(rid, vpcs)) == 0


def test_janitor_finds_an_untagged_bucket_by_name(aws_env, proxy, inventory):
    """A create that failed between the bucket and its tags, its state lost: the
    janitor (by run id) still finds the untagged bucket by its name."""
    from harness.providers.aws import janitor

    AWSProvider = _aws()
    rid = _run_id("untag")
    proxy.arm("s3:PutBucketTagging", 1)
    p = AWSProvider(run_id=rid, **FAST)
    with pytest.raises(StackproofError, match="tag S3 bucket stackproof-"):
        p.create()
    proxy.disarm()
    with pytest.raises(inventory.s3.exceptions.ClientError):
        inventory.s3.get_bucket_tagging(Bucket=p.state["buckets"]["cortex"])  # never tagged
    vpcs = inventory.vpc_ids(rid)
    shutil.rmtree(p.state_dir)
    assert inventory.count(rid, vpcs)["s3_buckets"] == 1
    done = janitor(None, rid, False, None, **FAST)
    assert sorted(r["id"] for r in done if r["kind"] == "s3-bucket") == sorted(p.state["buckets"].values())
    assert {r["action"] for r in done} == {"deleted"}
    assert _total(inventory.count(rid, vpcs)) == 0
    assert janitor(None, rid, False, None, **FAST) == []  # idempotent


def test_destroy_also_removes_the_shared_bucket_of_older_versions(aws_env, inventory):
    """A run made before the stores got a bucket each left one shared bucket: destroy
    (and so the janitor) still finds it by its old name and deletes it, emptied."""
    from harness.providers.aws import AWSProvider as Provider

    rid = _run_id("old")
    p = Provider(run_id=rid, **FAST)
    account = inventory.sts.get_caller_identity()["Account"]
    legacy = p.names.legacy_bucket(account, REGION)
    inventory.s3.create_bucket(Bucket=legacy, CreateBucketConfiguration={"LocationConstraint": REGION})
    inventory.s3.put_bucket_tagging(Bucket=legacy, Tagging={"TagSet": [
        {"Key": "stackproof:managed", "Value": "true"}, {"Key": "stackproof:run-id", "Value": rid}]})
    inventory.s3.put_object(Bucket=legacy, Key="index/index_20000/db.gz", Body=b"x")
    assert inventory.bucket_names(rid) == [legacy]
    deleted = Provider(run_id=rid, **FAST).destroy()
    assert deleted == [{"kind": "s3-bucket", "id": legacy, "objects_deleted": 1}]
    assert inventory.bucket_names(rid) == []


def test_janitor_deletes_a_tagged_bucket_of_a_store_that_no_longer_has_one(aws_env, inventory):
    """An older version's run, crashed, left only its logs store's bucket (the logs
    store keeps its data on a volume now, so no name the provider makes matches it):
    the janitor finds it by its tags and deletes it, emptied. Beside it, under the
    same run's name prefix, an untagged bucket and one tagged with another run are
    not the run's and stay."""
    from harness.providers.aws import janitor

    s3, rid = inventory.s3, _run_id("oldlogs")
    account = inventory.sts.get_caller_identity()["Account"]
    stamp = lambda dt: dt.strftime("%Y-%m-%dT%H:%M:%SZ")  # noqa: E731
    past = datetime.now(timezone.utc) - timedelta(hours=1)
    tags = {"stackproof:managed": "true", "stackproof:run-id": rid, "stackproof:owner": "ci-bot@example.org",
            "stackproof:expires": stamp(past), "stackproof:created": stamp(past - timedelta(hours=6)),
            "stackproof:region": REGION}
    old = f"stackproof-{rid}-{account}-{REGION}-loki"
    untagged, others = f"stackproof-{rid}-{account}-{REGION}-notes", f"stackproof-{rid}-{account}-{REGION}-other"
    for bucket, tagset in ((old, tags), (untagged, None), (others, {**tags, "stackproof:run-id": "another-run"})):
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        if tagset:
            s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": [{"Key": k, "Value": v}
                                                                     for k, v in tagset.items()]})
    s3.put_object(Bucket=old, Key="tenant-a/chunk", Body=b"c")
    try:
        dry = janitor(None, None, True, None, **FAST)
        assert [(r["kind"], r["id"], r["run_id"], r["action"]) for r in dry if r["run_id"] == rid] == [
            ("s3-bucket", old, rid, "would delete")]
        assert inventory.bucket_names(rid) == sorted([old, untagged, others])  # a dry run deletes nothing
        done = [r for r in janitor(None, None, False, None, **FAST) if r["run_id"] == rid]
        assert done == [{"kind": "s3-bucket", "id": old, "objects_deleted": 1, "run_id": rid,
                         "expires": tags["stackproof:expires"], "action": "deleted"}]
        assert inventory.bucket_names(rid) == sorted([untagged, others])
    finally:
        for bucket in (old, untagged, others):
            try:
                s3.delete_object(Bucket=bucket, Key="tenant-a/chunk")
                s3.delete_bucket(Bucket=bucket)
            except s3.exceptions.ClientError:
                pass


# -- fault injection at every create call ------------------------------------------------

@pytest.mark.parametrize("op,nth", FAULT_POINTS, ids=[f"{op}#{n}" for op, n in FAULT_POINTS])
def test_fault_at_create_step_then_destroy_leaves_nothing(aws_env, proxy, inventory, op, nth):
    AWSProvider = _aws()
    rid = _run_id("flt")
    rule = proxy.arm(op, nth)
    p = AWSProvider(run_id=rid, **FAST)
    with pytest.raises(StackproofError) as err:
        p.create()
    proxy.disarm()
    assert rule.fired >= 1, f"the fault at {op}#{nth} never fired"
    msg = str(err.value)
    _assert_clean_message(msg)
    assert "InjectedFault" in msg
    vpcs = inventory.vpc_ids(rid)
    before = inventory.count(rid, vpcs)
    # a later process resumes from the state file and tags
    AWSProvider(run_id=rid, **FAST).destroy()
    after = inventory.count(rid, vpcs)
    FAULT_ROWS.append({"call": f"{op}#{nth}", "before": _total(before), "after": _total(after), "error": msg})
    assert _total(after) == 0, dict(+after)
    if CREATE_CALLS.index(op) > CREATE_CALLS.index("ec2:CreateVpc"):
        assert _total(before) > 0  # the fault came after something was made


def test_create_resumes_after_a_failed_step(aws_env, proxy, inventory):
    """A failed create, run again with the same run id, finishes without duplicating anything."""
    AWSProvider = _aws()
    rid = _run_id("res")
    proxy.arm("eks:CreateCluster", 1)
    with pytest.raises(StackproofError, match="create EKS cluster"):
        AWSProvider(run_id=rid, **FAST).create()
    proxy.disarm()
    p = AWSProvider(run_id=rid, **FAST)
    p.create()
    assert "ec2:CreateVpc" not in p.api_calls and p.api_calls["eks:CreateCluster"] == 1
    c = inventory.count(rid)
    assert (c["vpcs"], c["subnets"], c["iam_roles"], c["eks_clusters"], c["s3_buckets"]) == (1, 2, 2, 1, 1)
    p.destroy()
    assert _total(inventory.count(rid)) == 0


def test_transient_server_error_is_retried_and_counted_once(aws_env, proxy, inventory):
    AWSProvider = _aws()
    rid = _run_id("tr")
    proxy.arm("ec2:CreateVpc", 1, status=503, code="Unavailable", times=1)
    p = AWSProvider(run_id=rid, **FAST)
    p.create()
    assert p.api_calls["ec2:CreateVpc"] == 1  # one API call ...
    assert p.cloud.attempts["ec2.CreateVpc"] == 2  # ... sent twice
    p.destroy()
    assert _total(inventory.count(rid)) == 0


def test_wait_timeout_is_one_line_and_destroy_waits_for_a_creating_cluster(aws_env, proxy, inventory):
    AWSProvider = _aws()
    rid = _run_id("to")
    creating = (200, {"Content-Type": "application/json"},
                json.dumps({"cluster": {"name": f"stackproof-{rid}", "status": "CREATING"}}).encode())
    proxy.arm("eks:DescribeCluster", 1, reply=creating)
    p = AWSProvider(run_id=rid, timeouts={"cluster_create": 0.2}, poll_interval=0.02, progress=lambda m: None)
    with pytest.raises(StackproofError) as err:
        p.create()
    proxy.disarm()
    msg = str(err.value)
    _assert_clean_message(msg)
    assert msg == (f"aws: wait for EKS cluster stackproof-{rid} to be ACTIVE: timed out after 0.2s "
                   "(last status CREATING)")
    # destroy meets the cluster still CREATING (discovery, status, first wait): it waits, then deletes
    said: list[str] = []
    proxy.arm("eks:DescribeCluster", 1, reply=creating, times=3)
    deleted = AWSProvider(run_id=rid, poll_interval=0.02, progress=said.append).destroy()
    proxy.disarm()
    assert any("is CREATING: waiting before deleting it" in s for s in said)
    assert {"kind": "eks-cluster", "id": f"stackproof-{rid}"} in deleted
    assert _total(inventory.count(rid)) == 0


# -- the deploy hand-off --------------------------------------------------------------

class RecordingDeployer:
    """Stands in for harness.providers.kube.KubeDeployer (another module, and moto has
    no Kubernetes API): given to the provider through its public ``deployer_factory``
    parameter, it records what the provider hands over."""

    made: list["RecordingDeployer"] = []

    def __init__(self, kubeconfig: dict, namespace: str, storage: dict, labels: dict):
        self.kubeconfig, self.namespace, self.storage, self.labels = kubeconfig, namespace, storage, labels
        self.calls: list[tuple] = []
        RecordingDeployer.made.append(self)

    def _target(self, release) -> Target:
        return Target(name=self.namespace, gateway_url="https://gateway.example.invalid",
                      tenants=[Tenant("tenant-a", secrets.token_hex(8)), Tenant("tenant-b", secrets.token_hex(8)),
                               Tenant("stackproof-system", secrets.token_hex(8), "system")])

    def deploy(self, release, tenants=None, timeout=900):
        self.calls.append(("deploy", release.name, timeout))
        return self._target(release)

    def upgrade(self, release, on_swap=None, timeout=900):
        self.calls.append(("upgrade", release.name, timeout))
        return self._target(release)

    def collect_artifacts(self, dest: Path) -> list[Path]:
        (dest / "pods.txt").write_text("gateway Running\n")
        return [dest / "pods.txt"]

    def delete(self, timeout=300):
        self.calls.append(("delete", timeout))


class FailingDeployer(RecordingDeployer):
    def deploy(self, release, tenants=None, timeout=900):
        token = self.kubeconfig["users"][0]["user"]["token"]
        raise RuntimeError(f"HTTPSConnectionPool: Max retries exceeded (Authorization: Bearer {token})\nsecond line")


def test_deploy_hands_the_cluster_to_the_deployer(aws_env, inventory, tmp_path):
    AWSProvider = _aws()
    rid = _run_id("dep")
    cat = Catalog.load()
    RecordingDeployer.made.clear()
    p = AWSProvider(run_id=rid, deployer_factory=RecordingDeployer, **FAST)
    target = p.deploy(cat.get())  # creates first
    d = RecordingDeployer.made[-1]
    assert d.namespace == f"stackproof-{rid}"
    buckets = p.state["buckets"]
    assert d.storage == {"type": "s3", "bucket": buckets["cortex"], "buckets": buckets, "region": REGION}
    assert list(buckets) == ["cortex"]  # VictoriaLogs keeps its data on its volume: no bucket
    assert d.labels["stackproof/run-id"] == rid and d.labels["app.kubernetes.io/managed-by"] == "stackproof"
    assert d.labels["stackproof/owner"] == "ci-bot_example.org"  # a valid label value
    assert d.kubeconfig["clusters"][0]["cluster"]["server"] == p.state["cluster"]["endpoint"]
    assert d.calls == [("deploy", cat.get().name, 900)]
    assert target.provider == "aws" and target.release == cat.get().name
    assert target.path == p.target_file and stat.S_IMODE(target.path.stat().st_mode) == 0o600
    assert p.status()["state"] == "running"
    up = p.upgrade(cat.get())
    assert RecordingDeployer.made[-1].calls == [("upgrade", cat.get().name, 900)] and up.provider == "aws"
    arts = p.collect_artifacts(tmp_path)
    assert {a.name for a in arts} == {"pods.txt", "aws-resources.json", "aws-api-calls.json"}
    p.destroy()
    # the namespace went before the cloud, bounded by the namespace_delete timeout
    assert RecordingDeployer.made[-1].calls == [("delete", FAST["timeouts"]["namespace_delete"])]
    assert _total(inventory.count(rid)) == 0


def test_deploy_failure_is_one_line_naming_the_step_without_the_token(aws_env, inventory):
    AWSProvider = _aws()
    rid = _run_id("depf")
    p = AWSProvider(run_id=rid, deployer_factory=FailingDeployer, **FAST)
    with pytest.raises(StackproofError) as err:
        p.deploy(Catalog.load().get())
    msg = str(err.value)
    _assert_clean_message(msg, "k8s-aws-v1.")
    assert msg.startswith(f"aws: deploy {Catalog.load().get().name} to EKS cluster stackproof-{rid}: RuntimeError")
    assert "Bearer ***" in msg and "second line" not in msg
    p.destroy()
    assert _total(inventory.count(rid)) == 0


# -- a crashed run and the janitor ------------------------------------------------------

def test_janitor_cleans_a_crashed_run_and_spares_a_fresh_one(aws_env, proxy, inventory):
    from harness.providers.aws import janitor

    AWSProvider = _aws()
    crashed = _run_id("crash")
    # create in a subprocess, held at CreateCluster, then SIGKILLed: a real crash
    rule = proxy.hold("eks:CreateCluster")
    script = ("from datetime import timedelta\nfrom harness.providers.aws import AWSProvider\n"
              f"AWSProvider(run_id={crashed!r}, ttl=timedelta(hours=-1), poll_interval=0.01).create()\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=os.environ.copy(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert rule.hit.wait(60), "the subprocess never reached CreateCluster"
    finally:
        proc.kill()
        proc.wait()
        proxy.disarm()
    assert proc.returncode == -9
    shutil.rmtree(Path(aws_env["state"]) / f"aws-{crashed}")  # and its state is lost
    crashed_vpcs = inventory.vpc_ids(crashed)
    left = inventory.count(crashed, crashed_vpcs)
    assert left["vpcs"] == 1 and left["iam_roles"] == 2 and left["s3_buckets"] == 1 and left["eks_clusters"] == 0

    fresh = _run_id("fresh")
    AWSProvider(run_id=fresh, **FAST).create()  # expires in 6 h
    fresh_count = inventory.count(fresh)

    dry = janitor(older_than=None, run_id=None, dry_run=True, region=None, **FAST)
    assert dry and {r["run_id"] for r in dry} == {crashed}
    assert {r["action"] for r in dry} == {"would delete"}
    assert Counter(r["kind"] for r in dry) == Counter({"subnet": 2, "iam-role": 2, "vpc": 1, "internet-gateway": 1,
                                                       "route-table": 1, "s3-bucket": 1})
    assert all(r["expires"] and r["expires"] < datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
               for r in dry)
    assert inventory.count(crashed, crashed_vpcs) == left  # a dry run deletes nothing

    said: list[str] = []
    done = janitor(older_than=None, run_id=None, dry_run=False, region=None, **{**FAST, "progress": said.append})
    assert {r["run_id"] for r in done} == {crashed} and {r["action"] for r in done} == {"deleted"}
    assert sorted((r["kind"], r["id"]) for r in done) == sorted((r["kind"], r["id"]) for r in dry)
    assert _total(inventory.count(crashed, crashed_vpcs)) == 0
    assert inventory.count(fresh) == fresh_count  # not expired: untouched

    later = datetime.now(timezone.utc) + timedelta(hours=1)
    assert janitor(None, None, True, None, now=later, **FAST) == []  # an hour on, still not expired
    by_age = janitor(timedelta(minutes=30), None, True, None, now=later, **FAST)
    assert {r["run_id"] for r in by_age} == {fresh}  # but older than 30 minutes
    assert len(by_age) == 10
    by_run = janitor(None, fresh, False, None, **FAST)  # everything of one run, expired or not
    assert {r["action"] for r in by_run} == {"deleted"} and len(by_run) == 10
    assert sum(r["kind"] == "s3-bucket" for r in by_run) == 1
    assert _total(inventory.count(fresh)) == 0
    assert janitor(None, None, False, None, **FAST) == []  # nothing left to do
    FIGURES["janitor"] = {"dry run (crashed run)": dict(Counter(r["kind"] for r in dry)),
                          "deleted (crashed run)": len(done), "fresh run after janitor": _total(fresh_count),
                          "run_id mode deleted": len(by_run), "janitor's own summary": said[-1]}


# -- the pytest path ------------------------------------------------------------------

def test_pytest_provider_aws_reaches_the_deploy_step_and_tears_down(aws_env, proxy, inventory, kube_api, tmp_path):
    """``pytest --provider aws`` makes the cloud, hands the cluster to the real Kubernetes
    deployer, which reaches the cluster's API server (on loopback, never an outside name)
    and is refused there (an EKS token means nothing to it): one line, then teardown."""
    rid = _run_id("pyt")
    # EKS's answer once the cluster is ACTIVE, naming its API server: create's wait and describe
    active = (200, {"Content-Type": "application/json"}, json.dumps({"cluster": {
        "name": f"stackproof-{rid}", "status": "ACTIVE", "endpoint": kube_api.server,
        "certificateAuthority": {"data": base64.b64encode(kube_api.ca_pem).decode()}, "version": "1.34",
        "arn": f"arn:aws:eks:{REGION}:123456789012:cluster/stackproof-{rid}"}}).encode())
    described = proxy.arm("eks:DescribeCluster", 1, reply=active, times=2)
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url, "STACKPROOF_STATE": str(tmp_path / "state")}
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "suites/smoke", "--provider", "aws", "--run-id", rid,
                        "-p", "no:cacheprovider", "-q", "--stackproof-results", str(tmp_path / "results")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert described.fired == 2, "create no longer describes the cluster twice: update the reply's times"
    assert r.returncode != 0, out[-3000:]
    lines = [ln for ln in out.splitlines() if "cannot provision the platform" in ln]
    assert lines, out[-3000:]
    line = lines[0]
    assert f"aws: deploy {Catalog.load().get().name} to EKS cluster stackproof-{rid}" in line, line
    # the deployer reached the API server (TLS verified with the cluster's CA), which refused the EKS token
    assert (f"the Kubernetes API at {kube_api.server} refused stackproof's credentials (HTTP 401 on /version)"
            in line), line
    # the subprocess's own guard (inherited through PYTHONPATH) was never asked about an outside name
    assert "network guard" not in out and "cannot resolve" not in out and "eks.amazonaws.com" not in out, out
    assert SECRET_KEY not in out and ACCESS_KEY not in out and "k8s-aws-v1." not in out
    assert "Traceback" not in out
    # teardown ran: nothing of the run is left, and its state directory is gone
    assert _total(inventory.count(rid)) == 0
    assert not (tmp_path / "state" / f"aws-{rid}").exists()
    FIGURES["pytest --provider aws"] = {"exit code": r.returncode, "error line": line.strip(),
                                        "seconds": round(time.monotonic() - t0, 1)}


def test_bad_input_is_one_line(aws_env, monkeypatch):
    from harness.errors import ConfigError
    from harness.providers import get_provider

    AWSProvider = _aws()
    with pytest.raises(ConfigError, match=r"^aws: run id 'Bad_Run' must be"):
        get_provider("aws", run_id="Bad_Run")
    with pytest.raises(ConfigError, match=r"^aws: run id '.{42}' is 42 characters; .* at most 41 fit"):
        get_provider("aws", run_id="n" * 42)
    # the longest the nightly workflow makes: nightly-<run number>-<attempt>-<provider>-<suite>
    longest = AWSProvider(run_id="nightly-999999999999-10-aws-conformance", region=REGION)
    names = longest.names.buckets("123456789012", "ap-southeast-2")
    assert list(names) == ["cortex"] and all(len(n) <= 63 for n in names.values())
    assert get_provider("aws", run_id="a" * 41).run_id == "a" * 41
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError, match=r"^aws: no region"):
        AWSProvider(run_id="x1")
    assert isinstance(get_provider("aws", run_id="x1", region=REGION), AWSProvider)
    with pytest.raises(ConfigError, match=r"^aws: unknown timeout deploi \(known: vpc, .*deploy\)$"):
        AWSProvider(run_id="x1", region=REGION, timeouts={"deploi": 60})


def test_bucket_names_fit_and_name_their_run():
    """One bucket per store that keeps its data in one, each name within S3's 63 and
    ending in its store; the janitor recognises a run's bucket by name when its tags
    never got written (the shared bucket of older versions too). A store with its
    data on a volume has no bucket, and a bucket of any other name is the run's by
    its tags alone."""
    from harness.components import LOGS_STORE, by_role
    from harness.providers.aws import Names, _bucket_run_id, max_run_id_length

    with pytest.raises(ValueError, match=r"^aws: store 'victorialogs' has no bucket \(stores with one: cortex\)$"):
        Names("stackproof", "r1").bucket("123456789012", REGION, by_role(LOGS_STORE).name)
    assert _bucket_run_id(f"stackproof-r1-123456789012-{REGION}-loki", "stackproof", "123456789012", REGION) is None

    assert max_run_id_length() == 41 and max_run_id_length("sp") == 49
    for rid in ("sp0123456789", "nightly-999999999999-10-aws-conformance", "a" * 41, "x-cortex"):
        for region in ("us-east-1", "ap-southeast-2"):
            names = Names("stackproof", rid)
            got = names.buckets("123456789012", region)
            assert list(got) == ["cortex"]
            for store, name in got.items():
                assert len(name) <= 63 and name.startswith(f"stackproof-{rid}-")
                assert name.endswith(f"-{store}") or name.endswith(f"-{store[0]}")
                assert _bucket_run_id(name, "stackproof", "123456789012", region) == rid
                assert _bucket_run_id(name, "stackproof", "210987654321", region) is None  # another account's
            legacy = names.legacy_bucket("123456789012", region)
            assert legacy not in got.values()
            assert _bucket_run_id(legacy, "stackproof", "123456789012", region) == rid
    short = Names("stackproof", "a" * 41).buckets("123456789012", "ap-southeast-2")
    assert all(len(n) == 63 for n in short.values())  # the short form, exactly at the limit


def test_janitor_command_line(aws_env, inventory):
    """``stackproof janitor`` as CI's teardown and schedule run it: a dry run lists, a real run deletes."""
    from .conftest import run_cli

    rid = _run_id("cli")
    _aws()(run_id=rid, ttl=timedelta(hours=-1), **FAST).create()  # expired from the start
    made = inventory.count(rid)
    assert _total(made) > 10
    r = run_cli("janitor", "--provider", "aws", "--dry-run", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "dry run" in r.stdout and f"run {rid}" in r.stdout and "would delete" in r.stdout
    assert inventory.count(rid) == made
    r = run_cli("janitor", "--provider", "aws", "--run-id", rid, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deleted" in r.stdout and _total(inventory.count(rid)) == 0
    r = run_cli("janitor", "--provider", "aws", "--run-id", rid, timeout=300)
    assert r.returncode == 0 and "nothing of stackproof's to delete" in r.stdout, r.stdout + r.stderr
