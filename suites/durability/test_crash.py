"""Crashes and restarts of the stores during continuous writes lose no
acknowledged write; a graceful stop flushes to object storage, and the data is
served from the bucket after the stores' local disks are gone.

These tests stop and kill the platform's stores: run them on a platform of
their own (``pytest suites/durability``), never beside other suites."""

from __future__ import annotations

import fcntl
import tempfile
import time
from pathlib import Path

import pytest

from harness.clients import LokiClient, PromQLClient
from harness.clients.logs import logql_selector
from harness.writers import ContinuousWriter, verify_logs, verify_metrics

pytestmark = pytest.mark.durability

STORE_OF = {"metrics": "cortex", "logs": "loki"}
STORE_OF_REV = {v: k for k, v in STORE_OF.items()}


@pytest.fixture(autouse=True)
def one_at_a_time(target):
    """Durability tests take the platform down in turns, even under xdist."""
    lock = Path(tempfile.gettempdir()) / f"stackproof-durability-{target.name}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _read_metrics(target, tenant, labels, since_ms):
    promql = PromQLClient(target, tenant)

    def read():
        window_s = max(60, int((time.time() * 1000 - since_ms) / 1000) + 60)
        return promql.raw_samples(labels, time.time(), f"{window_s}s")
    return read


def _read_logs(target, tenant, labels, since_ns):
    loki = LokiClient(target, tenant)
    return lambda: loki.entries(logql_selector(labels), since_ns - 10**9, time.time_ns() + 10**9, limit=5000)


def _verify(check, signal, log, reader, what):
    verify = verify_metrics if signal == "metrics" else verify_logs
    result = check.visible(signal, lambda: verify(log, reader), lambda r: not r["lost"], f"{what}: acked writes",
                           timeout=60)
    check.equal({k: result[k] for k in ("lost", "duplicated", "unexpected", "wrong_timestamp")},
                {"lost": [], "duplicated": [], "unexpected": [], "wrong_timestamp": []},
                f"{what}: every acknowledged write stored exactly once, at its timestamp")
    check.true(result["acked"] > 0, f"{what}: some writes were acknowledged", str(result))
    return result


def _bucket_objects(target, store: str) -> list[str]:
    """Object keys in the store's bucket: through boto3 for S3, else the files of a filesystem bucket."""
    st = target.object_storage or {}
    if st.get("type") == "s3":
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=st["endpoint"], aws_access_key_id=st["access_key_id"],
                          aws_secret_access_key=st["secret_access_key"], region_name=st.get("region", "us-east-1"),
                          config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=store):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys
    if st.get("type") == "filesystem":
        root = Path(st["path"]) / store
        return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    pytest.skip(f"target {target.name!r} does not publish its object storage")


@pytest.mark.parametrize("victim", ["cortex", "loki"])
def test_kill_9_during_writes_loses_no_acknowledged_write(target, tenant_a, test_id, platform_control, check,
                                                          victim):
    t_ms, t_ns = int(time.time() * 1000), time.time_ns()
    mlabels = {"__name__": "stackproof_durability_seq", "stackproof_test": test_id}
    llabels = {"stackproof_test": test_id, "job": "durability"}
    with ContinuousWriter("metrics", target, tenant_a, mlabels, max_seconds=120) as mw, \
            ContinuousWriter("logs", target, tenant_a, llabels, max_seconds=120) as lw:
        time.sleep(2.0)
        platform_control.kill_component(victim)  # SIGKILL: no flush, no goodbye
        time.sleep(1.0)
        ready = platform_control.start_component(victim)  # replays its write-ahead log
        time.sleep(2.0)
    for signal, w, reader in (("metrics", mw.log, _read_metrics(target, tenant_a, mlabels, t_ms)),
                              ("logs", lw.log, _read_logs(target, tenant_a, llabels, t_ns))):
        result = _verify(check, signal, w, reader, f"{signal} across kill -9 of {victim}")
        outages = w.outages()
        print(f"{signal} writer across kill -9 of {victim}: {result['acked']} acked, "
              f"{w.summary()['failed_attempts']} failed attempts, outages {[o['seconds'] for o in outages]}, "
              f"{victim} ready {ready:.1f}s after restart")
    # the killed store's own signal must have seen an outage: the test really crashed it
    victim_log = mw.log if victim == "cortex" else lw.log
    check.true(bool(victim_log.outages()), f"the {STORE_OF_REV[victim]} writer saw the crash", "no failed attempt")


@pytest.mark.parametrize("store", ["cortex", "loki"])
def test_graceful_stop_flushes_to_the_bucket_and_data_survives_losing_the_local_disk(
        target, tenant_a, test_id, platform_control, check, store):
    signal = STORE_OF_REV[store]
    t0 = int(time.time() * 1000) - 30_000
    if signal == "metrics":
        from harness.clients import RemoteWriteClient
        labels = {"__name__": "stackproof_bucket", "stackproof_test": test_id}
        written = [(t0 + i * 1000, float(i)) for i in range(30)]
        check.status(RemoteWriteClient(target, tenant_a).write([(labels, written)]), (200, 204), "write")
        promql = PromQLClient(target, tenant_a)

        def read():
            return promql.raw_samples(labels, (t0 + 40_000) / 1000, "10m")
    else:
        labels = {"stackproof_test": test_id, "job": "bucket"}
        written = [(t0 * 10**6 + i * 1_000_000_007, f"line {i}") for i in range(30)]
        check.status(LokiClient(target, tenant_a).push_proto([(labels, written)]), 204, "push")
        loki = LokiClient(target, tenant_a)

        def read():
            return loki.entries(logql_selector(labels), t0 * 10**6 - 60 * 10**9, t0 * 10**6 + 120 * 10**9)

    check.visible(signal, read, lambda got: len(got) >= len(written), "written data before the stop")
    before = _bucket_objects(target, store)
    check.equal(platform_control.stop_component(store), "stopped", f"{store} stops gracefully (flushes)")
    flushed = sorted(set(_bucket_objects(target, store)) - set(before))
    check.true(bool(flushed), f"the graceful stop of {store} wrote new objects to the bucket",
               f"{len(before)} objects before, none new after")
    print(f"{store}: graceful stop flushed {len(flushed)} objects to the "
          f"{(target.object_storage or {}).get('type', '?')} bucket, e.g. {flushed[:3]}")
    removed = platform_control.remove_local_data(store)
    check.true(bool(removed), f"{store}'s local data was removed", "nothing to remove")
    platform_control.start_component(store)
    got = check.visible(signal, read, lambda g: len(g) >= len(written),
                        f"data served from the bucket after {store} lost its local disk", timeout=120)
    check.equal(got, written, f"{signal} read back from the bucket, exactly")
