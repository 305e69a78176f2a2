"""How long alerts take on the local platform: condition true -> firing, and firing
-> the webhook, for metrics rules (Cortex's ruler) and log rules (vmalert over
VictoriaLogs), through Cortex's Alertmanager to a real receiver on loopback.

    python benchmarks/alerting_latency.py [--alerts 5] [--release NAME]

Each alert has ``for: 0s`` and a condition that turns true at a known second (a
series or lines written ahead of time); the firing moment is the first sample of
its ``ALERTS{alertstate="firing"}`` series (log rules: plus the evaluation delay
their samples are stamped back by). Prints every alert and the medians; JSON to
results/bench-alerting-latency.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fixtures.alerting import run_alertmanager_config  # noqa: E402
from harness.clients import LogsPush, PromQLClient, RemoteWriteClient  # noqa: E402
from harness.clients.alerting import Alertmanager, AlertmanagerConfig, ProviderLogRules, RuleGroups  # noqa: E402
from harness.clients.poll import poll_until  # noqa: E402
from harness.providers.local import LocalProvider  # noqa: E402
from harness.releases import Catalog  # noqa: E402
from harness.webhook import Receiver  # noqa: E402


def one(kind: str, target, tenant, provider, receiver, promql) -> dict:
    test = f"bench-{uuid.uuid4().hex[:8]}"
    true_s = int(time.time()) + 6
    if kind == "metrics":
        start = (true_s - 20) * 1000
        values = [0.0 if start + k * 1000 < true_s * 1000 else 7.0 for k in range(120)]
        RemoteWriteClient(target, tenant).write([({"__name__": "bench_alert_input", "test": test},
                                                  [(start + k * 1000, v) for k, v in enumerate(values)])])
        group = {"name": test, "interval": "1s", "rules": [
            {"alert": "BenchAlert", "expr": f'bench_alert_input{{test="{test}"}} > 1', "labels": {"test": test}}]}
        RuleGroups(target, tenant).set_group(test, group)
        delay, true_at = 0.0, true_s
    else:
        lines = [((s * 1000 + 500) * 10**6, f"ERROR {s}") for s in range(true_s, true_s + 60)]
        LogsPush(target, tenant).push_json([({"test": test}, lines)])
        group = {"name": test, "interval": "1s", "rules": [
            {"alert": "BenchAlert", "expr": f'_stream:{{test="{test}"}} | stats count() as n | filter n:>0',
             "labels": {"test": test}}]}
        ProviderLogRules(provider, tenant).set_group(test, group)
        delay, true_at = target.alerting.evaluation_delay_s, true_s + 0.5
    notes = poll_until(lambda: receiver.notifications(tenant.name, test), bool, timeout=120, interval=0.2)
    fire = poll_until(lambda: promql.raw_samples({"__name__": "ALERTS", "alertname": "BenchAlert",
                                                  "alertstate": "firing", "test": test,
                                                  **({"stats_result": "n", "alertgroup": test}
                                                     if kind == "logs" else {})}, time.time(), "5m"),
                      bool, timeout=60)
    if not (notes.ok and fire.ok):
        raise SystemExit(f"{kind} alert {test}: notification {notes.ok}, ALERTS {fire.ok}")
    fired = fire.value[0][0] / 1000 + delay
    (RuleGroups(target, tenant).delete_namespace if kind == "metrics"
     else ProviderLogRules(provider, tenant).delete_namespace)(test)
    got = notes.value[0]["received_at"]
    # condition -> webhook is exact; the split at 'firing' leans on the ALERTS sample's timestamp
    return {"kind": kind, "condition_to_firing_s": round(fired - true_at, 3),
            "firing_to_webhook_s": round(got - fired, 3), "condition_to_webhook_s": round(got - true_at, 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=5, help="alerts of each kind (default 5)")
    ap.add_argument("--release", default=None)
    args = ap.parse_args()
    release = Catalog.load().get(args.release)
    root = Path(tempfile.mkdtemp(prefix="sp-bench-alerting-"))
    provider = LocalProvider("bench-alerting", root=root / "platform")
    receiver = Receiver().start()
    runs = []
    try:
        target = provider.deploy(release)
        tenant = target.user_tenants[0]
        am = Alertmanager(target, tenant)
        am.http.get(f"{am.base}/status")  # start the tenant's Alertmanager before its config is set
        AlertmanagerConfig(target, tenant).set(run_alertmanager_config(receiver.url(tenant.name)))
        time.sleep(3 * target.alerting.alertmanager_poll_interval_s + 1)
        promql = PromQLClient(target, tenant)
        for i in range(args.alerts):
            for kind in ("metrics", "logs"):
                r = one(kind, target, tenant, provider, receiver, promql)
                runs.append(r)
                print(f"{kind:7} alert {i + 1}: condition -> firing {r['condition_to_firing_s']:.2f} s, "
                      f"firing -> webhook {r['firing_to_webhook_s']:.2f} s, "
                      f"condition -> webhook {r['condition_to_webhook_s']:.2f} s", flush=True)
    finally:
        receiver.stop()
        provider.destroy()
    out = {"release": release.name, "alerts": args.alerts, "runs": runs, "medians": {}}
    for kind in ("metrics", "logs"):
        mine = [r for r in runs if r["kind"] == kind]
        out["medians"][kind] = {k: round(statistics.median(r[k] for r in mine), 3)
                                for k in ("condition_to_firing_s", "firing_to_webhook_s", "condition_to_webhook_s")}
        print(f"{kind}: median condition -> firing {out['medians'][kind]['condition_to_firing_s']:.2f} s, "
              f"firing -> webhook {out['medians'][kind]['firing_to_webhook_s']:.2f} s, condition -> webhook "
              f"{out['medians'][kind]['condition_to_webhook_s']:.2f} s over {len(mine)} alerts")
    Path("results").mkdir(exist_ok=True)
    Path("results/bench-alerting-latency.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
