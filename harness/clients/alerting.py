"""Rules and alerting through the gateway, as one tenant.

- :class:`RuleGroups`: rule groups as YAML, by namespace (set, get, list, delete). The
  metrics ruler's config API (Cortex: ``/api/v1/rules/{namespace}``), the same API of
  a Loki ruler for Loki targets, or, for a logs store without one (VictoriaLogs and its
  vmalert), the provider's rule files (:class:`ProviderLogRules`, same verbs).
- :class:`RuleReads`: the Prometheus-format reads ``<base>/api/v1/rules`` and
  ``<base>/api/v1/alerts`` (Cortex under its PromQL path, vmalert under its prefix).
- :class:`LogRules`: a tenant's log rule groups as the suites judge them: written where
  the target keeps them (the provider's files, or a Loki ruler's API), read back from what
  the rule evaluator itself reports loaded (:func:`as_loaded` of what was set against
  :func:`reported` of its rules API). A file the provider wrote says nothing about what
  the evaluator runs: it may not have reloaded, or have dropped a field.
- :class:`AlertmanagerConfig`: the tenant's Alertmanager configuration (Cortex's
  ``/api/v1/alerts``: set, get, delete).
- :class:`Alertmanager`: the Alertmanager v2 API: alerts and silences.

Rule files are YAML: PyYAML reads and writes them (the project already depends on it
for the target file); a group is compared as the mapping it parses to, not as text.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import PurePosixPath
from urllib.parse import quote

import requests
import yaml

from ..errors import StackproofError
from ..target import Target, Tenant
from .http import TenantHTTP
from .logs import parse_rfc3339_ns

YAML = {"Content-Type": "application/yaml"}


class APIError(StackproofError):
    """A rules or Alertmanager request answered with an unexpected status: one line, with the body."""

    def __init__(self, what: str, response: requests.Response):
        self.response = response
        self.status = response.status_code
        super().__init__(f"{what}: HTTP {response.status_code} {response.text.strip()[:300]}")


def _ok(r: requests.Response, what: str, expect: tuple[int, ...] = (200,)) -> requests.Response:
    if r.status_code not in expect:
        raise APIError(what, r)
    return r


def dump_group(group: dict) -> str:
    return yaml.safe_dump(group, sort_keys=False)


class RuleGroups:
    """A rules config API (Cortex's or Loki's): namespaces of rule groups, YAML."""

    def __init__(self, target: Target, tenant: Tenant | None, base_path: str | None = None):
        self.http = TenantHTTP(target, tenant)
        self.base = target.url(base_path or target.alerting.rules_path)

    def _url(self, *parts: str) -> str:
        return "/".join([self.base, *(quote(p, safe="") for p in parts)])

    def set_group(self, namespace: str, group: dict | str) -> requests.Response:
        """Create or replace one group of ``namespace`` (the API answers 202)."""
        body = group if isinstance(group, str) else dump_group(group)
        return self.http.post(self._url(namespace), data=body.encode(), headers=YAML)

    def read(self, *parts: str, headers: dict | None = None) -> requests.Response:
        """The answer, whatever it is, to a read of the list, a namespace or one group
        (``read()``, ``read(ns)``, ``read(ns, name)``): for a check that judges the status."""
        return self.http.get(self._url(*parts), headers=headers)

    def get_group(self, namespace: str, name: str) -> dict | None:
        r = self.http.get(self._url(namespace, name))
        if r.status_code == 404:
            return None
        return yaml.safe_load(_ok(r, f"get rule group {namespace}/{name}").text)

    def list(self) -> dict[str, list[dict]]:
        """namespace -> its groups (every namespace of the tenant)."""
        r = self.http.get(self.base)
        if r.status_code == 404:  # Cortex: 'no rule groups found'
            return {}
        return yaml.safe_load(_ok(r, "list rule groups").text) or {}

    def delete_group(self, namespace: str, name: str) -> requests.Response:
        return self.http.delete(self._url(namespace, name))

    def delete_namespace(self, namespace: str) -> requests.Response:
        return self.http.delete(self._url(namespace))


class ProviderLogRules:
    """The same verbs over the provider's rule files (one file per namespace): for a logs
    rule evaluator without a write API. Refusals are :class:`StackproofError` lines."""

    def __init__(self, provider, tenant: Tenant):
        self.provider = provider
        self.tenant = tenant

    def _groups(self, namespace: str) -> list[dict]:
        text = self.provider.log_rules(self.tenant.name).get(namespace)
        return (yaml.safe_load(text) or {}).get("groups", []) if text else []

    def set_group(self, namespace: str, group: dict | str) -> None:
        group = yaml.safe_load(group) if isinstance(group, str) else group
        groups = [g for g in self._groups(namespace) if g.get("name") != group.get("name")] + [group]
        self.provider.set_log_rules(self.tenant.name, namespace, yaml.safe_dump({"groups": groups},
                                                                                  sort_keys=False))

    def get_group(self, namespace: str, name: str) -> dict | None:
        return next((g for g in self._groups(namespace) if g.get("name") == name), None)

    def list(self) -> dict[str, list[dict]]:
        return {ns: (yaml.safe_load(text) or {}).get("groups", [])
                for ns, text in self.provider.log_rules(self.tenant.name).items()}

    def delete_group(self, namespace: str, name: str) -> None:
        rest = [g for g in self._groups(namespace) if g.get("name") != name]
        if rest:
            self.provider.set_log_rules(self.tenant.name, namespace, yaml.safe_dump({"groups": rest},
                                                                                     sort_keys=False))
        else:
            self.provider.delete_log_rules(self.tenant.name, namespace)

    def delete_namespace(self, namespace: str) -> None:
        self.provider.delete_log_rules(self.tenant.name, namespace)


class LogRules:
    """A tenant's log rule groups: set and deleted where the target keeps them (``files``:
    the provider's rule files, :class:`ProviderLogRules`, or a Loki ruler's config API,
    :class:`RuleGroups`), and read back from the rule evaluator's own rules API
    (``reads``), never from those files: ``loaded()`` is what the evaluator reports it runs,
    by namespace, and ``as_loaded(namespace, groups)`` what it must report for the groups
    set. ``default_interval_s`` is the evaluator's interval for a group that sets none;
    ``datasource_type`` the type it reports for a group that sets none (vmalert's
    ``-rule.defaultRuleType``; None for an evaluator that reports no type, as Loki's)."""

    def __init__(self, files, reads: "RuleReads", default_interval_s: float, datasource_type: str | None):
        self.files = files
        self.reads = reads
        self.default_interval_s = default_interval_s
        self.datasource_type = datasource_type

    # -- the target's part: where the rule files are kept --------------------------------
    def set_group(self, namespace: str, group: dict | str) -> None:
        """Create or replace one group of ``namespace``; a refusal is a StackproofError line."""
        r = self.files.set_group(namespace, group)
        if isinstance(r, requests.Response):
            _ok(r, f"set log rule group in {namespace}", (200, 201, 202))

    def set_file(self, namespace: str, text: str) -> None:
        """Install a whole rule file as given (what one group cannot make: two of one name)."""
        self.files.provider.set_log_rules(self.files.tenant.name, namespace, text)

    def delete_group(self, namespace: str, name: str) -> None:
        self.files.delete_group(namespace, name)

    def delete_namespace(self, namespace: str) -> None:
        self.files.delete_namespace(namespace)

    def kept(self) -> dict[str, list[dict]]:
        """What the target keeps (the provider's files): namespace -> its groups as written."""
        return self.files.list()

    # -- the evaluator's part: what it reports loaded -------------------------------------
    def loaded(self) -> dict[str, list[dict]]:
        """namespace -> the groups the evaluator reports loaded from it (:func:`reported`),
        by name; a read that is refused or fails raises (it is never "nothing loaded")."""
        out: dict[str, list[dict]] = {}
        for g in self.reads.groups():
            rep = reported(g, self.datasource_type is not None)
            out.setdefault(rep["namespace"], []).append(rep)
        return {ns: sorted(gs, key=lambda g: g["name"]) for ns, gs in out.items()}

    def as_loaded(self, namespace: str, groups: list[dict]) -> list[dict] | None:
        """What the evaluator must report for ``groups`` set in ``namespace`` (None for none)."""
        if not groups:
            return None
        return sorted((as_loaded(g, namespace, self.default_interval_s, self.datasource_type) for g in groups),
                      key=lambda g: g["name"])


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}


def seconds(duration: str | int | float | None) -> float:
    """A Prometheus duration (``1m30s``, ``500ms``; a number is seconds) in seconds, or ValueError."""
    if duration is None:
        return 0.0
    if isinstance(duration, (int, float)):
        return float(duration)
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"{duration!r} is not a duration (e.g. 30s, 1m30s, 500ms)")
    return float(sum(float(n) * _UNIT_S[u] for n, u in parts))


def as_loaded(group: dict, namespace: str, default_interval_s: float, datasource_type: str | None) -> dict:
    """What a rule evaluator's rules API reports for ``group`` loaded from ``namespace``, in
    the form of :func:`reported`: its interval in seconds (the evaluator's default if unset),
    its datasource type (the default if unset), each rule's kind, name, expression, labels
    (the group's labels under the rule's own, as vmalert merges them), annotations and
    ``for`` in seconds. Computed from what was set, never from what was read."""
    group_labels = group.get("labels") or {}
    out = {"namespace": namespace, "name": group["name"],
           "interval_s": seconds(group["interval"]) if "interval" in group else float(default_interval_s),
           "rules": [{"type": "alerting" if "alert" in r else "recording", "name": r.get("alert") or r.get("record"),
                      "query": r["expr"], "labels": {**group_labels, **(r.get("labels") or {})},
                      "annotations": (r.get("annotations") or {}) if "alert" in r else {},
                      "for_s": seconds(r.get("for")) if "alert" in r else 0.0}
                     for r in group.get("rules") or []]}
    if datasource_type is not None:
        out["type"] = group.get("type", datasource_type)
    return out


def reported(group: dict, with_type: bool = True) -> dict:
    """One group of a Prometheus-format ``/api/v1/rules`` answer (vmalert's, a Loki or Cortex
    ruler's), in the form of :func:`as_loaded`: its namespace is the file it was loaded
    from (vmalert: the file's path, ``<namespace>.yml``; a ruler: the namespace itself)."""
    name = PurePosixPath(group.get("file") or "").name
    namespace = re.sub(r"\.ya?ml$", "", name)
    out = {"namespace": namespace, "name": group.get("name"), "interval_s": float(group.get("interval") or 0),
           "rules": [{"type": r.get("type"), "name": r.get("name"), "query": r.get("query"),
                      "labels": r.get("labels") or {}, "annotations": r.get("annotations") or {},
                      "for_s": float(r.get("duration") or 0)}
                     for r in group.get("rules") or []]}
    if with_type:
        out["type"] = group.get("type")
    return out


class RuleReads:
    """``<base>/api/v1/rules`` and ``<base>/api/v1/alerts`` (Prometheus' format)."""

    def __init__(self, target: Target, tenant: Tenant | None, base_url: str):
        self.http = TenantHTTP(target, tenant)
        self.base = base_url.rstrip("/")

    def _data(self, path: str, params: dict | None = None) -> dict:
        r = _ok(self.http.get(f"{self.base}/api/v1/{path}", params=params), f"GET {path}")
        body = r.json()
        if body.get("status") != "success":
            raise StackproofError(f"GET {path}: status {body.get('status')!r}: {body.get('error', '')}")
        return body["data"]

    def groups(self) -> list[dict]:
        return self._data("rules")["groups"] or []

    def group(self, name: str) -> dict | None:
        return next((g for g in self.groups() if g["name"] == name), None)

    def alerts(self) -> list[dict]:
        return self._data("alerts")["alerts"] or []


class AlertmanagerConfig:
    """The tenant's Alertmanager configuration (Cortex's config API)."""

    def __init__(self, target: Target, tenant: Tenant | None):
        self.http = TenantHTTP(target, tenant)
        self.url = target.url(target.alerting.alertmanager_config_path)

    @staticmethod
    def body(config: dict | str, templates: dict[str, str] | None = None) -> str:
        am = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        return yaml.safe_dump({"template_files": templates or {}, "alertmanager_config": am}, sort_keys=False)

    def set(self, config: dict | str, templates: dict[str, str] | None = None) -> requests.Response:
        return self.http.post(self.url, data=self.body(config, templates).encode(), headers=YAML)

    def set_raw(self, body: str) -> requests.Response:
        return self.http.post(self.url, data=body.encode(), headers=YAML)

    def get(self) -> dict | None:
        """{"alertmanager_config": <the config, parsed>, "template_files": {...}}, or None if there is none."""
        r = self.http.get(self.url)
        if r.status_code == 404:
            return None
        doc = yaml.safe_load(_ok(r, "get the Alertmanager config").text) or {}
        return {"alertmanager_config": yaml.safe_load(doc.get("alertmanager_config") or "") or {},
                "template_files": doc.get("template_files") or {}}

    def delete(self) -> requests.Response:
        return self.http.delete(self.url)


def rfc3339(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_rfc3339(text: str) -> float:
    """Seconds since the epoch of a Go ``time.Time`` in JSON (RFC 3339, up to nanoseconds,
    any offset), or ValueError naming the text."""
    return parse_rfc3339_ns(text or "") / 1e9


class Alertmanager:
    """The tenant's Alertmanager, v2 API: alerts and silences."""

    def __init__(self, target: Target, tenant: Tenant | None):
        self.http = TenantHTTP(target, tenant)
        self.base = target.url(target.alerting.alertmanager_path).rstrip("/") + "/api/v2"

    def alerts(self, matchers: list[str] | None = None) -> list[dict]:
        r = self.http.get(f"{self.base}/alerts", params=[("filter", m) for m in matchers or []])
        return _ok(r, "list alerts").json()

    @staticmethod
    def silence_body(matchers: dict[str, str], starts: float, ends: float, comment: str,
                     created_by: str = "stackproof") -> dict:
        """The v2 API's body of a silence of alerts whose labels equal ``matchers``."""
        return {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
                "startsAt": rfc3339(starts), "endsAt": rfc3339(ends), "createdBy": created_by, "comment": comment}

    def silence(self, matchers: dict[str, str], starts: float, ends: float, comment: str,
                created_by: str = "stackproof") -> str:
        """A silence of alerts whose labels equal ``matchers``; its id."""
        body = self.silence_body(matchers, starts, ends, comment, created_by)
        return _ok(self.silence_raw(body), "create a silence").json()["silenceID"]

    def silence_raw(self, body) -> requests.Response:
        return self.http.post(f"{self.base}/silences", json=body)

    def silences(self) -> list[dict]:
        return _ok(self.http.get(f"{self.base}/silences"), "list silences").json()

    def get_silence(self, silence_id: str) -> requests.Response:
        return self.http.get(f"{self.base}/silence/{silence_id}")

    def expire(self, silence_id: str) -> requests.Response:
        return self.http.delete(f"{self.base}/silence/{silence_id}")
