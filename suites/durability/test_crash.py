"""Crashes and restarts of the stores during continuous writes, judged
against what the target declares of each store (``durability`` in the target
file): a graceful stop loses nothing; a kill -9 loses no acknowledged write
older than the store's declared window (0 s for a store with a write-ahead
log), and the measured loss is reported; a store whose data is declared to be
in object storage serves it after losing its local disk, and a store whose data
is declared on its own volume loses exactly that data with the volume.

These tests stop and kill the platform's stores: run them on a platform of
their own (``pytest suites/durability``), never beside other suites."""

from __future__ import annotations

import fcntl
import tempfile
import time
from pathlib import Path

import pytest

from harness.clients import LogsPush, PromQLClient, RemoteWriteClient, Select, logs_reader, poll_until
from harness.clients.alerting import RuleGroups
from harness.writers import ContinuousWriter, judge_crash_loss, read_back, verify

pytestmark = pytest.mark.durability

ROLE_OF = {"metrics": "metrics-store", "logs": "logs-store"}
SIGNALS = tuple(ROLE_OF)


def _served(target, tenant) -> dict[str, str]:
    """What each store answers through the gateway to a harmless read: {} when all serve."""
    bad = {}
    for what, read in (("metrics store (PromQL)", lambda: PromQLClient(target, tenant).query("vector(1)")),
                       ("logs store", lambda: logs_reader(target, tenant).count(Select.of({"job": "none"}),
                                                                                 time.time_ns() - 10**9,
                                                                                 time.time_ns())),
                       *((("the ruler's API", lambda: RuleGroups(target, tenant).list()),)
                         if target.has("alerting") else ())):
        try:
            read()
        except Exception as exc:  # what failed is the report
            bad[what] = f"{type(exc).__name__}: {str(exc)[:120]}"
    return bad


@pytest.fixture(autouse=True)
def one_at_a_time(target, tenant_a):
    """Durability tests take the platform down in turns, even under xdist, and each
    starts on a platform whose stores answer through the gateway: a store another
    test restarted may be ready on its own port before the gateway reaches every
    path of it (the alerting test's first ruler request once got the gateway's 502)."""
    lock = Path(tempfile.gettempdir()) / f"stackproof-durability-{target.name}.lock"
    with open(lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        vis = poll_until(lambda: _served(target, tenant_a), lambda bad: not bad, timeout=120)
        if not vis.ok:
            pytest.fail(f"the platform does not serve through the gateway after 120 s: {vis.value}", pytrace=False)
        yield


def _writers(target, tenant, test_id):
    return {"metrics": ContinuousWriter("metrics", target, tenant,
                                        {"__name__": "stackproof_durability_seq", "stackproof_test": test_id},
                                        max_seconds=120),
            "logs": ContinuousWriter("logs", target, tenant, {"stackproof_test": test_id, "job": "durability"},
                                     max_seconds=120)}


def _exact_apart_from_loss(check, result, what):
    check.equal({k: result[k] for k in ("duplicated", "unexpected", "wrong_timestamp")},
                {"duplicated": [], "unexpected": [], "wrong_timestamp": []},
                f"{what}: no acknowledged write stored twice, unasked for, or at another timestamp")
    check.true(result["acked"] > 0, f"{what}: some writes were acknowledged", str(result))


def _crash_ns(log, asked_ns: int) -> int:
    """When the crash happened, as the victim's writer saw it: its first failed attempt
    after the kill was asked for. On the local platform that is the moment of the ask;
    in a cluster the SIGKILL comes from a helper pod on the node a second or two later,
    and writes acknowledged meanwhile are from before the crash, not after it."""
    failed = [a.t for a in log.attempts if a.t * 1e9 >= asked_ns and not 200 <= a.status < 300]
    if not failed:
        return asked_ns
    # the last acknowledgement before that failure: the store was still alive then
    acked = [a.t for a in log.attempts if 200 <= a.status < 300 and a.t < min(failed)]
    return max(asked_ns, int(max(acked) * 1e9)) if acked else asked_ns


@pytest.mark.parametrize("victim", SIGNALS, ids=lambda s: f"{s}-store")
def test_kill_9_loses_nothing_older_than_the_declared_window(target, tenant_a, test_id, platform_control, check,
                                                             victim):
    since = time.time_ns()
    writers = _writers(target, tenant_a, test_id)
    for w in writers.values():
        w.start()
    try:
        time.sleep(4.0)
        kill_ns = time.time_ns()
        platform_control.kill_component(ROLE_OF[victim])  # SIGKILL: no flush, no goodbye
        time.sleep(1.0)
        ready = platform_control.start_component(ROLE_OF[victim])  # replays its write-ahead log, if it has one
        time.sleep(2.0)
    finally:
        logs = {s: w.stop() for s, w in writers.items()}
    kill_ns = _crash_ns(logs[victim], kill_ns)
    for signal, log in logs.items():
        declared = target.durability[signal].crash_loss_seconds if signal == victim else 0.0
        read = read_back(writers[signal], since)
        what = f"{signal} across kill -9 of the {victim} store"
        # everything acked after the restart, and before the declared window, must show up
        result = check.visible(signal, lambda lg=log, rd=read: verify(lg, rd),
                               lambda r, lg=log, d=declared: not judge_crash_loss(lg, r, kill_ns, d)["violations"],
                               f"{what}: acked writes", timeout=30, settle=True)
        verdict = judge_crash_loss(log, result, kill_ns, declared)
        print(f"{what}: {result['acked']} acked, {len(result['lost'])} lost, measured loss window "
              f"{verdict['loss_seconds']:.2f}s, declared {declared}s; {victim} store ready {ready:.1f}s after restart")
        check.equal(verdict["violations"], [], f"{what}: acked writes lost outside the declared {declared} s window")
        _exact_apart_from_loss(check, result, what)
    check.true(bool(logs[victim].outages()), f"the {victim} writer saw the crash", "no failed attempt")


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: f"{s}-store")
def test_graceful_stop_during_writes_loses_nothing(target, tenant_a, test_id, platform_control, check, signal):
    since = time.time_ns()
    writer = _writers(target, tenant_a, test_id)[signal].start()
    try:
        time.sleep(2.0)
        check.equal(platform_control.stop_component(ROLE_OF[signal]), "stopped", f"the {signal} store stops")
        time.sleep(0.5)
        platform_control.start_component(ROLE_OF[signal])
        time.sleep(2.0)
    finally:
        log = writer.stop()
    read = read_back(writer, since)
    result = check.visible(signal, lambda: verify(log, read), lambda r: not r["lost"],
                           f"{signal} acked writes across a graceful stop", timeout=60)
    check.equal(result["lost"], [], f"{signal}: no acknowledged write lost across a graceful stop")
    _exact_apart_from_loss(check, result, f"{signal} across a graceful stop")
    check.true(bool(log.outages()), f"the {signal} writer saw the stop", "no failed attempt")


def _bucket_objects(target, signal: str) -> list[str]:
    """Object keys in the signal's bucket: through boto3 for S3, else the files of a filesystem bucket."""
    st = target.object_storage or {}
    bucket = st.get(f"{signal}_bucket")
    if not bucket:
        pytest.fail(f"target {target.name!r} declares {signal} in object storage but names no {signal}_bucket "
                    "in object_storage", pytrace=False)
    if st.get("type") == "s3":
        import boto3
        from botocore.config import Config

        s3 = boto3.client("s3", endpoint_url=st["endpoint"], aws_access_key_id=st["access_key_id"],
                          aws_secret_access_key=st["secret_access_key"], region_name=st.get("region", "us-east-1"),
                          config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}))
        keys = []
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys
    if st.get("type") == "filesystem":
        root = Path(st["path"]) / bucket
        return [str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()]
    pytest.skip(f"target {target.name!r} does not publish its object storage")


def disk_loss_violations(signal: str, in_bucket: bool, written: list, got: list) -> list[str]:
    """What a read after the store lost its local disk says against the declaration: a store
    declared in object storage serves exactly what was written; a store declared on its own
    volume loses it with the volume, so it serves none of it (data that survives where the
    target says it cannot is a wrong declaration, not a bonus)."""
    if in_bucket and got != written:
        return [f"{signal}: declared in object storage, but after the local disk was lost it served "
                f"{len(got)} items where {len(written)} were written (or other values)"]
    if not in_bucket and got:
        return [f"{signal}: declared on its own volume (lost with it), but {len(got)} of the {len(written)} items "
                "written before the volume was removed came back: the target should declare object_storage"]
    return []


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: f"{s}-store")
def test_a_lost_local_disk_keeps_or_loses_the_data_exactly_as_declared(
        target, tenant_a, test_id, platform_control, check, signal):
    """Whatever the target declares of the store (``durability.<signal>.object_storage``) is
    proven, both ways: data in object storage is flushed to the bucket by a graceful stop and
    served, exactly, after the local disk is deleted; data declared on its own volume is gone
    with the volume, and the store serves again (a write after the restart reads back) with
    nothing of what was written before."""
    in_bucket = target.durability[signal].object_storage
    # from now on: after an earlier graceful restart (flush on shutdown) Cortex takes
    # nothing older than the newest sample of the block it cut ("out of bounds")
    t0 = int(time.time() * 1000)
    if signal == "metrics":
        rw, promql = RemoteWriteClient(target, tenant_a), PromQLClient(target, tenant_a)

        def write(phase: str, start_ms: int) -> tuple[dict, list]:
            labels = {"__name__": "stackproof_bucket", "stackproof_test": test_id, "phase": phase}
            data = [(start_ms + i * 100, float(i)) for i in range(30)]
            check.status(rw.write([(labels, data)]), (200, 204), f"write ({phase})")
            return labels, data

        def read(labels: dict) -> list:
            return promql.raw_samples(labels, time.time() + 40, "10m")
    else:
        push, reader = LogsPush(target, tenant_a), logs_reader(target, tenant_a)

        def write(phase: str, start_ms: int) -> tuple[dict, list]:
            labels = {"stackproof_test": test_id, "job": "bucket", "phase": phase}
            data = [(start_ms * 10**6 + i * 1_000_000_007, f"line {i}") for i in range(30)]
            check.status(push.push_proto([(labels, data)]), 204, f"push ({phase})")
            return labels, data

        def read(labels: dict) -> list:
            return reader.entries(Select.of(labels), t0 * 10**6 - 60 * 10**9, time.time_ns() + 120 * 10**9)

    labels, written = write("before", t0)
    check.visible(signal, lambda: read(labels), lambda got: len(got) >= len(written), "written data before the stop")
    before = _bucket_objects(target, signal) if in_bucket else []
    check.equal(platform_control.stop_component(ROLE_OF[signal]), "stopped", f"the {signal} store stops (flushes)")
    if in_bucket:
        flushed = sorted(set(_bucket_objects(target, signal)) - set(before))
        check.true(bool(flushed), f"the graceful stop of the {signal} store wrote new objects to the bucket",
                   f"{len(before)} objects before, none new after")
        print(f"{signal} store: graceful stop flushed {len(flushed)} objects to the "
              f"{(target.object_storage or {}).get('type', '?')} bucket, e.g. {flushed[:3]}")
    removed = platform_control.remove_local_data(ROLE_OF[signal])
    check.true(bool(removed), f"the {signal} store's local data was removed", "nothing to remove")
    platform_control.start_component(ROLE_OF[signal])
    if in_bucket:
        got = check.visible(signal, lambda: read(labels), lambda g: len(g) >= len(written),
                            f"data served from the bucket after the {signal} store lost its local disk", timeout=120)
    else:
        # the store serves again: what is written now reads back, so an empty answer below is an answer
        after_labels, after = write("after", int(time.time() * 1000))
        check.visible(signal, lambda: read(after_labels), lambda g: len(g) >= len(after),
                      f"the {signal} store serves after it lost its volume", timeout=120)
        got = read(labels)
        print(f"{signal} store: declared on its own volume; after the volume was removed {len(got)} of "
              f"{len(written)} items written before it are served (declared: none)")
    check.equal(disk_loss_violations(signal, in_bucket, written, got), [],
                f"{signal}: what is served after the local disk was lost is what the target declares")
