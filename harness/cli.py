"""The ``stackproof`` command.

    stackproof up        start a local platform of real components on loopback (or in a cluster: --provider kube)
    stackproof status    show what runs, where, and whether it is ready
    stackproof down      stop it and remove its data
    stackproof run       up, run the conformance suites, write the report, down
    stackproof load      load the write path with locust: objectives, completeness, capacity
    stackproof janitor   delete cloud resources that stackproof runs left behind
    stackproof build     build (or fetch) the binaries of a release into the cache
    stackproof doctor    what is installed, cached and missing
    stackproof releases  the release catalog

Every command takes --help. Errors are one line (exit 2); a component that
fails to start also shows the last lines of its log.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from . import __version__
from .binaries import BinaryResolver, cache_dir, override_var
from .leaks import files_under, find_leaks, secrets_of
from .components import S3Server, release_builds
from .errors import ComponentError, ConfigError, StackproofError
from .load import Objectives, Search, run_load
from .providers import LocalProvider, get_provider
from .providers.common import state_root
from .releases import Catalog
from .target import Target
from .workload import SIGNALS, Workload, parse_shape

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SUITES = ("smoke", "metrics", "logs", "security", "otlp", "alerting")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _print_endpoints(target: Target) -> None:
    print(f"target file: {target.path}")
    print(f"gateway:     {target.gateway_url}  (TLS, CA {target.ca_file})")
    print(f"  metrics write  {target.metrics_write_url}")
    print(f"  metrics query  {target.metrics_query_url}/api/v1/query")
    print(f"  logs push      {target.logs_push_url}")
    print(f"  logs query     {target.logs_query_url}  ({target.logs_api} dialect)")
    print("tenants:     " + ", ".join(f"{t.name} ({t.role})" for t in target.tenants)
          + "  -- tokens are in the target file")


# -- commands ---------------------------------------------------------------

# the providers that deploy into a Kubernetes cluster: an existing one (kube), or one started here (local-kube)
CLUSTER_PROVIDERS = ("kube", "local-kube")


def kube_options(args) -> dict:
    """The ``--provider kube`` options given on the command line (the others come from its state);
    ``local-kube`` takes none: it fits the deployer to the cluster it starts."""
    if getattr(args, "provider", None) != "kube":
        return {}
    out = {k: getattr(args, k, None) for k in ("kubeconfig", "context", "namespace", "storage_class", "image_map",
                                                 "gateway_service", "node_address")}
    return {k: v for k, v in out.items() if v is not None}


def _kube_provider(args):
    return get_provider(args.provider, platform=args.platform, **kube_options(args))


def cmd_up(args) -> int:
    release = Catalog.load().get(args.release)
    if args.provider in CLUSTER_PROVIDERS:
        provider = _kube_provider(args)
    else:
        provider = LocalProvider(args.platform, gateway_port=args.gateway_port, storage=args.storage)
    print(f"starting platform {args.platform!r} with release {release}", file=sys.stderr)
    t0 = time.monotonic()
    target = provider.deploy(release)
    print(f"platform {args.platform!r} is up in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    _print_endpoints(target)
    where = f" --provider {args.provider}" if args.provider in CLUSTER_PROVIDERS else ""
    print(f"stop it with: stackproof down{where} --platform {args.platform}")
    return 0


def cmd_kube_status(args) -> int:
    st = _kube_provider(args).status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0 if st["state"] == "running" else 1
    if st["state"] == "absent":
        print(f"platform {args.platform!r} (kube): not deployed (no state in {st['state_file']})")
        return 1
    print(f"platform {st['platform']!r} (kube): {st['state']}, release {st['release']}, namespace "
          f"{st['namespace']} at {st['server']}")
    print(f"target file: {st['target_file']}")
    width = max((len(n) for n in st["components"]), default=0) + 1
    for name, c in st["components"].items():
        flag = "ready" if c["ready"] else ("running, NOT ready" if c["running"] else "NOT running")
        print(f"  {name:<{width}} {c.get('role', ''):<14} {c.get('version') or '-':<9} {flag:<18} "
              f"restarts {c.get('restarts', 0):<3} node {c.get('node') or '-':<12} {c.get('image') or '-'}")
    return 0 if st["state"] == "running" else 1


def cmd_status(args) -> int:
    if getattr(args, "provider", "local") in CLUSTER_PROVIDERS:
        return cmd_kube_status(args)
    st = LocalProvider(args.platform).status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0 if st["state"] == "running" else 1
    if st["state"] == "absent":
        print(f"platform {args.platform!r}: not running (no state in {st['root']})")
        return 1
    print(f"platform {st['platform']!r}: {st['state']}, release {st['release']}, gateway {st['gateway']}")
    print(f"target file: {st['target_file']}")
    width = max(len(n) for n in st["components"]) + 1
    for name, c in st["components"].items():
        flag = "ready" if c["ready"] else ("running, NOT ready" if c["running"] else "NOT running")
        print(f"  {name:<{width}} {c.get('role', ''):<14} {c['version'] or '-':<9} {flag:<18} pid {c['pid'] or '-':<8} "
              f"rss {_mb(c['rss_bytes']):>8}  {c['endpoint']}")
        for part, state in c.get("parts", {}).items():
            print(f"  {'':<{width}}   {part}: {state}")
    print(f"  total rss {_mb(st['rss_bytes'])}")
    return 0 if st["state"] == "running" else 1


def cmd_down(args) -> int:
    if getattr(args, "provider", "local") in CLUSTER_PROVIDERS:
        kube = _kube_provider(args)
        results = kube.destroy()
        if not results:
            print(f"platform {args.platform!r} (kube) is not deployed; nothing to do")
            return 0
        for name, how in results.items():
            print(f"  {name}: {how}")
        print(f"platform {args.platform!r} (kube) is down")
        return 0
    provider = LocalProvider(args.platform)
    if not provider.root.exists():
        print(f"platform {args.platform!r} is not running; nothing to do")
        return 0
    results = provider.destroy(keep_data=args.keep_data)
    for name, how in results.items():
        print(f"  {name}: {how}")
    print(f"platform {args.platform!r} is down" + (f"; data kept in {provider.root}" if args.keep_data else ""))
    return 0


def cmd_build(args) -> int:
    release = Catalog.load().get(args.release)
    resolver = BinaryResolver()
    wanted = set(args.components or [])
    # the S3 server too: pinned by its component, not by a release, it is every cluster platform's bucket
    # without a cloud one and the local platform's with --storage s3; a test must never be where it is built
    for c, version in [*release_builds(release), (S3Server(), S3Server.version)]:
        if wanted and c.name not in wanted:
            continue
        r = resolver.resolve(c.spec, version)
        print(f"{c.name} {version}: {r.path} ({r.source}, {_mb(r.path.stat().st_size)}"
              + (f", {r.seconds:.0f}s" if r.seconds else "") + ")")
    if args.cluster:
        from .cluster.kubernetes import PROGRAMS  # the local cluster's own programs (--provider local-kube)

        for name, (spec, version) in PROGRAMS.items():
            r = resolver.resolve(spec, version)
            print(f"{name} {version}: {r.path} ({r.source}, {_mb(r.path.stat().st_size)}"
                  + (f", {r.seconds:.0f}s" if r.seconds else "") + ")")
    return 0


def cmd_releases(args) -> int:
    cat = Catalog.load()
    print(f"release catalog: {cat.source}")
    for r in cat.releases:
        print(f"  {r.name:<9} " + "  ".join(f"{k} {v}" for k, v in r.versions.items()))
    print(f"newest: {cat.get().name}")
    return 0


def cmd_doctor(args) -> int:
    problems = 0

    def line(ok: bool | None, what: str, detail: str) -> None:
        nonlocal problems
        mark = {True: "ok  ", False: "MISS", None: "info"}[ok]
        if ok is False:
            problems += 1
        print(f"  [{mark}] {what:<31} {detail}")

    print(f"stackproof {__version__} on Python {sys.version.split()[0]} ({sys.executable})")
    print("python packages:")
    for mod, pkg, need in (("yaml", "PyYAML", True), ("requests", "requests", True),
                           ("cryptography", "cryptography", True), ("pytest", "pytest", True),
                           ("xdist", "pytest-xdist", True), ("allure_pytest", "allure-pytest", True),
                           ("prometheus_api_client", "prometheus-api-client", True),
                           ("google.protobuf", "protobuf", True), ("cramjam", "cramjam", True),
                           ("locust", "locust (load)", False),
                           ("boto3", "boto3 (cloud)", False), ("kubernetes", "kubernetes (cloud)", False),
                           ("google.cloud.container_v1", "google-cloud-container (cloud)", False),
                           ("google.cloud.storage", "google-cloud-storage (cloud)", False)):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        line(True if found else (False if need else None), pkg, "installed" if found else "not installed")
    print("programs:")
    go = shutil.which("go")
    gov = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout.strip() if go else ""
    line(bool(go), "go toolchain",
         f"{go} ({gov})" if go else "missing: needed to build Cortex, VictoriaLogs, Prometheus")
    nginx = shutil.which("nginx")
    if nginx:
        v = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        line(True, "nginx (gateway)", f"{nginx} ({v.split('/')[-1]})")
    else:
        line(False, "nginx (gateway)", "missing: apt-get install nginx")
    try:
        cat = Catalog.load()
    except StackproofError as exc:
        line(False, "release catalog", str(exc))
        return 1
    print(f"release catalog: {cat.source} ({', '.join(cat.names)}; newest {cat.get().name})")
    resolver = BinaryResolver()
    print(f"binary cache: {resolver.cache}")
    newest = cat.get().name
    for r in cat.releases:
        for c, v in release_builds(r):
            override = os.environ.get(override_var(c.spec))
            path = resolver.cached(c.spec, v)
            if override:
                line(True, f"{c.name} {v}", f"override {override_var(c.spec)}={override}")
            elif path:
                line(True, f"{c.name} {v}", f"cached {path} ({_mb(path.stat().st_size)})")
            else:
                how = "will be built from its Go module on first use" if go else "cannot be built: no Go toolchain"
                line(None if go or r.name != newest else False, f"{c.name} {v}", f"not cached; {how}")
    print(f"platforms in {state_root()}:")
    found = False
    if state_root().is_dir():
        for d in sorted(state_root().iterdir()):
            if (d / "state.json").is_file():
                found = True
                st = LocalProvider(d.name).status()
                line(None, d.name, f"{st['state']}, release {st.get('release')}, gateway {st.get('gateway')}")
    if not found:
        print("  (none)")
    print("all set" if not problems else f"{problems} missing; see above")
    return 0 if not problems else 1


def cmd_run(args) -> int:
    results = Path(args.results).resolve()
    results.mkdir(parents=True, exist_ok=True)
    suites_root = REPO / "suites"
    if not suites_root.is_dir():
        raise StackproofError(f"no suites/ next to the harness ({REPO}); run from a stackproof checkout")
    suites = args.suite or list(DEFAULT_SUITES)
    for s in suites:
        if not (suites_root / s).is_dir():
            known = sorted(p.name for p in suites_root.iterdir() if p.is_dir() and not p.name.startswith("_"))
            raise StackproofError(f"unknown suite {s!r}; known suites: {', '.join(known)}")
    rc = 1
    with provisioned(args.provider, results, target_file=args.target_file, platform=args.platform,
                     release=args.release, keep=args.keep, run_id=args.run_id,
                     provider_options=kube_options(args)) as got:
        target = got.target
        print(f"running suites: {', '.join(suites)}", file=sys.stderr)
        cmd = [sys.executable, "-m", "pytest", *[str(suites_root / s) for s in suites],
               f"--target-file={target.path}", f"--rootdir={REPO}", f"--stackproof-results={results}",
               f"--junitxml={results / 'junit.xml'}", f"--alluredir={results / 'allure-results'}",
               "-p", "no:cacheprovider"]
        if args.workers:
            cmd += ["-n", str(args.workers)]
        cmd += args.pytest_args
        rc = subprocess.call(cmd, cwd=REPO)
    rc = rc or len(got.leaks)
    print(f"suites exited {rc}; report: {results / 'report.html'} (JSON: {results / 'report.json'}, "
          f"JUnit: {results / 'junit.xml'}, Allure: {results / 'allure-results'})")
    return rc


LOAD_PROFILES = {
    # a single bounded run: does the write path hold the objectives, is anything lost?
    "run": {"users": 4, "duration": 30},
    # the shortest meaningful run, for CI against any target
    "smoke": {"users": 2, "duration": 10},
    # step the users up until an objective breaks; the last step that held is the capacity
    "capacity": {"capacity": True},
}


def seconds_arg(text: str) -> int:
    """``90``, ``90s``, ``2m``, ``1h`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text[-1:] in units:
            return int(float(text[:-1]) * units[text[-1]])
        return int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (e.g. 30s, 2m, 1h)") from None


def _load_workload(args) -> Workload:
    mw, _, lw = (args.mix or "1:1").partition(":")
    try:
        weights = {"metrics_weight": int(mw), "logs_weight": int(lw)}
    except ValueError:
        raise ConfigError(f"--mix {args.mix!r}: expected METRICS:LOGS weights, e.g. 3:1") from None
    knobs = {k: getattr(args, k) for k in ("series", "labels", "cardinality", "samples", "scrape_interval",
                                           "churn", "churn_interval", "streams", "stream_labels", "lines",
                                           "line_length", "rate", "max_requests") if getattr(args, k) is not None}
    return Workload(signal=args.signal, run_id=args.run_id, tenants=args.tenant or [], **weights, **knobs)


def cmd_load(args) -> int:
    if importlib.util.find_spec("locust") is None:
        raise StackproofError("locust is not installed: pip install -e '.[load]' (make setup does)")
    # --web without --users: the dashboards wait for someone to press start
    web_driven = args.web and args.users is None and not args.shape
    for k, v in LOAD_PROFILES[args.profile].items():
        if getattr(args, k) in (None, False):
            setattr(args, k, v)
    args.run_id = args.run_id or time.strftime("load-%Y%m%d-%H%M%S")
    workload = _load_workload(args)
    objectives = Objectives(p99_ms=args.p99_ms, max_error_rate=args.max_error_rate,
                            min_throughput_ratio=args.min_throughput)
    search = Search(start_users=args.start_users, step_users=args.step_users, max_users=args.max_users,
                    step_seconds=args.step_duration, max_minutes=args.max_minutes) if args.capacity else None
    if search and (args.web or args.shape):
        raise ConfigError("--capacity runs its own steps; it cannot be combined with --web or --shape")
    if args.shape:
        parse_shape(args.shape)
    results = Path(args.results).resolve()
    out = results / "load" / args.run_id
    provider_name = "existing" if args.target_file else args.provider
    if provider_name is None:  # a running local platform, or a fresh one for this run
        running = LocalProvider(args.platform)
        if running.status()["state"] == "running":
            provider_name, args.target_file = "existing", str(running.target_file)
        else:
            provider_name = "local"
    duration = args.duration or (600 if args.web else 30)
    with provisioned(provider_name, results, target_file=args.target_file, platform="load",
                     release=args.release, keep=args.keep, run_id=args.run_id,
                     provider_options=kube_options(args) if provider_name == "kube" else None) as got:
        target = got.target
        print(f"load on {target.name} ({target.gateway_url}), run id {args.run_id}, signal {workload.signal}; "
              f"objectives: p99 <= {objectives.p99_ms:g} ms, error rate <= {objectives.max_error_rate:g}, "
              f"throughput >= {objectives.min_throughput_ratio:.0%} of offered", file=sys.stderr)
        record = run_load(target, workload, objectives, out, search=search, users=0 if web_driven else args.users,
                          seconds=duration, processes=args.processes, shape=args.shape, web=args.web,
                          web_port=args.web_port, csv_prefix=Path(args.csv) if args.csv else None,
                          html=Path(args.html) if args.html else None,
                          require={"samples_per_s": args.require_samples_per_s,
                                   "lines_per_s": args.require_lines_per_s},
                          log=lambda m: print(m, file=sys.stderr, flush=True))
    if got.leaks:
        record["verdict"] = "fail"
        record["why"].append(f"{len(got.leaks)} token leak(s) in the results")
    record["results"] = {"dir": str(out)}
    json_path = results / "capacity.json"
    json_path.write_text(json.dumps(record, indent=2))
    html_path = results / "capacity.html"
    r = subprocess.run([sys.executable, "-m", "reports.capacity", str(json_path), str(html_path)], cwd=REPO,
                       capture_output=True, text=True)
    if r.returncode:
        print(f"stackproof: could not draw the capacity report: {r.stderr.strip().splitlines()[-1:]}",
              file=sys.stderr)
    cap = record["capacity"]
    if search:
        print("capacity: " + (", ".join(f"{v:,.0f} {k.replace('_per_s', '/s')}" for k, v in cap.items()
                                        if k.endswith("_per_s")) + f" at {cap['users']} users (step {cap['step']})"
                              if cap else "no step held the objectives"))
    print("completeness: " + ("every accepted item was stored" if record["complete"] else
                              "MISSING DATA (see the report)"))
    print(f"verdict: {record['verdict']}" + (f" ({'; '.join(record['why'])})" if record["why"] else ""))
    print(f"report: {html_path} (JSON {json_path}; locust CSV/HTML per step in {out})")
    return 0 if record["verdict"] == "pass" else 1


def cmd_janitor(args) -> int:
    older = timedelta(seconds=args.older_than) if args.older_than else None
    if args.provider == "aws":
        from .providers.aws import janitor
        found = janitor(older_than=older, run_id=args.run_id, dry_run=args.dry_run, region=args.region)
    else:
        from .providers.gcp import janitor
        found = janitor(older_than=older, run_id=args.run_id, dry_run=args.dry_run, project=args.project,
                        locations=args.location)
    what = f"run {args.run_id}" if args.run_id else "past expiry" + (f" or older than {older}" if older else "")
    if not found:
        print(f"janitor ({args.provider}): nothing of stackproof's to delete ({what})")
        return 0
    print(f"janitor ({args.provider}): {len(found)} resource(s) ({what})" + (" -- dry run" if args.dry_run else ""))
    for r in found:
        name = r.get("id") or r.get("name")
        print(f"  {r['action']:<14} {r['kind']:<22} {name}  run {r.get('run_id') or '-'}  "
              f"expires {r.get('expires') or '-'}")
    failed = [r for r in found if str(r["action"]).startswith("failed")]
    if failed:
        print(f"janitor: {len(failed)} deletion(s) failed; run it again (it resumes)", file=sys.stderr)
    return 1 if failed else 0


@dataclass
class Provisioned:
    target: Target | None = None
    leaks: list[str] = field(default_factory=list)


@contextlib.contextmanager
def provisioned(provider_name: str, results: Path, *, target_file: str | None = None, platform: str = "run",
                release: str | None = None, keep: bool = False, run_id: str | None = None,
                provider_options: dict | None = None):
    """A target for one command: provision it (or take the target file), and afterwards collect
    the logs into ``results/artifacts`` and tear down, unless ``keep``; scan the results for secrets
    whatever the provider (an existing platform's run too) and ``keep``.
    Yields a :class:`Provisioned`; its ``leaks`` are filled in on the way out. ``provider_options``:
    the provider's own (``--provider kube``'s kubeconfig, namespace, ...)."""
    options = {"platform": platform} if provider_name in ("local", *CLUSTER_PROVIDERS) else {}
    options.update(provider_options or {})
    if provider_name in ("aws", "gcp"):
        options["run_id"] = run_id
    provider = get_provider(provider_name, target_file=target_file, **options)
    rel = Catalog.load().get(release) if provider_name != "existing" else None
    got = Provisioned()
    t0 = time.monotonic()
    try:
        got.target = target = provider.deploy(rel)
        print(f"platform ready in {time.monotonic() - t0:.1f}s (target file {target.path})", file=sys.stderr)
        yield got
    finally:
        target = got.target
        owned = provider_name != "existing"  # an existing platform is the user's: never torn down
        try:
            if owned and keep:
                print(f"--keep: platform left running; target file {target.path if target else '-'}",
                      file=sys.stderr)
            elif owned:
                provider.collect_artifacts(results / "artifacts")
            # whatever the provider and --keep: what the run wrote last (JUnit, Allure, reports, logs)
            got.leaks = find_leaks(files_under(results), secrets_of(target)) if target else []
        finally:
            if owned and not keep:
                provider.destroy()
        if got.leaks:
            print(f"stackproof: SECRET LEAK in {results}: {'; '.join(got.leaks)}", file=sys.stderr)


# -- argument parsing -----------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stackproof",
        description="End-to-end and upgrade conformance for multi-tenant observability platforms "
                    "(metrics: Cortex; logs: VictoriaLogs, or an existing Loki; sender: Prometheus).",
        epilog="Quick start: 'stackproof up', then 'pytest suites/smoke --target-file <printed path>', "
               "then 'stackproof down'. Or all at once: 'stackproof run'.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"stackproof {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def platform_arg(sp):
        sp.add_argument("--platform", default="local", metavar="NAME",
                        help="name of the local platform (default: local); several can run side by side")

    def kube_args(sp, deploys: bool = True):
        """The options of ``--provider kube``: an existing cluster, from a kubeconfig."""
        g = sp.add_argument_group(
            "--provider kube (any existing cluster, from a kubeconfig)",
            "Deploys into a namespace of the cluster and deletes only that namespace. Options not given are "
            "taken from the platform's state (kept in $STACKPROOF_STATE/kube-PLATFORM), so 'status' and 'down' "
            "need only --platform.")
        g.add_argument("--kubeconfig", metavar="FILE",
                       help="kubeconfig of the cluster (default: $KUBECONFIG, else ~/.kube/config)")
        g.add_argument("--context", metavar="NAME", help="the kubeconfig's context to use (default: its current one)")
        g.add_argument("--namespace", metavar="NAME", help="namespace of the platform (default: stackproof)")
        if not deploys:
            return
        g.add_argument("--storage-class", metavar="NAME",
                       help="storage class of the stores' volumes (default: the cluster's default class)")
        g.add_argument("--image-map", metavar="FILE",
                       help="YAML or JSON map of upstream image -> image to pull (a private registry, or "
                            "images imported into the cluster), applied to every container, e.g. "
                            "'cortexproject/cortex:v1.21.1: registry.example/cortex:v1.21.1'; an image the "
                            "platform does not use is an error")
        g.add_argument("--gateway-service", choices=("LoadBalancer", "NodePort"),
                       help="how the gateway is reached: LoadBalancer (default; the cluster's load-balancer "
                            "controller gives the address) or NodePort (clusters without one: a node's address "
                            "and port; with it the in-cluster S3 server is reachable at a node port too)")
        g.add_argument("--node-address", metavar="HOST",
                       help="NodePort: the address clients reach the nodes at (default: a ready node's "
                            "InternalIP); it goes into the gateway's certificate")

    def local_or_kube(sp, what: str):
        sp.add_argument("--provider", choices=("local", *CLUSTER_PROVIDERS), default="local",
                        help=f"{what}: local processes (default), an existing cluster (kube; see below), or "
                             "a real single-node cluster that stackproof starts on this machine (local-kube)")

    sp = sub.add_parser("up", help="start a local platform on loopback (or in a cluster: --provider kube)",
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        description="Build or find the release's binaries, then start Cortex, VictoriaLogs, the nginx "
                                    "gateway and a Prometheus agent on free loopback ports, wait until each is "
                                    "ready, and print the target file and the endpoints (never the tokens).\n\n"
                                    "With --provider kube the same components run as StatefulSets in an existing "
                                    "cluster (the official images, or yours through --image-map), with the S3 "
                                    "server as a pod for the metrics store's blocks, and the gateway behind a "
                                    "LoadBalancer or NodePort Service.\n\n"
                                    "With --provider local-kube stackproof first starts a real single-node Kubernetes "
                                    "on this machine (as root, no Docker: its own containerd, network namespace and "
                                    "guard), imports images it builds from its own binaries, and deploys into it the "
                                    "same way; 'down' stops the cluster and puts the host back as it was.",
                        epilog="Examples:\n"
                               "  stackproof up\n"
                               "  stackproof up --provider kube --kubeconfig ~/.kube/config --context lab "
                               "--gateway-service NodePort\n"
                               "  stackproof up --provider kube --image-map images.yaml --storage-class fast-ssd "
                               "--platform lab\n"
                               "  sudo stackproof up --provider local-kube --platform lk\n"
                               "  stackproof status --provider kube --platform lab; "
                               "stackproof down --provider kube --platform lab")
    sp.add_argument("--release", help="release from the catalog (default: the newest; see 'stackproof releases')")
    sp.add_argument("--gateway-port", type=int, metavar="PORT", help="fixed gateway port (default: a free one)")
    sp.add_argument("--storage", choices=("filesystem", "s3"), default="filesystem",
                    help="object storage: a directory (default), or a real S3 server (versitygw) on loopback")
    local_or_kube(sp, "where the platform runs")
    platform_arg(sp)
    kube_args(sp)
    sp.set_defaults(func=cmd_up)

    sp = sub.add_parser("status", help="show the platform's components and readiness",
                        description="Exit code 0 when every component runs and is ready, 1 otherwise.")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    local_or_kube(sp, "which platform")
    platform_arg(sp)
    kube_args(sp, deploys=False)
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("down", help="stop the platform and remove its data",
                        description="Stops components in reverse start order: gracefully first, SIGKILL "
                                    "after a timeout. Removes the platform's state directory.")
    sp.add_argument("--keep-data", action="store_true", help="keep data, logs and the target file (local)")
    local_or_kube(sp, "which platform (kube: deletes its namespace)")
    platform_arg(sp)
    kube_args(sp, deploys=False)
    sp.set_defaults(func=cmd_down)

    sp = sub.add_parser("run", help="up, run the suites, write the report, down",
                        description="The main job: provision (or take --target-file), run the conformance "
                                    "suites with pytest, write JUnit, Allure results and an HTML/JSON report "
                                    "into --results, collect component logs, and tear down.",
                        epilog="Extra arguments after '--' go to pytest, e.g. 'stackproof run -- -k exact'.")
    sp.add_argument("--provider", default="local", choices=("local", "existing", "aws", "gcp", *CLUSTER_PROVIDERS),
                    help="where the platform comes from (default: local; aws/gcp: EKS/GKE made for this run; "
                         "kube: an existing cluster, see below; local-kube: a single-node cluster started here)")
    sp.add_argument("--run-id", help="aws/gcp: names and tags the cloud resources (default: a new one)")
    sp.add_argument("--target-file", help="target file of an existing platform (with --provider existing)")
    sp.add_argument("--release", help="release to deploy (default: the newest)")
    sp.add_argument("--suite", action="append", metavar="NAME",
                    help=f"suite under suites/ to run; repeatable (default: {', '.join(DEFAULT_SUITES)})")
    sp.add_argument("--results", default="results", help="results directory (default: ./results)")
    sp.add_argument("-n", "--workers", type=int, default=2, help="pytest-xdist workers (default: 2; 0 = serial)")
    sp.add_argument("--keep", action="store_true", help="leave the platform running afterwards")
    sp.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    platform_arg(sp)
    kube_args(sp)
    sp.set_defaults(func=cmd_run, platform="run")

    sp = sub.add_parser(
        "load", help="load the write path with locust: objectives, completeness, capacity",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Drive remote write and/or Loki-protocol push through the gateway with locust (headless, bounded), "
                    "judge the objectives (p99 write latency, error rate, offered rate taken), and after every "
                    "run count what the target stored against what it accepted: any silent loss fails.\n\n"
                    "Profiles: run (default: 4 users, 30s), smoke (2 users, 10s), capacity (step users up "
                    "until an objective breaks; the last step that held is the capacity).\n"
                    "Target: --target-file, or --provider to provision one (torn down afterwards unless --keep); "
                    "by default the running local platform, or a fresh local one for this run.",
        epilog="Examples:\n"
               "  stackproof load                                   # 30s of remote write, objectives + completeness\n"
               "  stackproof load --signal logs --line-length lognormal:200:0.6\n"
               "  stackproof load --capacity --signal metrics --processes 2\n"
               "  stackproof load --web --signal mixed --users 8      # locust's dashboards on 127.0.0.1:8089\n"
               "  stackproof load --shape step:2:2:20:10 --html step.html\n"
               "Results: RESULTS/capacity.json and capacity.html; locust CSV, HTML and logs per run under "
               "RESULTS/load/RUN_ID/.")
    g = sp.add_argument_group("what to run")
    g.add_argument("--profile", choices=sorted(LOAD_PROFILES), default="run", help="preset (default: run)")
    g.add_argument("--capacity", action="store_true", help="capacity search (same as --profile capacity)")
    g.add_argument("--signal", choices=SIGNALS, default="metrics", help="metrics, logs or mixed (default: metrics)")
    g.add_argument("-u", "--users", type=int, help="users of a single run (default: from the profile)")
    g.add_argument("-t", "--duration", type=seconds_arg, help="run time, e.g. 30s, 2m (default: 30s; --web 10m)")
    g.add_argument("--shape", metavar="SPEC", help="locust load shape: step:START:STEP:EVERY:MAX or "
                                                   "ramp:PEAK:RAMP:HOLD (seconds); it ends the run by itself")
    g.add_argument("--processes", type=int, default=0, metavar="N",
                   help="distributed: a locust master and N worker processes (default: 0, one process)")
    g.add_argument("--web", action="store_true", help="open locust's dashboards on 127.0.0.1 instead of headless")
    g.add_argument("--web-port", type=int, default=8089, metavar="PORT", help="dashboards' port (default: 8089)")
    g.add_argument("--run-id", help="label stamped on everything written (default: load-<time>)")
    g = sp.add_argument_group("target")
    g.add_argument("--target-file", metavar="PATH", help="an existing platform's target file")
    g.add_argument("--provider", choices=("local", "aws", "gcp", *CLUSTER_PROVIDERS),
                   help="provision a platform for this run")
    g.add_argument("--release", help="release to provision (default: the newest)")
    g.add_argument("--keep", action="store_true", help="leave a provisioned platform running")
    platform_arg(sp)
    kube_args(sp)
    g = sp.add_argument_group("workload (metrics)")
    g.add_argument("--series", type=int, help="series per user (default: 500)")
    g.add_argument("--labels", type=int, help="extra labels per series (default: 0)")
    g.add_argument("--cardinality", type=int, help="values per extra label (default: 10)")
    g.add_argument("--samples", type=int, help="samples per series per request (default: 1)")
    g.add_argument("--scrape-interval", type=float, metavar="S",
                   help="seconds between a series' samples in one request (default: 0)")
    g.add_argument("--churn", type=float, metavar="FRACTION", help="share of series replaced every churn interval")
    g.add_argument("--churn-interval", type=float, metavar="S", help="seconds between churns (default: 10)")
    g = sp.add_argument_group("workload (logs)")
    g.add_argument("--streams", type=int, help="streams per user (default: 4)")
    g.add_argument("--stream-labels", type=int, help="extra labels per stream (default: 0)")
    g.add_argument("--lines", type=int, help="lines per push (default: 100)")
    g.add_argument("--line-length", metavar="DIST", help="fixed:N, uniform:MIN:MAX or lognormal:MEDIAN:SIGMA "
                                                         "(bytes; default: fixed:200)")
    g = sp.add_argument_group("workload (both)")
    g.add_argument("--rate", type=float, help="requests per second per user (default: 5)")
    g.add_argument("--tenant", action="append", metavar="NAME", help="tenant to write as; repeatable "
                                                                      "(default: every user tenant)")
    g.add_argument("--mix", metavar="M:L", help="mixed: weights of metrics and logs users (default: 1:1)")
    g.add_argument("--max-requests", type=int, help="hard bound on requests per process (default: 100000)")
    g = sp.add_argument_group("objectives")
    g.add_argument("--p99-ms", type=float, default=500.0, help="p99 write latency objective (default: 500)")
    g.add_argument("--max-error-rate", type=float, default=0.001, help="failed requests share (default: 0.001)")
    g.add_argument("--min-throughput", type=float, default=0.9, metavar="RATIO",
                   help="the platform takes at least this share of the offered rate (default: 0.9)")
    g.add_argument("--require-samples-per-s", type=float, help="capacity: fail below this many samples/s")
    g.add_argument("--require-lines-per-s", type=float, help="capacity: fail below this many lines/s")
    g = sp.add_argument_group("capacity search")
    g.add_argument("--start-users", type=int, default=2, help="users of the first step (default: 2)")
    g.add_argument("--step-users", type=int, default=2, help="users added per step (default: 2)")
    g.add_argument("--max-users", type=int, default=40, help="last step's users at most (default: 40)")
    g.add_argument("--step-duration", type=seconds_arg, default=20, help="run time per step (default: 20s)")
    g.add_argument("--max-minutes", type=float, default=30.0, help="the search stops after this (default: 30)")
    g = sp.add_argument_group("output")
    g.add_argument("--results", default="results", help="results directory (default: ./results)")
    g.add_argument("--csv", metavar="PREFIX", help="locust CSV stats of a single run to PREFIX_stats.csv etc.")
    g.add_argument("--html", metavar="PATH", help="locust's HTML report of a single run")
    sp.set_defaults(func=cmd_load)

    sp = sub.add_parser(
        "janitor", help="delete cloud resources that stackproof runs left behind",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Finds what stackproof tagged (AWS tags / GCP labels: stackproof managed, owner, run id, "
                    "expiry) and deletes what is past its expiry, older than --older-than, or of --run-id, in "
                    "dependency order (node groups before clusters, emptied buckets, network last). Safe to run "
                    "again: it resumes.",
        epilog="Examples:\n"
               "  stackproof janitor --provider aws --older-than 6h --dry-run\n"
               "  stackproof janitor --provider aws --run-id nightly-123-aws-conformance   # a CI teardown\n"
               "  stackproof janitor --provider gcp --project my-proj --older-than 6h")
    sp.add_argument("--provider", required=True, choices=("aws", "gcp"), help="which cloud")
    sp.add_argument("--older-than", type=seconds_arg, metavar="AGE",
                    help="also delete runs created longer ago than AGE (e.g. 6h), expired or not")
    sp.add_argument("--run-id", help="delete everything of this run, whatever its expiry")
    sp.add_argument("--dry-run", action="store_true", help="list what would be deleted; delete nothing")
    sp.add_argument("--region", help="aws: region (default: AWS_REGION)")
    sp.add_argument("--project", help="gcp: project (default: STACKPROOF_GCP_PROJECT or the credentials')")
    sp.add_argument("--location", action="append", metavar="ZONE_OR_REGION",
                    help="gcp: limit the cluster listing to these locations; repeatable (default: all)")
    sp.set_defaults(func=cmd_janitor)

    sp = sub.add_parser("build", help="build the release's binaries into the cache",
                        description=f"Resolve each component of a release: override, cache ({cache_dir()}), "
                                    "Go module build, or release archive (STACKPROOF_ALLOW_DOWNLOAD=1).")
    sp.add_argument("--release", help="release (default: the newest)")
    sp.add_argument("components", nargs="*",
                    help="only these components (cortex, victorialogs, vmalert, prometheus, otelcol, s3)")
    sp.add_argument("--cluster", action="store_true",
                    help="also the local cluster's programs (--provider local-kube): Kubernetes, etcd, CoreDNS")
    sp.set_defaults(func=cmd_build)

    sp = sub.add_parser("doctor", help="what is installed, cached and missing",
                        description="Exit code 0 when everything needed to start the newest release is there "
                                    "or can be built here.")
    sp.set_defaults(func=cmd_doctor)

    sp = sub.add_parser("releases", help="list the release catalog")
    sp.set_defaults(func=cmd_releases)
    return p


def main(argv: list[str] | None = None) -> int:
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # 'stackproof doctor | head' ends quietly
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:  # pytest arguments for 'run'
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if hasattr(args, "pytest_args"):
        args.pytest_args = list(args.pytest_args) + extra
    try:
        return args.func(args)
    except ComponentError as exc:
        print(f"stackproof: error: {exc}", file=sys.stderr)
        if exc.log_tail:
            print("---- last log lines ----\n" + exc.log_tail + "\n------------------------", file=sys.stderr)
        return 2
    except StackproofError as exc:
        print(f"stackproof: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("stackproof: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
