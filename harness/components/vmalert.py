"""vmalert (Apache-2.0, ``app/vmalert`` of the VictoriaMetrics module): the
logs role's rule evaluator. VictoriaLogs has no ruler of its own; vmalert runs
LogsQL alerting and recording rules against its stats API
(``/select/logsql/stats_query``), sends alerts to the metrics store's
Alertmanager and remote-writes recording-rule results into the metrics store.

One process per tenant. Open-source vmalert has no tenant of its own: its
``tenant`` group field is an Enterprise feature, and although a group may set
``headers`` (datasource) and ``notifier_headers``, recording results all go to
the one ``-remoteWrite.url`` with its fixed headers. So each tenant's vmalert
carries the tenant in its process flags, for the three directions alike:
``AccountID`` to VictoriaLogs, ``X-Scope-OrgID`` to Cortex's Alertmanager, to
Cortex's push (recording rules, ``ALERTS``) and to its PromQL API (alert state
restored after a restart). A rule file can never choose a tenant: the provider
refuses a group that sets headers (see :func:`check_groups`).

Rule groups are files the provider writes (vmalert has no write API) under
``config/vmalert/<tenant>/``; vmalert checks them for changes every second.
Its reads (``/api/v1/rules``, ``/api/v1/alerts``) are served under the path
prefix ``/vmalert``, which the gateway passes to the token's own tenant's
instance. Why each flag is set:

- ``-rule.defaultRuleType=vlogs``: rules are LogsQL unless a group says otherwise.
- ``-evaluationInterval=1s``: short, so checks wait seconds, not minutes; the
  target file publishes it (``alerting.evaluation_interval_s``). A LogsQL rule
  without a time filter counts the window ``[t - interval, t]``.
- ``-rule.evalDelay=2s`` (upstream 30 s): a rule evaluated at ``t`` reads the logs
  of ``t - 2 s``, time enough for VictoriaLogs to make a line searchable (its 1 s flush);
  results are stamped with that time. Published as ``alerting.evaluation_delay_s``.
- ``-remoteWrite.flushInterval=1s`` (upstream 5 s): recording results reach
  Cortex within a second or two.
- ``-remoteWrite.disablePathAppend``: vmalert appends ``/api/v1/write`` (the
  VictoriaMetrics path) otherwise; Cortex takes remote write at ``/api/v1/push``.

In a cluster: the official image ``victoriametrics/vmalert`` (program
``/vmalert-prod``, run as root), one StatefulSet and Service per tenant
(``vmalert-<tenant>``), each with the same flags as the process. Its rule files
are a ConfigMap of their own (:meth:`VMAlert.cluster_kept`), mounted where the
process reads them: the provider keeps them (vmalert has no write API), checks
each with ``-dryRun`` first, and a deploy or an upgrade never rewrites them.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path
from typing import Callable

import yaml

from ..binaries import BinarySpec, GoRecipe
from ..errors import StackproofError
from .base import (LOGS_RULER, ClusterPort, ClusterShape, Component, PlatformContext, Read, Route, StoreAPI,
                   http_ready)

SPEC = BinarySpec(
    name="vmalert",
    go=GoRecipe(
        module="github.com/VictoriaMetrics/VictoriaMetrics",
        package="github.com/VictoriaMetrics/VictoriaMetrics/app/vmalert",
        version_vars=("github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version=vmalert-{version}",),
    ),
)

PATH_PREFIX = "/vmalert"
EVALUATION_INTERVAL_S = 1
CONFIG_CHECK_INTERVAL_S = 1
# rules evaluate the data of this many seconds ago (upstream 30 s): VictoriaLogs makes a line
# searchable within its 1 s flush interval
EVAL_DELAY_S = 2
# a group may not choose whom it reads as or notifies for: the process's flags say the tenant
FORBIDDEN_GROUP_KEYS = ("headers", "notifier_headers", "params", "tenant")


BASE_RULES = "stackproof"  # the empty file every instance has, so that '-rule' matches one
BASE_RULES_TEXT = "groups: []\n"
CLUSTER_PORT = 8880  # upstream's default listen port
_NAMESPACE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def check_namespace(namespace: str) -> str:
    """A rule file's name (its namespace), or ValueError: a path of its own, never the base file."""
    if not _NAMESPACE.match(namespace) or namespace.startswith(".") or namespace == BASE_RULES:
        raise ValueError(f"{namespace!r} is not a rule namespace (letters, digits, '_', '.', '-'; "
                         f"not {BASE_RULES!r})")
    return namespace


def vmalert_dry_run(binary: Path, rule_file: Path) -> str:
    """What vmalert says is wrong with ``rule_file`` (its '-dryRun' check), or "" if nothing."""
    out = subprocess.run([str(binary), "-dryRun", f"-rule={rule_file}", "-rule.defaultRuleType=vlogs",
                          "-loggerLevel=ERROR"], capture_output=True, text=True, timeout=60)
    if out.returncode == 0:
        return ""
    lines = [ln for ln in (out.stderr + out.stdout).splitlines() if "\tfatal\t" in ln or "\terror\t" in ln]
    if not lines:
        return f"vmalert -dryRun: exit status {out.returncode}"
    # what is wrong, without the timestamp, the source location and the (temporary) file's name
    last = lines[-1].split("\t", 3)[-1]
    m = re.search(r"errors\(\d+\): (.*)$", last)
    return re.sub(r' in file "[^"]*"', "", m.group(1) if m else last).strip()


def check_groups(text: str) -> list[dict]:
    """The groups of a rule file, or ValueError naming what is wrong with it
    (what vmalert's own check cannot see: a group that sets its own tenant)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
        raise ValueError("a rule file is a mapping with a list of 'groups'")
    for g in doc["groups"]:
        if not isinstance(g, dict) or not g.get("name"):
            raise ValueError("every group is a mapping with a 'name'")
        for key in FORBIDDEN_GROUP_KEYS:
            if key in g:
                raise ValueError(f"group {g['name']!r} sets {key!r}: the tenant comes from the platform, "
                                 "never from a rule file")
    return doc["groups"]


def rule_file_name(tenant: str, namespace: str) -> str:
    """The file of ``tenant``'s rule namespace ``namespace``, or a one-line StackproofError."""
    try:
        return f"{check_namespace(namespace)}.yml"
    except ValueError as exc:
        raise StackproofError(f"log rules of {tenant}: {exc}") from None


def checked_rule_file(tenant: str, namespace: str, text: str, binary: Callable[[], Path]) -> tuple[str, list[dict]]:
    """The file name and the groups of ``tenant``'s rule file ``namespace`` once ``text``
    passed the harness's own checks (before anything is asked of the platform) and then
    those of the vmalert ``binary()`` gives (``-dryRun``: what it would refuse at its next
    reload, a LogsQL syntax error, an unknown field, a duplicate group), so that a provider
    installs only a file its evaluator loads; else a one-line StackproofError."""
    try:
        name = f"{check_namespace(namespace)}.yml"
        groups = check_groups(text)
    except ValueError as exc:
        raise StackproofError(f"log rules {namespace!r} of {tenant}: {exc}") from None
    checker = Path(binary())
    with tempfile.TemporaryDirectory(prefix="stackproof-rules-") as d:
        path = Path(d) / name
        path.write_text(text)
        problem = vmalert_dry_run(checker, path)
    if problem:
        raise StackproofError(f"log rules {namespace!r} of {tenant}: {problem}")
    return name, groups


class VMAlert(StoreAPI, Component):
    name = "vmalert"
    role = LOGS_RULER
    release_key = "vmalert"
    spec = SPEC
    per_tenant = True
    port_names = ()  # each instance has its own (``vmalert-<tenant>``)
    ready_timeout = 30.0
    stop_timeout = 30.0
    routes = (Route(f"= {PATH_PREFIX}/api/v1/rules", reads=(
                  Read("log rules", f"{PATH_PREFIX}/api/v1/rules", shows="log-rules", needs="log-alerting"),)),
              Route(f"= {PATH_PREFIX}/api/v1/alerts", reads=(
                  Read("log alerts", f"{PATH_PREFIX}/api/v1/alerts", needs="log-alerting"),)))
    # a client's tenant headers never reach it (it has its own; these only keep them out)
    tenant_headers = {"X-Scope-OrgID": "", "AccountID": "", "ProjectID": ""}
    uses_bucket = False
    reads_path = PATH_PREFIX  # its rules and alerts reads, under the gateway
    # what the target file publishes (alerting): how often rules run and a changed file is read
    alerting = {"evaluation_interval_s": EVALUATION_INTERVAL_S, "poll_interval_s": CONFIG_CHECK_INTERVAL_S,
                "evaluation_delay_s": EVAL_DELAY_S}

    def reported_version(self, version: str) -> str:
        return f"vmalert-{version}"

    def rules_dir(self, ctx: PlatformContext) -> Path:
        assert self.tenant is not None, "the rules of an instance, not of the template"
        return ctx.config_dir / "vmalert" / self.tenant.name

    def configure(self, ctx: PlatformContext, version: str | None) -> None:
        d = self.rules_dir(ctx)
        d.mkdir(parents=True, exist_ok=True)
        # vmalert refuses to start when '-rule' matches no file
        base = d / f"{BASE_RULES}.yml"
        if not base.exists():
            base.write_text(BASE_RULES_TEXT)

    def flags(self, ctx: PlatformContext) -> list[str]:
        t = self.tenant
        assert t is not None and t.account_id is not None
        cortex = ctx.url("cortex")
        org = f"X-Scope-OrgID:{t.name}"
        return [f"-httpListenAddr={ctx.bind_host}:{ctx.ports[self.name]}",
                f"-http.pathPrefix={PATH_PREFIX}",
                f"-rule={self.rules_dir(ctx)}/*.yml",
                "-rule.defaultRuleType=vlogs",
                f"-evaluationInterval={EVALUATION_INTERVAL_S}s",
                f"-rule.evalDelay={EVAL_DELAY_S}s",
                f"-configCheckInterval={CONFIG_CHECK_INTERVAL_S}s",
                f"-datasource.url={ctx.url('victorialogs')}",
                f"-datasource.headers=AccountID:{t.account_id}^^ProjectID:0",
                f"-notifier.url={cortex}/alertmanager",
                f"-notifier.headers={org}",
                f"-remoteWrite.url={cortex}/api/v1/push",
                "-remoteWrite.disablePathAppend",
                f"-remoteWrite.headers={org}",
                "-remoteWrite.flushInterval=1s",
                f"-remoteRead.url={cortex}/prometheus",
                f"-remoteRead.headers={org}",
                "-loggerLevel=INFO"]

    def args(self, ctx: PlatformContext, binary: Path, version: str | None) -> list[str]:
        return [str(binary), *self.flags(ctx)]

    def ready_check(self, ctx: PlatformContext):
        return http_ready(f"{ctx.url(self.name)}{PATH_PREFIX}/health")

    def scrape_port(self) -> str | None:
        return None

    cluster = ClusterShape(
        image="victoriametrics/vmalert", tag="{version}", binary="/vmalert-prod",
        ports=(ClusterPort("http", CLUSTER_PORT, "vmalert"),), probe=(f"{PATH_PREFIX}/health", "http"))

    def cluster_kept(self, ctx: PlatformContext) -> tuple[Path, dict[str, str]] | None:
        # the rule files, where '-rule' looks; the base file, so that vmalert starts with none of a tenant's
        return self.rules_dir(ctx), {f"{BASE_RULES}.yml": BASE_RULES_TEXT}
