"""The ``stackproof`` command.

    stackproof up        start a local platform of real components on loopback
    stackproof status    show what runs, where, and whether it is ready
    stackproof down      stop it and remove its data
    stackproof run       up, run the conformance suites, write the report, down
    stackproof build     build (or fetch) the binaries of a release into the cache
    stackproof doctor    what is installed, cached and missing
    stackproof releases  the release catalog

Every command takes --help. Errors are one line (exit 2); a component that
fails to start also shows the last lines of its log.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import __version__
from .binaries import BinaryResolver, cache_dir
from .components import COMPONENTS
from .errors import ComponentError, StackproofError
from .providers import LocalProvider, get_provider
from .providers.local import state_root
from .releases import Catalog
from .target import Target

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SUITES = ("smoke", "metrics", "logs", "security")


def _mb(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


def _print_endpoints(target: Target) -> None:
    print(f"target file: {target.path}")
    print(f"gateway:     {target.gateway_url}  (TLS, CA {target.ca_file})")
    print(f"  metrics write  {target.metrics_write_url}")
    print(f"  metrics query  {target.metrics_query_url}/api/v1/query")
    print(f"  logs push      {target.logs_push_url}")
    print(f"  logs query     {target.logs_query_url}/query_range")
    print("tenants:     " + ", ".join(f"{t.name} ({t.role})" for t in target.tenants)
          + "  -- tokens are in the target file")


# -- commands ---------------------------------------------------------------

def cmd_up(args) -> int:
    release = Catalog.load().get(args.release)
    provider = LocalProvider(args.platform, gateway_port=args.gateway_port, storage=args.storage)
    print(f"starting platform {args.platform!r} with release {release}", file=sys.stderr)
    t0 = time.monotonic()
    target = provider.deploy(release)
    print(f"platform {args.platform!r} is up in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    _print_endpoints(target)
    print(f"stop it with: stackproof down --platform {args.platform}")
    return 0


def cmd_status(args) -> int:
    st = LocalProvider(args.platform).status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0 if st["state"] == "running" else 1
    if st["state"] == "absent":
        print(f"platform {args.platform!r}: not running (no state in {st['root']})")
        return 1
    print(f"platform {st['platform']!r}: {st['state']}, release {st['release']}, gateway {st['gateway']}")
    print(f"target file: {st['target_file']}")
    for name, c in st["components"].items():
        flag = "ready" if c["ready"] else ("running, NOT ready" if c["running"] else "NOT running")
        print(f"  {name:<11} {c['version'] or '-':<9} {flag:<18} pid {c['pid'] or '-':<8} "
              f"rss {_mb(c['rss_bytes']):>8}  {c['endpoint']}")
    print(f"  total rss {_mb(st['rss_bytes'])}")
    return 0 if st["state"] == "running" else 1


def cmd_down(args) -> int:
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
    for c in COMPONENTS:
        if not c.release_key or c.spec.system_names or (wanted and c.name not in wanted):
            continue
        version = release.version(c.release_key)
        r = resolver.resolve(c.spec, version)
        print(f"{c.name} {version}: {r.path} ({r.source}, {_mb(r.path.stat().st_size)}"
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
                           ("google.cloud.container_v1", "google-cloud-container (cloud)", False)):
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        line(True if found else (False if need else None), pkg, "installed" if found else "not installed")
    print("programs:")
    go = shutil.which("go")
    gov = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True).stdout.strip() if go else ""
    line(bool(go), "go toolchain", f"{go} ({gov})" if go else "missing: needed to build Cortex, Loki, Prometheus")
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
        for c in COMPONENTS:
            if not c.release_key or c.spec.system_names:
                continue
            v = r.version(c.release_key)
            override = os.environ.get(f"STACKPROOF_BIN_{c.name.upper()}")
            path = resolver.cached(c.spec, v)
            if override:
                line(True, f"{c.name} {v}", f"override STACKPROOF_BIN_{c.name.upper()}={override}")
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
    provider = get_provider(args.provider, target_file=args.target_file, platform=args.platform)
    release = Catalog.load().get(args.release) if args.provider != "existing" else None
    rc = 1
    target = None
    t0 = time.monotonic()
    try:
        target = provider.deploy(release)
        print(f"platform ready in {time.monotonic() - t0:.1f}s; running suites: {', '.join(suites)}",
              file=sys.stderr)
        cmd = [sys.executable, "-m", "pytest", *[str(suites_root / s) for s in suites],
               f"--target-file={target.path}", f"--rootdir={REPO}", f"--stackproof-results={results}",
               f"--junitxml={results / 'junit.xml'}", f"--alluredir={results / 'allure-results'}",
               "-p", "no:cacheprovider"]
        if args.workers:
            cmd += ["-n", str(args.workers)]
        cmd += args.pytest_args
        rc = subprocess.call(cmd, cwd=REPO)
    finally:
        if args.keep:
            print(f"--keep: platform left running; target file {getattr(provider, 'target_file', '')}",
                  file=sys.stderr)
        else:
            arts = results / "artifacts"
            try:
                provider.collect_artifacts(arts)
                leaks = scan_for_tokens(results, target.tenants) if target else []
            finally:
                provider.destroy()
            for leak in leaks:
                print(f"stackproof: SECRET LEAK: {leak}", file=sys.stderr)
            if leaks:
                rc = rc or 1
    print(f"suites exited {rc}; report: {results / 'report.html'} (JSON: {results / 'report.json'}, "
          f"JUnit: {results / 'junit.xml'}, Allure: {results / 'allure-results'})")
    return rc


def scan_for_tokens(root: Path, tenants) -> list[str]:
    """Files under ``root`` that hold a tenant's token (names, never the token)."""
    tokens = {t.name: t.token.encode() for t in tenants}
    leaks = []
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        data = f.read_bytes()
        leaks += [f"{f} holds tenant {name}'s token" for name, tok in tokens.items() if tok in data]
    return leaks


# -- argument parsing -----------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stackproof",
        description="End-to-end and upgrade conformance for Cortex/Loki/Prometheus platforms.",
        epilog="Quick start: 'stackproof up', then 'pytest suites/smoke --target-file <printed path>', "
               "then 'stackproof down'. Or all at once: 'stackproof run'.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"stackproof {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def platform_arg(sp):
        sp.add_argument("--platform", default="local", metavar="NAME",
                        help="name of the local platform (default: local); several can run side by side")

    sp = sub.add_parser("up", help="start a local platform on loopback",
                        description="Build or find the release's binaries, then start Cortex, Loki, the nginx "
                                    "gateway and a Prometheus agent on free loopback ports, wait until each is "
                                    "ready, and print the target file and the endpoints (never the tokens).")
    sp.add_argument("--release", help="release from the catalog (default: the newest; see 'stackproof releases')")
    sp.add_argument("--gateway-port", type=int, metavar="PORT", help="fixed gateway port (default: a free one)")
    sp.add_argument("--storage", choices=("filesystem", "s3"), default="filesystem",
                    help="object storage: a directory (default), or a real S3 server (versitygw) on loopback")
    platform_arg(sp)
    sp.set_defaults(func=cmd_up)

    sp = sub.add_parser("status", help="show the platform's components and readiness",
                        description="Exit code 0 when every component runs and is ready, 1 otherwise.")
    sp.add_argument("--json", action="store_true", help="machine-readable output")
    platform_arg(sp)
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("down", help="stop the platform and remove its data",
                        description="Stops components in reverse start order: gracefully first, SIGKILL "
                                    "after a timeout. Removes the platform's state directory.")
    sp.add_argument("--keep-data", action="store_true", help="keep data, logs and the target file")
    platform_arg(sp)
    sp.set_defaults(func=cmd_down)

    sp = sub.add_parser("run", help="up, run the suites, write the report, down",
                        description="The main job: provision (or take --target-file), run the conformance "
                                    "suites with pytest, write JUnit, Allure results and an HTML/JSON report "
                                    "into --results, collect component logs, and tear down.",
                        epilog="Extra arguments after '--' go to pytest, e.g. 'stackproof run -- -k exact'.")
    sp.add_argument("--provider", default="local", choices=("local", "existing"),
                    help="where the platform comes from (default: local)")
    sp.add_argument("--target-file", help="target file of an existing platform (with --provider existing)")
    sp.add_argument("--release", help="release to deploy (default: the newest)")
    sp.add_argument("--suite", action="append", metavar="NAME",
                    help=f"suite under suites/ to run; repeatable (default: {', '.join(DEFAULT_SUITES)})")
    sp.add_argument("--results", default="results", help="results directory (default: ./results)")
    sp.add_argument("-n", "--workers", type=int, default=2, help="pytest-xdist workers (default: 2; 0 = serial)")
    sp.add_argument("--keep", action="store_true", help="leave the platform running afterwards")
    sp.add_argument("pytest_args", nargs="*", help=argparse.SUPPRESS)
    platform_arg(sp)
    sp.set_defaults(func=cmd_run, platform="run")

    sp = sub.add_parser("build", help="build the release's binaries into the cache",
                        description=f"Resolve each component of a release: override, cache ({cache_dir()}), "
                                    "Go module build, or release archive (STACKPROOF_ALLOW_DOWNLOAD=1).")
    sp.add_argument("--release", help="release (default: the newest)")
    sp.add_argument("components", nargs="*", help="only these components (cortex, loki, prometheus)")
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
