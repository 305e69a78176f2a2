"""'agent-scrape' on the local cluster: the agent's scrape directory is a directory of
this machine mounted read-only into the agent's pod where the node shares this
machine's file system (local-kube), and the exporters a test lists there listen at
the target's ``agent_scrape_host`` (on local-kube the host's end of the node's veth,
which the node's guard lets a pod's TCP reach); on any other cluster the pod has no
such directory, its configuration no exporters job, and no cluster provider but
local-kube declares the capability.

The stand-ins that turn the suite's native-histogram test red, with a message naming
the scrape (``agent_scrape_dir``, ``agent_scrape_host``) rather than a histogram that
never arrived: a real Prometheus agent (the newest release's binary), with the
exporters job exactly as the local cluster renders it, that

- reads a directory other than the target's ``agent_scrape_dir`` (the scrape list not
  mounted into the pod);
- runs in a network namespace of its own, as a pod does, while the target leaves
  ``agent_scrape_host`` at loopback (the exporter bound where no pod reaches it).

The control, the same agent reading the target's directory on this machine's network,
scrapes the exporter: its run gets past the scrape and fails only on the stand-in
store's wrong histogram. The suite's own test runs in a generated pytest file, in a
subprocess; the real green run is ``pytest suites/metrics/test_agent.py --provider
local-kube --no-skips``."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from harness.binaries import BinaryResolver
from harness.components import SENDER, by_role
from harness.components.prometheus import EXPORTERS_JOB
from harness.errors import ConfigError
from harness.ports import free_ports
from harness.providers.kube import CAPABILITIES as KUBE
from harness.providers.localkube import CAPABILITIES as LOCAL_KUBE
from harness.releases import Catalog
from harness.target import Target

from .test_kube_deployer import NEW, by_key, deployer, tenants
from .test_no_skip import run_pytest

HOST = "/var/lib/stackproof-test/host"


def _agent(objects: dict) -> tuple[dict, dict, dict]:
    """(the agent's container, its pod spec, its configuration)."""
    spec = objects[("StatefulSet", "prometheus")]["spec"]["template"]["spec"]
    config = yaml.safe_load(objects[("ConfigMap", "prometheus-config")]["data"]["prometheus.yml"])
    return spec["containers"][0], spec, config


def _exporters_job(config: dict) -> list[dict]:
    return [sc for sc in config["scrape_configs"] if sc["job_name"] == EXPORTERS_JOB]


def test_on_a_node_sharing_this_machines_files_the_agent_reads_the_host_scrape_list():
    objects = by_key(deployer(None, gateway_service="NodePort", host_dir=HOST).manifests(NEW, tenants()))
    c, spec, config = _agent(objects)
    (job,) = _exporters_job(config)
    (files,) = job["file_sd_configs"][0]["files"]
    assert files.endswith("/*.json")
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == files.removesuffix("/*.json"))
    assert mount.get("readOnly") is True  # the agent only reads the list
    vol = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert vol == {"name": mount["name"], "hostPath": {"path": f"{HOST}/agent-scrape", "type": "DirectoryOrCreate"}}
    assert job["scrape_native_histograms"] is True and job["always_scrape_classic_histograms"] is True
    # the platform's own jobs are as on every cluster
    assert [sc["job_name"] for sc in config["scrape_configs"]] == ["metrics-store", "logs-store", "sender",
                                                                   EXPORTERS_JOB]


def test_elsewhere_the_agent_runs_without_an_exporters_job_and_it_is_not_declared():
    for d in (deployer(), deployer(None), deployer(None, gateway_service="NodePort")):
        c, spec, config = _agent(by_key(d.manifests(NEW, tenants())))
        assert _exporters_job(config) == []
        assert not [v for v in spec.get("volumes", []) if "hostPath" in v]
        assert [sc["job_name"] for sc in config["scrape_configs"]] == ["metrics-store", "logs-store", "sender"]
    assert "agent-scrape" not in KUBE
    assert "agent-scrape" in LOCAL_KUBE


def test_the_target_files_scrape_host_is_an_address_and_loopback_unless_said():
    base = {"name": "t", "gateway_url": "http://127.0.0.1:1", "capabilities": ["metrics"], "tenants": [
        {"name": "a", "token": "tok-a"}, {"name": "s", "token": "tok-s", "role": "system"}]}
    t = Target.from_dict(base)
    assert t.agent_scrape_host == "127.0.0.1" and "agent_scrape_host" not in t.to_dict()
    t = Target.from_dict({**base, "agent_scrape_dir": "/srv/scrape", "agent_scrape_host": "10.213.255.1"})
    assert Target.from_dict(t.to_dict()).agent_scrape_host == "10.213.255.1"
    for bad in ("node-host", "", 7):
        with pytest.raises(ConfigError, match=r"^target: field 'agent_scrape_host' must be an IP address of this "
                                              rf"machine, got {re.escape(repr(bad))}$"):
            Target.from_dict({**base, "agent_scrape_host": bad})


# -- the suite's test against stand-in agents ------------------------------------------------------------------

class _Store(BaseHTTPRequestHandler):
    """The stand-in gateway: every query answers one series with a histogram that is not the exporter's (the
    control gets this far only if the agent scraped)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        now = time.time()
        body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": [{
            "metric": {"__name__": "stackproof_agent_histogram"},
            "histograms": [[now, {"count": "1", "sum": "1", "buckets": [[0, "0.5", "1", "1"]]}]]}]}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


GENERATED = """\
import pytest

from harness.target import Target
from suites.metrics.test_agent import (
    test_the_agent_sends_a_scraped_histogram_native_and_classic_bucket_by_bucket as test_native)

TARGETS = {targets!r}


@pytest.fixture(scope="module", params=sorted(TARGETS))
def target(request):
    return Target.load(TARGETS[request.param])
"""

SCRAPE = (r"the agent's scrape of the exporter at {address} \(listed in \S+; without one, the agent does not read "
          r"agent_scrape_dir or cannot reach agent_scrape_host\): not visible after")
EXPECTED = {
    "not-mounted": ("FAILED", SCRAPE.format(address=r"127\.0\.0\.1:\d+")),
    "loopback-from-a-pod": ("FAILED", SCRAPE.format(address=r"127\.0\.0\.1:\d+")),
    # past the scrape: only the stand-in store's histogram is wrong
    "sound": ("FAILED", r"the native histogram: count, sum, the zero bucket and every schema-0 bucket"),
}


def _start_agent(tmp: Path, name: str, reads: Path, own_netns: bool) -> subprocess.Popen:
    """A real Prometheus agent whose exporters job is the local cluster's, reading ``reads``; in a network
    namespace of its own (its loopback its own, as a pod's is) with ``own_netns``."""
    objects = by_key(deployer(None, gateway_service="NodePort", host_dir=HOST).manifests(NEW, tenants()))
    (job,) = _exporters_job(_agent(objects)[2])
    job["file_sd_configs"][0]["files"] = [str(reads / "*.json")]
    config = tmp / f"{name}.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s"}, "scrape_configs": [job]}))
    sender = by_role(SENDER)
    binary = BinaryResolver().resolve(sender.spec, Catalog.load().newest(1)[0].version(sender.release_key)).path
    port = 9090 if own_netns else free_ports(1)[0]
    cmd = [str(binary), "--agent", f"--config.file={config}", f"--storage.agent.path={tmp / name}",
           f"--web.listen-address=127.0.0.1:{port}"]
    if own_netns:
        cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "agent", *cmd]
    log = tmp / f"{name}.log"
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    for _ in range(600):
        if "Server is ready to receive web requests" in log.read_text():
            return p
        assert p.poll() is None, log.read_text()
        time.sleep(0.05)
    raise AssertionError(f"agent {name} not ready: {log.read_text()}")


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of the agent's own needs root")
def test_the_native_histogram_test_names_a_scrape_list_not_read_or_an_exporter_out_of_reach(tmp_path):
    store = ThreadingHTTPServer(("127.0.0.1", 0), _Store)
    threading.Thread(target=store.serve_forever, daemon=True).start()
    read, elsewhere, pod_reads = tmp_path / "read", tmp_path / "elsewhere", tmp_path / "pod-reads"
    for d in (read, elsewhere, pod_reads):
        d.mkdir()
    procs = [_start_agent(tmp_path, "agent", read, own_netns=False),
             _start_agent(tmp_path, "pod-agent", pod_reads, own_netns=True)]
    try:
        targets = {}
        for mode, scrape_dir in (("not-mounted", elsewhere), ("loopback-from-a-pod", pod_reads), ("sound", read)):
            data = {"name": f"scrape-{mode}", "provider": "existing",
                    "gateway_url": f"http://127.0.0.1:{store.server_address[1]}",
                    "tenants": [{"name": "tenant-a", "token": "tok-a"}, {"name": "tenant-b", "token": "tok-b"},
                                {"name": "stackproof-system", "token": "tok-s", "role": "system"}],
                    "capabilities": ["metrics", "agent", "agent-scrape"], "agent_scrape_dir": str(scrape_dir)}
            targets[mode] = str(tmp_path / f"{mode}.yaml")
            Path(targets[mode]).write_text(yaml.safe_dump(data))
        (tmp_path / "test_generated.py").write_text(GENERATED.format(targets=targets))
        r = run_pytest(tmp_path, "test_generated.py", "-n", "2", "--no-skips", "--provider", "existing",
                       "--target-file", targets["sound"], timeout=600)
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)
        store.shutdown()
        store.server_close()
    out = r.stdout + r.stderr
    (tmp_path / "run.log").write_text(out)
    for mode, (word, rx) in EXPECTED.items():
        node = f"test_native[{mode}]"
        assert re.search(rf"^{word} test_generated\.py::{re.escape(node)}", out, re.M), (node, word, out)
        # the failure's own section (the summary line is cut at the terminal's width)
        section = re.search(rf"^_+ {re.escape(node)} _+$(.*?)(?=^_+ |^=+ )", out, re.M | re.S)
        assert section and re.search(rf"^{rx}", section.group(1), re.M), (node, rx, out)
    assert re.search(r"= 3 failed(, \d+ warnings?)? in ", out), out  # and no error
