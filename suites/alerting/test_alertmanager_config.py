"""A tenant's Alertmanager configuration through the config API: set, get and delete
come back equal; a config that does not parse or does not hold together is refused
with a 4xx naming the problem, and the stored one is untouched; a config set is the
one the tenant's Alertmanager loads. The system tenant's config is used here (one
test at a time: own_alertmanager_configs): the run's route (user tenants) is left alone."""

from __future__ import annotations

import pytest

from fixtures.defects import known_defect
from harness.clients.alerting import Alertmanager, AlertmanagerConfig
from harness.clients.poll import poll_until

pytestmark = pytest.mark.alerting


def _config(name: str) -> dict:
    return {"route": {"receiver": name, "group_by": ["alertname"], "group_wait": "5s"},
            "receivers": [{"name": name}]}


def test_an_alertmanager_config_set_get_delete(target, own_alertmanager_configs, test_id, check):
    api = AlertmanagerConfig(target, own_alertmanager_configs[0])
    cfg = _config(f"cfg-{test_id}")
    templates = {"stackproof.tmpl": '{{ define "stackproof.title" }}[{{ .Status }}] {{ end }}'}
    try:
        check.status(api.set(cfg, templates), 201, "set the config with a template")
        check.equal(api.get(), {"alertmanager_config": cfg, "template_files": templates}, "the config read back")
        check.status(api.delete(), 200, "delete it")
        check.equal(api.get(), None, "no config after the delete")
    finally:
        api.delete()


INVALID = {
    "not YAML": ("route: [", "yaml"),
    "a route to a receiver that does not exist": (
        {"route": {"receiver": "nowhere"}, "receivers": [{"name": "somewhere"}]}, "nowhere"),
    "an unknown field": ({"route": {"receiver": "r", "group_byy": ["x"]}, "receivers": [{"name": "r"}]}, "group_byy"),
    "a webhook without a URL": ({"route": {"receiver": "r"}, "receivers": [{"name": "r", "webhook_configs": [{}]}]},
                                "url"),
}


@pytest.mark.parametrize("case", INVALID)
def test_an_invalid_alertmanager_config_is_refused_and_the_stored_one_untouched(target, own_alertmanager_configs,
                                                                                test_id, check, case):
    api = AlertmanagerConfig(target, own_alertmanager_configs[0])
    kept = _config(f"kept-{test_id}")
    try:
        check.status(api.set(kept), 201, "a valid config first")
        bad, names = INVALID[case]
        r = api.set_raw(AlertmanagerConfig.body(bad))
        check.status(r, 400, f"{case} is refused")
        check.true(names.lower() in r.text.lower(), f"the refusal of {case} names the problem",
                   f"{names!r} not in {r.text.strip()[:200]!r}")
        check.equal(api.get()["alertmanager_config"], kept, "the stored config is untouched")
    finally:
        api.delete()


def test_a_config_set_just_before_the_alertmanagers_first_request_is_the_one_it_loads(own_platform, request, check):
    """On a platform of its own (a tenant whose Alertmanager has not started yet): set a
    config, then ask that tenant's Alertmanager something at once."""
    known_defect(request, own_platform, "alertmanager-first-request-wipes-config")
    tenant = own_platform.system_tenant
    api, am = AlertmanagerConfig(own_platform, tenant), Alertmanager(own_platform, tenant)
    cfg = _config("first-request")
    check.status(api.set(cfg), 201, "set the config")
    check.status(am.http.get(f"{am.base}/status"), 200, "the tenant's Alertmanager answers at once")
    wait = 5 * own_platform.alerting.alertmanager_poll_interval_s + 5
    vis = poll_until(lambda: am.http.get(f"{am.base}/status").json()["config"]["original"],
                     lambda text: "first-request" in text, timeout=wait)
    check.equal(api.get()["alertmanager_config"], cfg, "the stored config is the one set")
    check.true(vis.ok, f"the tenant's Alertmanager loaded the config set within {wait:.0f}s")
