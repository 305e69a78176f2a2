"""The release gate: provision --upgrade-from, write a known corpus, keep
query results, upgrade to --upgrade-to with writers running, and prove that
nothing written was lost, nothing acknowledged went missing, and the kept
queries answer the same. ``pytest suites/upgrade`` (a platform of its own)."""

from __future__ import annotations

import time

import pytest

from harness.clients import LogsPush, PromQLClient, RemoteWriteClient, Select, logs_reader
from harness.clients.metrics import selector
from harness.providers.base import STOPPING
from harness.summary import PROP_UPGRADE
from harness.writers import ContinuousWriter, read_back, verify

pytestmark = pytest.mark.upgrade

STEP_MS = 60_000
SPAN_MS = 3 * 3600_000  # three hours: crosses at least one 2h block boundary of Cortex
N_SERIES = 20
N_STREAMS = 10
LINES_PER_STREAM = 200


def _corpus_metrics(test_id: str, end_ms: int):
    start = (end_ms - SPAN_MS) // STEP_MS * STEP_MS
    series = [{"__name__": "stackproof_corpus", "stackproof_test": test_id, "s": f"{i:02d}"} for i in range(N_SERIES)]
    samples = {i: [(t, float(i * 1000 + k)) for k, t in enumerate(range(start, end_ms, STEP_MS))]
               for i in range(N_SERIES)}
    return series, samples, start


def _write_corpus_metrics(rw: RemoteWriteClient, series, samples, check):
    # time-sliced requests, oldest first: the head accepts samples no older than
    # an hour before its newest, so every series advances together
    n = len(next(iter(samples.values())))
    for k0 in range(0, n, 10):
        batch = [(series[i], samples[i][k0:k0 + 10]) for i in range(len(series))]
        check.status(rw.write(batch), (200, 204), f"corpus metrics, slice {k0 // 10}")


KEPT_PROMQL = ["sum(stackproof_corpus{{stackproof_test='{id}'}})",
               "count(stackproof_corpus{{stackproof_test='{id}'}})",
               "max_over_time(stackproof_corpus{{stackproof_test='{id}',s='07'}}[3h])",
               "rate(stackproof_corpus{{stackproof_test='{id}',s='03'}}[10m])"]


def _kept_results(target, tenant, test_id, at_ms):
    promql, reader = PromQLClient(target, tenant), logs_reader(target, tenant)
    out = {}
    for q in KEPT_PROMQL:
        qq = q.format(id=test_id)
        out[qq] = sorted((tuple(sorted(r["metric"].items())), r["value"][1]) for r in promql.query(qq, at_ms / 1000))
    # log counts, as the store counts them: all lines, and the 'even' ones per app,
    # and per 30-minute window over the last four hours
    start, end, step = (at_ms - 4 * 3600_000) * 10**6, at_ms * 10**6, 1800 * 10**9
    every = Select.of({"stackproof_test": test_id})
    out["logs count"] = reader.count(every, start, end)
    for j in range(N_STREAMS):
        out[f"logs count app{j} even"] = reader.count(every.where("app", "=", f"app{j}").line("contains", "even"),
                                                      start, end)
    aligned = -(-start // step) * step  # whole windows only, all before `end` (the writers come after it)
    out["logs count per 30 min"] = reader.counts(every, aligned, step, (end - aligned) // step)
    return out


def _read_all_samples(promql, labels, end_ms):
    return promql.raw_samples(labels, end_ms / 1000, f"{SPAN_MS // 1000 + 600}s")


def test_upgrade_loses_nothing(target, tenant_a, test_id, platform_control, upgrade_releases, check, request):
    old, new = upgrade_releases
    check.equal(target.release, old.name, "the platform starts at the --upgrade-from release")
    now = int(time.time() * 1000)

    # -- before: a corpus across a block boundary, and the kept queries ------------------
    series, samples, start = _corpus_metrics(test_id, now - 60_000)
    _write_corpus_metrics(RemoteWriteClient(target, tenant_a), series, samples, check)
    # logs across the last two hours, in time-ordered pushes per stream
    log_start = now - 2 * 3600_000
    streams = [({"stackproof_test": test_id, "app": f"app{j}"},
                [(log_start * 10**6 + k * 30_000_000_007 + j, f"{'even' if k % 2 == 0 else 'odd'} line {k} of app{j}")
                 for k in range(LINES_PER_STREAM)]) for j in range(N_STREAMS)]
    push, reader = LogsPush(target, tenant_a), logs_reader(target, tenant_a)
    for labels, entries in streams:
        check.status(push.push_proto([(labels, entries)]), 204, f"corpus logs {labels['app']}")
    promql = PromQLClient(target, tenant_a)
    check.visible("metrics", lambda: _read_all_samples(promql, series[-1], now), lambda s: len(s) == len(samples[0]),
                  "corpus metrics before the upgrade")
    check.visible("logs", lambda: reader.entries(Select.of(streams[-1][0]), log_start * 10**6, now * 10**6),
                  lambda e: len(e) == LINES_PER_STREAM, "corpus logs before the upgrade")
    kept = _kept_results(target, tenant_a, test_id, now)
    check.true(all(kept.values()), "every kept query has a result before the upgrade", str(kept)[:300])

    # -- during: continuous writers across the component swaps, one per write protocol ----
    swaps: list[dict] = []
    writers = _writers(target, tenant_a, test_id)
    t_up0 = time.time()
    for w in writers.values():
        w.start()
    try:
        time.sleep(2.0)
        platform_control.upgrade(new, on_swap=lambda comp, phase, info: swaps.append(
            {"component": comp, "phase": phase, "t": time.time(), **{k: v for k, v in info.items()
                                                                    if k in ("from", "to", "stop")}}))
        time.sleep(3.0)
    finally:
        logs = {name: w.stop() for name, w in writers.items()}
    upgrade_seconds = time.time() - t_up0 - 5.0

    # -- after -------------------------------------------------------------------------
    target_after = type(target).load(target.path)
    check.equal(target_after.release, new.name, "the platform is at the --upgrade-to release")
    got_m = {i: _read_all_samples(promql, series[i], now) for i in range(N_SERIES)}
    check.equal(got_m, samples, "every corpus sample after the upgrade (timestamp ms, value)")
    got_l = {lb["app"]: reader.entries(Select.of(lb), log_start * 10**6 - 10**9, now * 10**6) for lb, _ in streams}
    check.equal(got_l, {lb["app"]: e for lb, e in streams}, "every corpus line after the upgrade")
    check.equal(_kept_results(target, tenant_a, test_id, now), kept, "the kept queries answer the same")
    t_ns = int(t_up0 * 1e9) - 10**9
    results = {}
    for name, writer in writers.items():
        log, read = writer.log, read_back(writer, t_ns)
        res = check.visible(writer.signal, lambda lg=log, rd=read: verify(lg, rd), lambda r: not r["lost"],
                            f"{name} writes acknowledged during the upgrade", timeout=90)
        check.equal({k: res[k] for k in ("lost", "duplicated", "unexpected", "wrong_timestamp")},
                    {"lost": [], "duplicated": [], "unexpected": [], "wrong_timestamp": []},
                    f"{name}: every acknowledged write readable exactly once")
        results[name] = res
    # new writes and queries work on the new release
    fresh = {"__name__": "stackproof_after_upgrade", "stackproof_test": test_id}
    t_new = int(time.time() * 1000)
    check.status(RemoteWriteClient(target, tenant_a).write([(fresh, [(t_new, 1.0)])]), (200, 204), "a new write")
    check.visible("metrics", lambda: promql.query(selector(fresh), t_new / 1000), bool, "a new write, read back")

    report = {
        "from": {"name": old.name, **old.versions}, "to": {"name": new.name, **new.versions},
        "upgrade_seconds": round(upgrade_seconds, 2),
        "corpus": {"series": N_SERIES, "samples": sum(len(v) for v in samples.values()),
                   "span_hours": SPAN_MS / 3600_000, "streams": N_STREAMS, "lines": N_STREAMS * LINES_PER_STREAM},
        "swaps": swaps,
        "writers": {s: {**log.summary(), "lost": len(results[s]["lost"]), "duplicated": len(results[s]["duplicated"])}
                    for s, log in logs.items()},
        "outage_by_component": _outage_by_component(swaps, logs),
        "timeline": {s: [[round(a.t, 3), a.status, round(a.seconds, 4)] for a in log.attempts]
                     for s, log in logs.items()},
    }
    request.node.user_properties.append((PROP_UPGRADE, report))
    print(f"upgrade {old.name} -> {new.name}: {report['upgrade_seconds']}s; outage by component "
          f"{report['outage_by_component']}; lost {[report['writers'][s]['lost'] for s in report['writers']]}")


def _writers(target, tenant, test_id) -> dict[str, ContinuousWriter]:
    """One continuous writer per write protocol the target takes, each on labels of its own:
    remote write 1.0 and the Loki push always, remote write 2.0 and OTLP where declared."""
    wanted = [("metrics", "remote-write"), ("logs", "loki-push")]
    if target.has("remote-write-2"):
        wanted.append(("metrics", "remote-write-2"))
    if target.has("otlp"):
        wanted += [("metrics", "otlp"), ("logs", "otlp")]
    out = {}
    for signal, protocol in wanted:
        tag = protocol.replace("-", "_")
        labels = ({"__name__": f"stackproof_upgrade_{tag}_seq", "stackproof_test": test_id} if signal == "metrics"
                  else {"stackproof_test": test_id, "job": f"upgrade-writer-{tag}"})
        w = ContinuousWriter(signal, target, tenant, labels, max_seconds=900, protocol=protocol)
        out[w.name] = w
    return out


def _outage_by_component(swaps: list[dict], logs: dict) -> dict:
    """Write outage per signal (first failure to first success after it),
    charged to the component whose swap began last before the outage did."""
    stops = sorted((x["t"], x["component"]) for x in swaps if x["phase"] == STOPPING)
    out = {comp: {signal: 0.0 for signal in logs} for _, comp in stops}
    for signal, log in logs.items():
        for o in log.outages():
            owner = [comp for t, comp in stops if t <= o["from"] + 0.05]
            if owner:
                out[owner[-1]][signal] = round(out[owner[-1]][signal] + (o["seconds"] or 0), 3)
    return out


@pytest.mark.rollback
def test_rollback_reads_what_the_new_release_wrote(target, tenant_a, test_id, platform_control, upgrade_releases,
                                                   check):
    """Back from --upgrade-to to --upgrade-from: does the old release read data
    the new one wrote? Runs after the upgrade test (or upgrades first)."""
    old, new = upgrade_releases
    if type(target).load(target.path).release != new.name:
        platform_control.upgrade(new)
    # no older than now: after a graceful restart (flush on shutdown) Cortex takes
    # nothing older than the newest sample of the block it cut ("out of bounds")
    t = int(time.time() * 1000)
    labels = {"__name__": "stackproof_written_by_new", "stackproof_test": test_id}
    written = [(t + i * 10, float(i)) for i in range(10)]
    check.status(RemoteWriteClient(target, tenant_a).write([(labels, written)]), (200, 204), f"write on {new.name}")
    stream = {"stackproof_test": test_id, "written_by": new.name}
    lines = [(t * 10**6 + i, f"line {i} written by {new.name}") for i in range(10)]
    check.status(LogsPush(target, tenant_a).push_proto([(stream, lines)]), 204, f"push on {new.name}")
    promql, reader = PromQLClient(target, tenant_a), logs_reader(target, tenant_a)
    check.visible("metrics", lambda: _read_all_samples(promql, labels, t + 20_000), lambda s: len(s) == 10,
                  f"written on {new.name}")
    platform_control.upgrade(old)
    check.equal(type(target).load(target.path).release, old.name, "rolled back to the --upgrade-from release")
    got = check.visible("metrics", lambda: _read_all_samples(promql, labels, t + 20_000), lambda s: len(s) >= 10,
                        f"metrics written by {new.name}, read by {old.name}", timeout=60)
    check.equal(got, written, f"{old.name} reads the samples {new.name} wrote")
    got = check.visible("logs", lambda: reader.entries(Select.of(stream), t * 10**6 - 10**9, t * 10**6 + 10**9),
                        lambda e: len(e) >= 10, f"lines written by {new.name}, read by {old.name}", timeout=60)
    check.equal(got, lines, f"{old.name} reads the lines {new.name} wrote")
