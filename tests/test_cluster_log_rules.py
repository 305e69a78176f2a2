"""'log-alerting' on clusters: the log rule evaluator (vmalert) per tenant as a cluster
shape, its rule files kept by the provider in a ConfigMap of each instance's own, and
the gateway routing ``/vmalert/...`` to the token's own tenant's instance, as locally.

Rendered without a cluster, then against a real kube-apiserver on loopback: set, read
and delete rule files through the deployer, each checked first by the release's real
vmalert (``-dryRun``); a deploy or an upgrade never rewrites them. The stand-ins that
turn it red: a file vmalert refuses (refused in one line, nothing changed), and an
evaluator that never loads what was set (its pod never runs): the provider fails in
one line rather than returning as if it had loaded."""

from __future__ import annotations

import re

import pytest
import yaml

from harness.errors import ComponentError, StackproofError
from harness.providers.kube import KubeApi, KubeDeployer
from harness.providers.kube.manifests import HASH_ANNOTATION

from . import test_kube_deployer as kube_tests
from .test_kube_deployer import LABELS, NEW, OLD, S3, StandIn, by_key, deployer, tenants

control_plane = kube_tests.control_plane  # a real kube-apiserver and etcd on loopback (module scope)

RULE = {"name": "errors", "interval": "1s",
        "rules": [{"record": "stackproof:errors", "expr": '_stream:{job="x"} "ERROR" | stats count() as n'}]}


def test_each_tenant_has_its_evaluator_reading_its_kept_rule_files():
    manifests = deployer().manifests(NEW, tenants())
    objects = by_key(manifests)
    for t in tenants():
        name = f"vmalert-{t.name}"
        sts = objects[("StatefulSet", name)]
        c = sts["spec"]["template"]["spec"]["containers"][0]
        rule = next(a for a in c["command"] if a.startswith("-rule="))
        rules_dir = rule.removeprefix("-rule=").removesuffix("/*.yml")
        assert rules_dir == f"/stackproof/config/vmalert/{t.name}"
        # the kept ConfigMap is mounted exactly where '-rule' looks, read-only, with the base file
        mount = next(m for m in c["volumeMounts"] if m["name"] == "kept")
        assert mount == {"name": "kept", "mountPath": rules_dir, "readOnly": True}
        vol = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == "kept")
        assert vol == {"name": "kept", "configMap": {"name": f"{name}-kept"}}
        assert objects[("ConfigMap", f"{name}-kept")]["data"] == {"stackproof.yml": "groups: []\n"}
        # the tenant in its flags, for all three directions (the gateway sets no header for it)
        assert f"-datasource.headers=AccountID:{t.account_id}^^ProjectID:0" in c["command"]
        assert f"-notifier.headers=X-Scope-OrgID:{t.name}" in c["command"]
        assert "-datasource.url=http://victorialogs.stackproof.svc:9428" in c["command"]
        assert c["readinessProbe"]["httpGet"] == {"path": "/vmalert/health", "port": "http"}
        assert objects[("Service", name)]["spec"]["ports"] == [{"name": "http", "port": 8880, "targetPort": "http",
                                                                 "protocol": "TCP"}]


def test_the_gateway_sends_each_token_to_its_own_tenants_evaluator():
    nginx = deployer().component_configs(NEW, tenants())["gateway"]["nginx.conf"]
    block = re.search(r"map \$stackproof_tenant \$stackproof_vmalert \{(.*?)\}", nginx, re.S).group(1)
    rows = dict(re.findall(r'"([^"]+)" "([^"]+)";', block))
    assert rows == {t.name: f"vmalert-{t.name}" for t in tenants()}
    for t in tenants():
        assert f"upstream vmalert-{t.name} {{ server vmalert-{t.name}.stackproof.svc:8880;" in nginx
    assert re.search(r"location = /vmalert/api/v1/rules \{.*?proxy_pass http://\$stackproof_vmalert;", nginx, re.S)


def test_kept_files_are_a_group_apart_and_in_no_pod_hash():
    """The deployer applies the 'kept' group only where a ConfigMap is absent; a pod's hash
    covers what the deployer renders for it, never the kept files (changing a tenant's rules
    must not roll its pod: vmalert reads the files as they change)."""
    groups = deployer().render(NEW, tenants())
    assert [m["metadata"]["name"] for m in groups["kept"]] == [f"vmalert-{t.name}-kept" for t in tenants()]
    for t in tenants():
        sts = groups[f"vmalert-{t.name}"][-1]
        assert [m["kind"] for m in groups[f"vmalert-{t.name}"]] == ["Service", "StatefulSet"]  # nothing it reads
        assert HASH_ANNOTATION in sts["spec"]["template"]["metadata"]["annotations"]


def test_a_bad_namespace_or_a_group_that_picks_its_tenant_is_one_line_before_any_api_call():
    d = deployer()  # its API is unreachable: these are refused before it is asked
    with pytest.raises(StackproofError) as exc:
        d.set_log_rules("tenant-a", "../x", yaml.safe_dump({"groups": [RULE]}))
    assert "'../x' is not a rule namespace" in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(StackproofError) as exc:
        d.set_log_rules("tenant-a", "ns", yaml.safe_dump({"groups": [{**RULE, "headers": ["AccountID: 2"]}]}))
    assert "sets 'headers'" in str(exc.value)


@pytest.mark.slow
def test_rule_files_kept_in_the_cluster_checked_by_vmalert_and_left_alone_by_upgrades(control_plane, tmp_path):
    kc = control_plane.kubeconfig()
    ns = "sp-rules"
    d = KubeDeployer(kc, ns, storage=S3, labels=LABELS, workdir=tmp_path, poll_interval=0.2, progress=lambda m: None)
    with StandIn(kc, ns):
        target = d.deploy(OLD, timeout=60)
    assert target.has("log-alerting")
    api = KubeApi(kc)
    for t in target.tenants:
        assert api.get("v1", "ConfigMap", f"vmalert-{t.name}-kept", ns)["data"] == {"stackproof.yml": "groups: []\n"}
    text = yaml.safe_dump({"groups": [RULE]}, sort_keys=False)
    d.set_log_rules("tenant-a", "ns-1", text)  # no pod runs here (no kubelet): nothing to wait for
    assert d.log_rules("tenant-a") == {"ns-1": text}
    assert d.log_rules("tenant-b") == {}
    with pytest.raises(StackproofError) as exc:
        d.set_log_rules("nobody", "ns", "groups: []\n")
    assert "no tenant 'nobody'" in str(exc.value)
    # vmalert's own check (the release's binary): a LogsQL syntax error is refused, nothing changed
    bad = yaml.safe_dump({"groups": [{**RULE, "rules": [{"record": "x", "expr": "stats count( as"}]}]})
    with pytest.raises(StackproofError) as exc:
        d.set_log_rules("tenant-a", "ns-2", bad)
    assert str(exc.value).startswith("log rules 'ns-2' of tenant-a: ") and "\n" not in str(exc.value)
    assert d.log_rules("tenant-a") == {"ns-1": text}
    # a later process, an upgrade and a second deploy: the files are the provider's, never rewritten
    later = KubeDeployer(kc, ns, storage=S3, labels=LABELS, workdir=tmp_path / "2", poll_interval=0.2,
                         progress=lambda m: None)
    with StandIn(kc, ns):
        later.upgrade(NEW, timeout=60)
        later.deploy(NEW, timeout=60)
    assert later.log_rules("tenant-a") == {"ns-1": text}
    later.delete_log_rules("tenant-a", "ns-1")
    later.delete_log_rules("tenant-a", "ns-1")  # no error when there is none
    assert later.log_rules("tenant-a") == {}

    # the stand-in evaluator that never loads: its pod exists but never runs (no kubelet here)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vmalert-tenant-a-0", "namespace": ns,
                                                           "labels": later.selector("vmalert-tenant-a")},
           "spec": {"serviceAccountName": "stackproof", "automountServiceAccountToken": False,
                    "containers": [{"name": "vmalert-tenant-a", "image": "victoriametrics/vmalert:v1.121.0"}]}}
    api.apply(pod)
    later.rules_wait_s = 3
    with pytest.raises(ComponentError) as exc:
        later.set_log_rules("tenant-a", "ns-1", text)
    assert str(exc.value).startswith("vmalert-tenant-a did not load its rule file ns-1.yml within 3s")
    # the pod was told to sync its volumes (an annotation with the files' digest)
    annotations = api.get("v1", "Pod", "vmalert-tenant-a-0", ns)["metadata"]["annotations"]
    assert re.fullmatch(r"[0-9a-f]{32}", annotations["stackproof/kept-files"])
    with StandIn(kc, ns):
        d.delete(timeout=60)
