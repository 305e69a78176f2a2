"""The token-checking gateway: Debian's nginx with TLS from the platform CA.

It maps each tenant's bearer token to that tenant's ``X-Scope-OrgID``,
overwrites any ``X-Scope-OrgID`` a client sends, answers 401 to a request
without a known token, and never passes the token on to the stores nor writes
it to its access log. The release pins the *gateway config version*: the
shape of this file, so a config change is an upgrade like any other.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from ..binaries import BinarySpec
from ..target import DEFAULT_LIMITS
from .base import Component, PlatformContext, http_ready

SPEC = BinarySpec(name="nginx", system_names=("nginx",))

MAX_BODY = DEFAULT_LIMITS["max_request_bytes"]  # larger bodies get 413 from the gateway


def render_token_map(tenants) -> str:
    """The body of the token -> tenant ``map`` (holds tokens: a secret)."""
    # nginx compares map *strings* ignoring case, which would let a token in
    # another case through; anchored '~' regexes compare case-sensitively
    # (tokens are URL-safe base64: nothing in them needs escaping)
    return "\n".join(f'        "~^Bearer {re.escape(t.token)}$" "{t.name}";' for t in tenants)


def render_nginx_conf(ctx: PlatformContext, config_version: str | None = None, *,
                      token_map_file: str | None = None, run_as_root: bool | None = None,
                      health_port: int | None = None) -> str:
    """nginx.conf of the gateway. By default (the local provider) the token
    map is inline and the workers run as root when the harness does. In a
    cluster: ``token_map_file`` is included instead (a Secret, so this file
    holds no token), ``run_as_root`` is decided, and ``health_port`` adds a
    plain-HTTP ``/healthz`` server for the kubelet's probes."""
    tmp = ctx.data_dir / "gateway"
    logs = ctx.logs_dir
    token_map = f"        include {token_map_file};" if token_map_file else render_token_map(ctx.tenants)
    user = "user root root;\n" if (os.geteuid() == 0 if run_as_root is None else run_as_root) else ""
    health = "" if health_port is None else f"""
    # probes only (plain HTTP, no tenant data; the Service does not publish it)
    server {{
        listen {ctx.bind_host}:{health_port};
        access_log off;
        location = /healthz {{ return 200 "ok\\n"; }}
        location / {{ return 404; }}
    }}"""
    upstream_headers = """
            proxy_set_header X-Scope-OrgID $stackproof_tenant;
            proxy_set_header Authorization "";
            proxy_set_header Host $host;
            proxy_http_version 1.1;"""
    auth = """
            if ($stackproof_tenant = "") { return 401 "401 Unauthorized: a known bearer token is required\\n"; }"""
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
    map $http_authorization $stackproof_tenant {{
        default "";
{token_map}
    }}
    map $http_upgrade $connection_upgrade {{
        default upgrade;
        "" close;
    }}
    # no Authorization header in here: tokens never reach a log
    log_format stackproof '$remote_addr [$time_iso8601] tenant=$stackproof_tenant "$request_method $uri" '
                          '$status $body_bytes_sent $request_length $request_time';
    access_log {logs / 'gateway-access.log'} stackproof;

    upstream cortex {{ server {ctx.host_for('cortex')}:{ctx.ports['cortex']}; keepalive 32; }}
    upstream loki {{ server {ctx.host_for('loki')}:{ctx.ports['loki']}; keepalive 32; }}

    server {{
        listen {ctx.bind_host}:{ctx.ports['gateway']} ssl;
        server_name localhost;
        ssl_certificate {ctx.tls.server_cert};
        ssl_certificate_key {ctx.tls.server_key};
        ssl_protocols TLSv1.2 TLSv1.3;
        client_max_body_size {MAX_BODY};
        client_body_buffer_size 1m;
        add_header WWW-Authenticate 'Bearer realm="stackproof"' always;

        # metrics: Prometheus remote write and the PromQL API
        location = /api/v1/push {{{auth}{upstream_headers}
            proxy_set_header Connection "";
            proxy_pass http://cortex;
        }}
        location /prometheus/ {{{auth}{upstream_headers}
            proxy_set_header Connection "";
            proxy_pass http://cortex;
        }}
        # logs: push, LogQL, and the tail websocket
        location /loki/api/v1/ {{{auth}{upstream_headers}
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 1h;
            proxy_pass http://loki;
        }}
        location / {{{auth}
            return 404 "404 Not Found: not a stackproof gateway path\\n";
        }}
    }}{health}
}}
"""


class Gateway(Component):
    name = "gateway"
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
        return http_ready(f"{ctx.gateway_url}/prometheus/api/v1/status/buildinfo",
                          verify=str(ctx.tls.ca_cert), expect=401)

    def endpoint(self, ctx: PlatformContext) -> str:
        return ctx.gateway_url
