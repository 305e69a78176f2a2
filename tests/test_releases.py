"""The release catalog."""

from __future__ import annotations

import re

import pytest

from harness.errors import ConfigError
from harness.releases import Catalog


def minor(v: str) -> tuple[int, int]:
    m = re.match(r"v(\d+)\.(\d+)", v)
    return int(m.group(1)), int(m.group(2))


def test_builtin_catalog_has_two_releases_that_cross_minor_versions():
    cat = Catalog.load()
    assert len(cat.releases) >= 2
    old, new = cat.newest(2)
    for comp in ("cortex", "victorialogs"):
        assert minor(old.version(comp)) < minor(new.version(comp)), comp
    assert cat.get().name == new.name


def test_unknown_release_is_one_line_with_the_known_ones():
    with pytest.raises(ConfigError) as ei:
        Catalog.load().get("1999.01")
    assert "unknown release '1999.01'" in str(ei.value)
    assert "2026.11" in str(ei.value)


@pytest.mark.parametrize("body,message", [
    ("releases: {r1: {cortex: v1.0.0, victorialogs: v1.0.0, prometheus: v3.0.0, vmalert: v1.0.0}}",
     "has no 'gateway' version"),
    ("releases: {r1: {cortex: 1.0, victorialogs: v1.0.0, prometheus: v3.0.0, vmalert: v1.0.0, gateway: 1}}",
     "is not of the form vX.Y.Z"),
    ("releases: {r1: {cortex: v1.0.0, victorialogs: v1.0.0, prometheus: v3.0.0, vmalert: v1.0.0, "
     "otelcol: v0.1.0, gateway: 1, thanos: v0.1.0}}",
     "unknown keys: thanos"),
    ("releases: []", "expected a non-empty 'releases' mapping"),
    ("releases: {r1: [", "not valid YAML"),
])
def test_bad_catalog(tmp_path, body, message):
    p = tmp_path / "releases.yaml"
    p.write_text(body)
    with pytest.raises(ConfigError, match=re.escape(message)):
        Catalog.load(p)
