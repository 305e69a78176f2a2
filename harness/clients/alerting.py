"""Rules and alerting through the gateway, as one tenant.

- :class:`RuleGroups`: rule groups as YAML, by namespace (set, get, list, delete). The
  metrics ruler's config API (Cortex: ``/api/v1/rules/{namespace}``), the same API of
  a Loki ruler for Loki targets, or, for a logs store without one (VictoriaLogs and its
  vmalert), the provider's rule files (:class:`ProviderLogRules`, same verbs).
- :class:`RuleReads`: the Prometheus-format reads ``<base>/api/v1/rules`` and
  ``<base>/api/v1/alerts`` (Cortex under its PromQL path, vmalert under its prefix).
- :class:`AlertmanagerConfig`: the tenant's Alertmanager configuration (Cortex's
  ``/api/v1/alerts``: set, get, delete).
- :class:`Alertmanager`: the Alertmanager v2 API: alerts and silences.

Rule files are YAML: PyYAML reads and writes them (the project already depends on it
for the target file); a group is compared as the mapping it parses to, not as text.
"""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import requests
import yaml

from ..errors import StackproofError
from ..target import Target, Tenant
from .http import TenantHTTP

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


class Alertmanager:
    """The tenant's Alertmanager, v2 API: alerts and silences."""

    def __init__(self, target: Target, tenant: Tenant | None):
        self.http = TenantHTTP(target, tenant)
        self.base = target.url(target.alerting.alertmanager_path).rstrip("/") + "/api/v2"

    def alerts(self, matchers: list[str] | None = None) -> list[dict]:
        r = self.http.get(f"{self.base}/alerts", params=[("filter", m) for m in matchers or []])
        return _ok(r, "list alerts").json()

    def silence(self, matchers: dict[str, str], starts: float, ends: float, comment: str,
                created_by: str = "stackproof") -> str:
        """A silence of alerts whose labels equal ``matchers``; its id."""
        body = {"matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True}
                             for k, v in matchers.items()],
                "startsAt": rfc3339(starts), "endsAt": rfc3339(ends), "createdBy": created_by,
                "comment": comment}
        return _ok(self.http.post(f"{self.base}/silences", json=body), "create a silence").json()["silenceID"]

    def silence_raw(self, body) -> requests.Response:
        return self.http.post(f"{self.base}/silences", json=body)

    def silences(self) -> list[dict]:
        return _ok(self.http.get(f"{self.base}/silences"), "list silences").json()

    def get_silence(self, silence_id: str) -> requests.Response:
        return self.http.get(f"{self.base}/silence/{silence_id}")

    def expire(self, silence_id: str) -> requests.Response:
        return self.http.delete(f"{self.base}/silence/{silence_id}")
