"""The token-checking gateway: Debian's nginx with TLS from the platform CA.

It maps each tenant's bearer token to that tenant (its name, and its numeric
account id for stores that take one), sets each store's tenant headers over
anything a client sends, passes on only the paths each store declares, answers 401 to a request
without a known token, and never passes the token on to the stores nor writes
it to its access log. The release pins the *gateway config version*: the
shape of this file, so a config change is an upgrade like any other.

In a cluster: the official nginx image, pinned (the release's ``gateway`` key
versions this configuration, not nginx); the token maps come from a Secret
the configuration includes, and a plain-HTTP health server answers the probes.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from ..binaries import BinarySpec
from ..target import DEFAULT_LIMITS
from .base import GATEWAY, ClusterPort, ClusterShape, Component, PlatformContext, http_ready

SPEC = BinarySpec(name="nginx", system_names=("nginx",))

MAX_BODY = DEFAULT_LIMITS["max_request_bytes"]  # larger bodies get 413 from the gateway

# in a cluster: nginx stable, pinned; the Secret with the token maps and its one
# file; the probes' port (plain HTTP, not published by the Service)
CLUSTER_NGINX = "1.28.0"
TOKENS_SECRET = "gateway-tokens"
TOKEN_MAP_FILE = "token-map.conf"
HEALTH_PORT = 8080


def render_token_maps(tenants) -> str:
    """The token -> tenant name and token -> account id ``map`` blocks (they hold
    tokens: a secret). The maps' ``default`` is empty: no known token, no tenant."""
    # nginx compares map *strings* ignoring case, which would let a token in
    # another case through; anchored '~' regexes compare case-sensitively
    # (tokens are URL-safe base64: nothing in them needs escaping)
    def block(var: str, value) -> str:
        rows = "\n".join(f'        "~^Bearer {re.escape(t.token)}$" "{value(t)}";' for t in tenants)
        return f"    map $http_authorization ${var} {{\n        default \"\";\n{rows}\n    }}"

    return (block("stackproof_tenant", lambda t: t.name) + "\n"
            + block("stackproof_account", lambda t: "" if t.account_id is None else t.account_id))


# every route and refused prefix: no known token, no tenant, 401
AUTH = """
            if ($stackproof_tenant = "") { return 401 "401 Unauthorized: a known bearer token is required\\n"; }"""


def _locations(store, upstream: str) -> str:
    """The nginx locations of one store: its routes to ``upstream``, with the tenant
    headers set by the gateway (a header set to "" is removed from what the client
    sent), and its refused prefixes."""
    headers = "".join(f'\n            proxy_set_header {k} "{v}";' for k, v in store.tenant_headers.items())
    out = []
    for route in store.routes:
        stream = """
            proxy_buffering off;
            proxy_read_timeout 1h;""" if route.streaming else ""
        out.append(f"""
        location {route.match} {{{AUTH}{headers}
            proxy_set_header Authorization "";
            proxy_set_header Host $host;
            proxy_set_header Connection "";
            proxy_http_version 1.1;{stream}
            proxy_pass http://{upstream};
        }}""")
    for prefix in store.refused:
        out.append(f"""
        location {prefix} {{{AUTH}
            return 403 "403 Forbidden: {prefix} is not offered to tenants\\n";
        }}""")
    return "".join(out)


def _upstream(name: str, ctx: PlatformContext) -> str:
    return f"    upstream {name} {{ server {ctx.host_for(name)}:{ctx.ports[name]}; keepalive 32; }}"


def _fronted(ctx: PlatformContext) -> tuple[list[str], list[str], str]:
    """(upstream blocks, location blocks, tenant maps) of what the gateway fronts. A
    per-tenant component's instance is chosen by the token's tenant (a map to its
    upstream's name, so no resolver is needed); one that does not run here (no port
    of it in ``ctx.ports``) has no routes at all: its paths are 404."""
    from . import fronted  # the catalog imports this module

    upstreams, locations, maps = [], [], []
    for c in fronted():
        if not c.per_tenant:
            upstreams.append(_upstream(c.name, ctx))
            locations.append(_locations(c, c.name))
            continue
        mine = [(t, c.for_tenant(t).name) for t in ctx.tenants if c.for_tenant(t).name in ctx.ports]
        if not mine:
            continue
        var = "stackproof_" + c.name.replace("-", "_")
        upstreams += [_upstream(name, ctx) for _, name in mine]
        rows = "\n".join(f'        "{t.name}" "{name}";' for t, name in mine)
        maps.append(f"    map $stackproof_tenant ${var} {{\n        default \"\";\n{rows}\n    }}")
        locations.append(_locations(c, f"${var}"))
    return upstreams, locations, "\n".join(maps)


def render_nginx_conf(ctx: PlatformContext, config_version: str | None = None, *,
                      token_map_file: str | None = None, run_as_root: bool | None = None,
                      health_port: int | None = None) -> str:
    """nginx.conf of the gateway, with a location for each route of each store
    (found by role). By default (the local provider) the token maps are inline
    and the workers run as root when the harness does. In a cluster:
    ``token_map_file`` is included instead (a Secret, so this file holds no
    token), ``run_as_root`` is decided, and ``health_port`` adds a plain-HTTP
    ``/healthz`` server for the kubelet's probes."""
    tmp = ctx.data_dir / "gateway"
    logs = ctx.logs_dir
    token_maps = f"    include {token_map_file};" if token_map_file else render_token_maps(ctx.tenants)
    user = "user root root;\n" if (os.geteuid() == 0 if run_as_root is None else run_as_root) else ""
    health = "" if health_port is None else f"""
    # probes only (plain HTTP, no tenant data; the Service does not publish it)
    server {{
        listen {ctx.bind_host}:{health_port};
        access_log off;
        location = /healthz {{ return 200 "ok\\n"; }}
        location / {{ return 404; }}
    }}"""
    upstream_blocks, location_blocks, tenant_maps = _fronted(ctx)
    upstreams, locations = "\n".join(upstream_blocks), "".join(location_blocks)
    return f"""# stackproof gateway, config version {config_version or '1'}; generated, do not edit
{user}worker_processes 1;
pid {tmp / 'nginx.pid'};
error_log {logs / 'gateway-error.log'} warn;
events {{ worker_connections 1024; }}

http {{
    client_body_temp_path {tmp / 'client_body'};
    proxy_temp_path {tmp / 'proxy'};
    fastcgi_temp_path {tmp / 'fastcgi'};
    uwsgi_temp_path {tmp / 'uwsgi'};
    scgi_temp_path {tmp / 'scgi'};
    default_type application/octet-stream;
    server_tokens off;

    # the token decides the tenant; nothing the client sends can
{token_maps}
{tenant_maps}
    # no Authorization header in here: tokens never reach a log
    log_format stackproof '$remote_addr [$time_iso8601] tenant=$stackproof_tenant "$request_method $uri" '
                          '$status $body_bytes_sent $request_length $request_time';
    access_log {logs / 'gateway-access.log'} stackproof;

{upstreams}

    server {{
        listen {ctx.bind_host}:{ctx.ports['gateway']} ssl;
        server_name localhost;
        ssl_certificate {ctx.tls.server_cert};
        ssl_certificate_key {ctx.tls.server_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size {MAX_BODY};
        client_body_buffer_size 1m;
        add_header WWW-Authenticate 'Bearer realm="stackproof"' always;
{locations}
        location / {{{AUTH}
            return 404 "404 Not Found: not a stackproof gateway path\\n";
        }}
    }}{health}
}}
"""


class Gateway(Component):
    name = "gateway"
    role = GATEWAY
    release_key = "gateway"
    spec = SPEC
    port_names = ("gateway",)
    stop_signal = signal.SIGQUIT  # nginx: graceful shutdown
    stop_timeout = 15.0
    ready_timeout = 20.0

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        tmp = ctx.data_dir / "gateway"
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        ctx.logs_dir.mkdir(parents=True, exist_ok=True)
        conf = ctx.config_dir / "nginx.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds tokens
        with os.fdopen(fd, "w") as fh:
            fh.write(render_nginx_conf(ctx, version))

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        return [str(binary), "-e", str(ctx.logs_dir / "gateway-error.log"), "-p", str(ctx.data_dir / "gateway"),
                "-c", str(ctx.config_dir / "nginx.conf"), "-g", "daemon off;"]

    def ready_check(self, ctx: PlatformContext):
        # there is no unauthenticated path: a 401 over verified TLS means nginx serves
        return http_ready(f"{ctx.gateway_url}/", verify=str(ctx.tls.ca_cert), expect=401)

    def endpoint(self, ctx: PlatformContext) -> str:
        return ctx.gateway_url

    cluster = ClusterShape(
        image="nginx", tag=CLUSTER_NGINX, binary="/usr/sbin/nginx",
        ports=(ClusterPort("https", 443, "gateway"), ClusterPort("health", HEALTH_PORT, published=False)),
        probe=("/healthz", "health"), secrets=(TOKENS_SECRET,), tls=("cert", "key", "ca"),
        scratch=("logs",))

    def cluster_command(self, ctx: PlatformContext, version: str | None) -> list[str]:
        # nginx writes its logs to files: make them the container's stdout and
        # stderr (as the official image does), and its temp directories' parent
        script = ('mkdir -p "$1" "$2" && ln -sf /dev/stderr "$2/gateway-error.log" && '
                  'ln -sf /dev/stdout "$2/gateway-access.log" && shift 2 && exec "$@"')
        return ["/bin/sh", "-c", script, "gateway-start", str(ctx.data_dir / "gateway"), str(ctx.logs_dir),
                *super().cluster_command(ctx, version)]

    def cluster_files(self, ctx: PlatformContext, version: str | None) -> dict[str, str]:
        # the workers run as the image's user (nginx): no 'user root' line
        return {"nginx.conf": render_nginx_conf(ctx, version, token_map_file=str(ctx.config_dir / TOKEN_MAP_FILE),
                                                run_as_root=False, health_port=HEALTH_PORT)}

    def cluster_secrets(self, tenants) -> dict[str, dict[str, str]]:
        return {TOKENS_SECRET: {TOKEN_MAP_FILE: render_token_maps(tenants) + "\n"}}
