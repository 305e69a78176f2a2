"""The ``local`` provider (the default): the platform's real components as
processes on free loopback ports, in a state directory of their own.

State directory: ``$STACKPROOF_STATE/<platform>`` (default
``~/.local/state/stackproof/<platform>``), holding ``target.yaml`` (the
target file, owner-only: it has the tokens), ``state.json`` (pids, ports,
versions), ``config/``, ``data/`` (with ``data/bucket``, the filesystem
object storage), ``logs/`` and ``tls/``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .. import say
from ..binaries import BinaryResolver
from ..components import (COMPONENTS, LOG_SHIPPER, LOGS_RULER, LOGS_STORE, ROLES, SENDER, SIGNAL_ROLES,
                          Component, PlatformContext, by_role, instances)
from ..components.s3 import S3Server, new_credentials
from ..components.vmalert import BASE_RULES, checked_rule_file, rule_file_name
from ..errors import StackproofError
from ..ports import require_free, stable_ports
from ..procs import Supervised
from ..releases import Release
from ..target import DEFAULT_LIMITS, Target, logs_fields
from ..tls import TLSFiles, write_platform_pki
from .base import READY, STARTING, STOPPING, Provider, SwapHook, read_state, write_state
from .common import (ALERTING_CAPABILITIES, declared_alerting, declared_durability, declared_otlp,
                     limited_overrides, new_tenants, state_root)

STORAGE_TYPES = ("filesystem", "s3")


def _rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class LocalProvider(Provider):
    name = "local"

    def __init__(self, platform: str = "local", root: Path | None = None, gateway_port: int | None = None,
                 resolver: BinaryResolver | None = None, progress: Callable[[str], None] = say,
                 storage: str = "filesystem"):
        if storage not in STORAGE_TYPES:
            raise StackproofError(f"unknown storage {storage!r}; known: {', '.join(STORAGE_TYPES)}")
        self.storage_type = storage
        if not platform.replace("-", "").replace("_", "").isalnum():
            raise StackproofError(f"platform name {platform!r} must be letters, digits, '-' or '_'")
        self.platform = platform
        self.root = Path(root) if root else state_root() / platform
        self.gateway_port = gateway_port
        self.resolver = resolver or BinaryResolver(progress=progress)
        self.say = progress
        self.procs: dict[str, Supervised] = {}
        self.state: dict = {}

    # -- paths and state -------------------------------------------------
    @property
    def state_file(self) -> Path:
        return self.root / "state.json"

    @property
    def target_file(self) -> Path:
        return self.root / "target.yaml"

    def _load_state(self) -> dict:
        return read_state(self.state_file, "platform state")

    def _save_state(self) -> None:
        self.state["components"] = {
            name: {**self.state.get("components", {}).get(name, {}), **p.to_dict()}
            for name, p in self.procs.items()
        }
        write_state(self.state_file, self.state)

    def _attach_all(self) -> None:
        """Re-read the state file: another process (an xdist worker, the CLI)
        may have restarted a component since this object last looked."""
        self.state = self._load_state()
        for name, c in self.state.get("components", {}).items():
            cur = self.procs.get(name)
            if "pid" in c and (cur is None or cur.pid != c["pid"]):
                self.procs[name] = Supervised.attach(name, c["pid"], c.get("start_time", 0), Path(c["log"]),
                                                     c.get("stop_signal", 15))

    @contextmanager
    def _locked(self):
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StackproofError(f"platform {self.platform!r} is busy: another stackproof command "
                                      f"holds {self.root / '.lock'}") from None
            yield

    def running(self) -> list[str]:
        self._attach_all()
        return [n for n, p in self.procs.items() if p.alive()]

    def context(self) -> PlatformContext:
        tenants = Target.load(self.target_file).tenants if self.target_file.is_file() else []
        return PlatformContext(
            name=self.platform, root=self.root, ports=self.state["ports"], tenants=tenants,
            tls=TLSFiles(*(Path(p) for p in self.state["tls"])),
            overrides=self.state.get("overrides", {}), storage=self.state.get("storage", {"type": "filesystem"}))

    # -- the provider interface -----------------------------------------
    def create(self) -> None:
        """State directory, CA and certificate, tenants and tokens, ports."""
        alive = self.running()
        if alive:
            raise StackproofError(
                f"platform {self.platform!r} is already running ({', '.join(alive)}); its target file is "
                f"{self.target_file}. Use 'stackproof down' first, or --platform NAME for a second one")
        if self.root.exists():
            # a crashed run's leftovers: nothing is alive, so nothing is lost by starting clean
            for entry in self.root.iterdir():
                if entry.name != ".lock":
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
        self.procs = {}
        for sub in ("config", "data", "logs", "tls"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        tenants = new_tenants()
        names = [n for c in instances(tenants) for n in c.port_names]
        if self.gateway_port:
            require_free(self.gateway_port, "the gateway")
        ports = dict(zip(names, stable_ports(len(names))))
        if self.gateway_port:
            ports["gateway"] = self.gateway_port
        tls = write_platform_pki(self.root / "tls", self.platform)
        overrides = limited_overrides(tenants)
        ctx = self._ctx_for(ports, tls, tenants)
        self.state = {"platform": self.platform, "created": time.time(), "ports": ports,
                      "tls": [str(tls.ca_cert), str(tls.server_cert), str(tls.server_key)],
                      "overrides": overrides, "storage": self._storage_config(), "components": {}}
        target = Target(
            name=self.platform, provider="local", gateway_url=f"https://127.0.0.1:{ports['gateway']}",
            tenants=tenants, ca_file=str(tls.ca_cert),
            capabilities=["metrics", "logs", "tail", "agent", "restart", "remote-write-2", "otlp", "otel-collector",
                          "agent-scrape", *ALERTING_CAPABILITIES],
            components={c.name: c.endpoint(ctx) for c in self.active(tenants)},
            limits=dict(DEFAULT_LIMITS), logs_dir=str(self.root / "logs"),
            object_storage=self._published_storage(ports),
            durability=declared_durability(),
            alerting=declared_alerting(),
            **logs_fields(by_role(LOGS_STORE).dialect), **declared_otlp(),
            otel_collector=by_role(LOG_SHIPPER).published(ctx),
            agent_scrape_dir=str(by_role(SENDER).scrape_dir(ctx)),
        )
        target.save(self.target_file)
        self._save_state()

    def _storage_config(self) -> dict:
        if self.storage_type == "s3":
            key, secret = new_credentials()
            return {"type": "s3", "access_key_id": key, "secret_access_key": secret, "region": "us-east-1"}
        return {"type": "filesystem"}

    def _published_storage(self, ports: dict) -> dict:
        """What the target file says about the bucket (for the durability suite's listing)."""
        st = self.state["storage"]
        # the bucket of each signal whose store keeps its data in object storage
        named = {f"{signal}_bucket": by_role(role).name for signal, role in SIGNAL_ROLES.items()
                 if by_role(role).uses_bucket}
        if st["type"] == "s3":
            return {**st, "endpoint": f"http://127.0.0.1:{ports['s3']}", "buckets": ",".join(S3Server.buckets()),
                    **named}
        return {"type": "filesystem", "path": str(self.root / "data" / "bucket"), **named}

    def active(self, tenants=None) -> list[Component]:
        """The processes this platform runs, in start order (the S3 server only with S3
        storage; a per-tenant component once for each of ``tenants``, else the target's)."""
        storage = (self.state or {}).get("storage", {"type": self.storage_type})
        if tenants is None:
            tenants = Target.load(self.target_file).tenants if self.target_file.is_file() else []
        return instances(tenants, [c for c in COMPONENTS if c.enabled(storage)])

    def _ctx_for(self, ports, tls, tenants) -> PlatformContext:
        return PlatformContext(name=self.platform, root=self.root, ports=ports, tenants=tenants, tls=tls)

    def resolve_binaries(self, release: Release) -> dict[str, tuple[Path, str | None]]:
        """Find or build every binary of ``release`` before anything starts (by the catalog's names)."""
        out = {}
        storage = (self.state or {}).get("storage", {"type": self.storage_type})
        for c in (c for c in COMPONENTS if c.enabled(storage)):
            version = release.version(c.release_key) if c.release_key else getattr(c, "version", None)
            binary_version = None if c.spec.system_names else version
            resolved = self.resolver.resolve(c.spec, binary_version)
            out[c.name] = (resolved.path, version)
        return out

    def deploy(self, release: Release) -> Target:
        with self._locked():
            binaries = self.resolve_binaries(release)
            if not self.state:
                self.create()
            ctx = self.context()
            self.state["release"] = release.name
            t0 = time.monotonic()
            try:
                for c in self.active():
                    binary, version = binaries[c.template_name]
                    self._start(c, ctx, binary, version)
            except BaseException:
                self.say("start-up failed: stopping what was started")
                self._stop_all()
                raise
            self.state["startup_seconds"] = round(time.monotonic() - t0, 2)
            self._save_state()
            target = Target.load(self.target_file)
            target.release = release.name
            target.save(self.target_file)
            return target

    def _start(self, c: Component, ctx: PlatformContext, binary: Path, version: str | None) -> float:
        # a port still held (by a component that did not stop, or anything
        # else) would let the readiness check talk to the wrong process
        for port_name in c.port_names:
            require_free(ctx.ports[port_name], f"{c.name} ({port_name})")
        c.configure(ctx, version)
        self.say(f"starting {c.name}" + (f" {version}" if version else "") + f" on {c.endpoint(ctx)}")
        proc = Supervised.start(c.name, c.args(ctx, binary, version), ctx.logs_dir / f"{c.name}.log",
                                cwd=ctx.data_dir, stop_signal=c.stop_signal,
                                env={**os.environ, **c.env(ctx)} if c.env(ctx) else None)
        self.procs[c.name] = proc
        self.state.setdefault("components", {})[c.name] = {"version": version, "binary": str(binary)}
        self._save_state()
        secs = proc.wait_ready(c.ready_check(ctx), c.ready_timeout)
        self.state["components"][c.name]["ready_seconds"] = round(secs, 2)
        self.say(f"{c.name} ready in {secs:.1f}s")
        return secs

    def _stop_all(self) -> dict[str, str]:
        results = {}
        for c in reversed(self.active()):
            p = self.procs.get(c.name)
            if p is not None:
                results[c.name] = p.stop(c.stop_timeout)
        return results

    def upgrade(self, release: Release, on_swap: SwapHook | None = None) -> Target:
        """Swap components whose version changes, one at a time, in start order
        (stores first, then the gateway, then the agent): stop gracefully, write
        the new version's configuration, start it on the same data, wait ready."""
        with self._locked():
            self._attach_all()
            binaries = self.resolve_binaries(release)
            ctx = self.context()
            for c in self.active():
                binary, version = binaries[c.template_name]
                old = self.state.get("components", {}).get(c.name, {}).get("version")
                if old == version and c.name in self.procs and self.procs[c.name].alive():
                    continue
                info = {"from": old, "to": version}
                if on_swap:
                    on_swap(c.name, STOPPING, info)
                self.say(f"upgrading {c.name}: {old} -> {version}")
                p = self.procs.get(c.name)
                if p is not None:
                    info["stop"] = p.stop(c.stop_timeout)
                if on_swap:
                    on_swap(c.name, STARTING, info)
                info["ready_seconds"] = self._start(c, ctx, binary, version)
                if on_swap:
                    on_swap(c.name, READY, info)
            self.state["release"] = release.name
            self._save_state()
            target = Target.load(self.target_file)
            target.release = release.name
            target.save(self.target_file)
            return target

    # -- single components, on the same data ------------------------------
    # a role's processes: one, or one per tenant (the logs rule evaluator), acted on together
    def _of_role(self, role: str) -> list[Component]:
        if role not in ROLES:
            raise StackproofError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        return [c for c in self.active() if c.role == role]

    def stop_component(self, role: str) -> str:
        self._attach_all()
        return ", ".join(self.procs[c.name].stop(c.stop_timeout) for c in self._of_role(role))

    def kill_component(self, role: str) -> None:
        self._attach_all()
        for c in self._of_role(role):
            self.procs[c.name].kill()

    def start_component(self, role: str) -> float:
        """Start a stopped component again on its data, same version; seconds until the last is ready."""
        self._attach_all()
        cs = self._of_role(role)
        for c in cs:
            if self.procs.get(c.name) and self.procs[c.name].alive():
                raise StackproofError(f"{c.name} ({role}) is already running")
        ctx = self.context()
        return sum(self._start(c, ctx, Path(self.state["components"][c.name]["binary"]),
                               self.state["components"][c.name].get("version")) for c in cs)

    def remove_local_data(self, role: str) -> list[str]:
        self._attach_all()
        removed = []
        for c in self._of_role(role):
            if self.procs.get(c.name) and self.procs[c.name].alive():
                raise StackproofError(f"{c.name} ({role}) is running; stop it before removing its local data")
            for d in c.data_dirs(self.context()):
                if d.exists():
                    shutil.rmtree(d)
                    removed.append(str(d))
        return removed

    def restart_component(self, role: str) -> float:
        self.stop_component(role)
        return self.start_component(role)

    # -- log rule groups: files the tenant's vmalert reads -------------------
    def _evaluator(self, tenant: str) -> Component:
        self._attach_all()
        inst = next((c for c in self._of_role(LOGS_RULER) if c.tenant.name == tenant), None)
        if inst is None:
            raise StackproofError(f"platform {self.platform!r} has no tenant {tenant!r} with a log rule evaluator")
        return inst

    def _rules_dir(self, tenant: str) -> Path:
        return self._evaluator(tenant).rules_dir(self.context())

    def set_log_rules(self, tenant: str, namespace: str, text: str) -> None:
        inst = self._evaluator(tenant)
        # checked by the instance's own vmalert before it is installed, then put in place whole
        name, _ = checked_rule_file(tenant, namespace, text, lambda: self.state["components"][inst.name]["binary"])
        path = inst.rules_dir(self.context()) / name
        tmp = path.with_name(f".{path.name}.new")
        tmp.write_text(text)
        os.replace(tmp, path)

    def log_rules(self, tenant: str) -> dict[str, str]:
        d = self._rules_dir(tenant)
        return {p.stem: p.read_text() for p in sorted(d.glob("*.yml")) if p.stem != BASE_RULES}

    def delete_log_rules(self, tenant: str, namespace: str) -> None:
        (self._rules_dir(tenant) / rule_file_name(tenant, namespace)).unlink(missing_ok=True)

    # -- teardown and status ---------------------------------------------
    def destroy(self, keep_data: bool = False) -> dict[str, str]:
        """Stop every component (gracefully, then SIGKILL); remove the state
        directory unless ``keep_data``. Safe to call at any point."""
        if not self.root.exists():
            return {}
        with self._locked():
            self._attach_all()
            results = self._stop_all()
            if not keep_data:
                for entry in self.root.iterdir():
                    if entry.name != ".lock":
                        shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
            else:
                self.state["stopped"] = time.time()
                self._save_state()
        if not keep_data:
            shutil.rmtree(self.root, ignore_errors=True)
        self.procs = {}
        return results

    def status(self) -> dict:
        self._attach_all()
        if not self.state:
            return {"platform": self.platform, "state": "absent", "root": str(self.root)}
        ctx = self.context()
        comps = {}
        for c in self.active():
            p = self.procs.get(c.name)
            info = self.state.get("components", {}).get(c.name, {})
            alive = bool(p and p.alive())
            ready = False
            if alive:
                ready, _ = c.ready_check(ctx)()
            comps[c.name] = {"role": c.role, "version": info.get("version"), "endpoint": c.endpoint(ctx),
                             "parts": c.parts(ctx) if alive else {},
                             "pid": p.pid if p else None, "running": alive, "ready": ready,
                             "rss_bytes": _rss_bytes(p.pid) if alive else 0, "log": str(p.log_path) if p else None}
        n_alive = sum(1 for c in comps.values() if c["running"])
        state = "running" if n_alive == len(comps) else ("stopped" if n_alive == 0 else "degraded")
        return {"platform": self.platform, "state": state, "release": self.state.get("release"),
                "root": str(self.root), "target_file": str(self.target_file), "gateway": ctx.gateway_url,
                "components": comps, "rss_bytes": sum(c["rss_bytes"] for c in comps.values())}

    def collect_artifacts(self, dest: Path) -> list[Path]:
        """Component logs and configuration, without anything that holds a token."""
        dest.mkdir(parents=True, exist_ok=True)
        out = []
        for src in sorted((self.root / "logs").glob("*.log")):
            shutil.copy2(src, dest / src.name)
            out.append(dest / src.name)
        # everything in config/ but the two files that hold a token
        for src in sorted((self.root / "config").glob("*")):
            name = src.name
            if name in ("nginx.conf", "prometheus-token") or not src.is_file():
                continue
            if src.is_file():
                shutil.copy2(src, dest / name)
                out.append(dest / name)
        return out
