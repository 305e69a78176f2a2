"""The standing rule on skips, in code: a test may skip (or be marked to fail)
only for

1. a capability the target declares absent: the skip is guarded by
   ``target.has(...)`` (or ``need(target, ...)``, which tests it);
2. an environment need: root (``os.geteuid()``);
3. a ``known_defect`` entry (fixtures/defects.py, the only place an xfail is made).

Every other ``pytest.skip``, ``pytest.xfail``, ``pytest.importorskip``,
``pytest.mark.skip``/``skipif``/``xfail`` (and unittest's skips) in ``suites/``,
``fixtures/``, ``tests/`` and the root conftest is found by reading the source
(``ast``), wherever it is: a call, a decorator, a mark given to ``pytest.param``
or ``add_marker``, a module-level mark. A site the rules above do not cover
fails this test unless it is in ``ALLOWED`` below, by file and function, with
the reason it is a declared property of the target or of the machine. An
entry that no longer matches a site fails too, so the list stays exact.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from .conftest import REPO

ROOTS = ("suites", "fixtures", "tests")
PYTEST_CALLS = {"skip", "xfail", "importorskip"}
PYTEST_MARKS = {"skip", "skipif", "xfail"}
UNITTEST = {"skip", "skipIf", "skipUnless", "expectedFailure", "SkipTest", "skipTest"}

# (file, function, kind) -> why this site is a declared property, not unfinished work
ALLOWED: dict[tuple[str, str, str], str] = {
    ("suites/otlp/test_otlp_logs.py", "_needs_otlp_on_victorialogs", "skip"):
        "declared field: the target's logs api; the OTLP logs mapping here is VictoriaLogs' (a Loki target "
        "maps OTLP its own way), and the target file says which store it has",
    ("suites/metrics/test_labels_and_apis.py",
     "test_tenant_over_its_ingestion_limit_gets_429_and_what_was_accepted_is_intact", "skip"):
        "declared absent: the target file lists no tenant with role 'limited' (every provider's platforms have one)",
    ("suites/security/test_security.py", "test_plain_http_is_refused", "skip"):
        "declared field: the target's gateway_url is not https, so there is no plain-HTTP side to refuse",
    ("suites/security/test_security.py", "test_tls_verifies_with_the_platform_ca_and_fails_with_another", "skip"):
        "declared field: the target's gateway_url is not https, so there is no certificate to verify",
    ("suites/durability/test_crash.py", "_bucket_objects", "skip"):
        "declared field: the target's object_storage names a bucket type stackproof cannot list (neither s3 nor "
        "filesystem); every provider publishes one it can",
    ("fixtures/plugin.py", "own_platform", "skip"):
        "declared by the provider: a user's own target (provider 'existing') comes with no provider that can "
        "make a second platform beside it",
    ("fixtures/alerting.py", "alert_receiver", "skip"):
        "declared absent: the run has no receiver URL only when the target does not declare 'alerting-webhook' "
        "(fixtures/plugin.py receiver_url tests target.has)",
    ("tests/test_images.py", "test_host_path_entries_keep_the_hosts_links", "skip"):
        "environment: the x86-64 loader path the test copies exists only on an x86-64 machine",
    ("tests/test_images.py", "<module>", "mark.skipif"):
        "environment: root and the system packages make setup installs (scripts/system-deps.sh): containerd, "
        "runc, busybox-static, gcc, nginx",
}


@dataclass(frozen=True)
class Site:
    path: str
    line: int
    function: str  # the enclosing function (or class.function), "<module>" at the top level
    kind: str  # skip | xfail | importorskip | mark.skip | mark.skipif | mark.xfail | unittest.<name>
    why: str | None  # capability | root | known_defect, or None: only the allow-list may let it pass

    def __str__(self) -> str:
        return f"{self.path}:{self.line} ({self.function}): {self.kind}"


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _declared(expr: ast.AST) -> str | None:
    """What a condition tests: a capability of the target, root, or neither (None). An ``or``
    is declared only when each side is (a skip on 'no root or some other reason' is not)."""
    if isinstance(expr, ast.BoolOp) and isinstance(expr.op, ast.Or):
        whys = [_declared(v) for v in expr.values]
        return whys[0] if None not in whys and len(set(whys)) == 1 else None
    if isinstance(expr, ast.BoolOp):  # and: the skip needs every part, one declared part suffices
        return next((w for w in map(_declared, expr.values) if w), None)
    for node in ast.walk(expr):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            if name.endswith("target.has") or name == "need":
                return "capability"
            if name in ("os.geteuid", "os.getuid"):
                return "root"
    return None


def find_sites(path: Path, rel: str) -> list[Site]:
    """Every skip and xfail site of one file."""
    tree = ast.parse(path.read_text(), filename=rel)
    parent: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parent[child] = node
    pytest_names, mark_names, direct = {"pytest"}, set(), {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            pytest_names |= {a.asname for a in node.names if a.name == "pytest" and a.asname}
        elif isinstance(node, ast.ImportFrom) and node.module == "pytest":
            for a in node.names:
                if a.name == "mark":
                    mark_names.add(a.asname or a.name)
                elif a.name in PYTEST_CALLS:
                    direct[a.asname or a.name] = a.name
    mark_names |= {f"{p}.mark" for p in pytest_names}

    def kind_of(node: ast.AST) -> str | None:
        if isinstance(node, ast.Attribute):
            base = _dotted(node.value)
            if base in pytest_names and node.attr in PYTEST_CALLS:
                return node.attr
            if base in mark_names and node.attr in PYTEST_MARKS:
                return f"mark.{node.attr}"
            if base in ("unittest", "self") and node.attr in UNITTEST:
                return f"unittest.{node.attr}"
        if isinstance(node, ast.Name) and node.id in direct and isinstance(node.ctx, ast.Load):
            return direct[node.id]
        return None

    def in_except_clause(node: ast.AST) -> bool:  # `except pytest.skip.Exception:` catches, it does not skip
        child, up = node, parent.get(node)
        while up is not None:
            if isinstance(up, ast.ExceptHandler) and child is up.type:
                return True
            child, up = up, parent.get(up)
        return False

    sites = []
    for node in ast.walk(tree):
        kind = kind_of(node)
        if kind is None or in_except_clause(node):
            continue
        funcs, conditions = [], []
        call = parent.get(node)
        if kind == "mark.skipif" and isinstance(call, ast.Call) and call.func is node and call.args:
            conditions.append(call.args[0])
        child, up = node, parent.get(node)
        while up is not None:
            if isinstance(up, (ast.If, ast.IfExp, ast.While)) and child is not up.test:
                conditions.append(up.test)
            if isinstance(up, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                funcs.append(up.name)
            child, up = up, parent.get(up)
        function = ".".join(reversed(funcs)) or "<module>"
        why = next((w for w in map(_declared, conditions) if w), None)
        if rel == "fixtures/defects.py" and kind in ("xfail", "mark.xfail"):
            why = "known_defect"
        sites.append(Site(rel, node.lineno, function, kind, why))
    return sorted(sites, key=lambda s: s.line)


def scan(root: Path, roots=ROOTS) -> list[Site]:
    files = [p for r in roots for p in sorted((root / r).rglob("*.py"))]
    files += [root / "conftest.py"] if (root / "conftest.py").is_file() else []
    return [s for p in files for s in find_sites(p, p.relative_to(root).as_posix())]


def judge(sites: list[Site], allowed: dict[tuple[str, str, str], str]) -> tuple[list[str], list[str]]:
    """(sites that break the rule, allow-list entries that match no site)."""
    bad = [str(s) for s in sites if s.why is None and (s.path, s.function, s.kind) not in allowed]
    used = {(s.path, s.function, s.kind) for s in sites if s.why is None}
    return bad, [" / ".join(k) for k in allowed if k not in used]


def test_every_skip_and_xfail_site_is_declared():
    sites = scan(REPO)
    bad, stale = judge(sites, ALLOWED)
    assert bad == [], "skips and xfails that are neither a declared capability, root, nor a known defect " \
                      "(make the target declare it, or add an entry to ALLOWED with its reason):\n" + "\n".join(bad)
    assert stale == [], "ALLOWED entries that match no site any more (remove them):\n" + "\n".join(stale)
    assert all(reason.strip() for reason in ALLOWED.values())
    # the scan sees the sites it must: the capability guards, root, and known_defect's xfail
    whys = {s.why for s in sites}
    assert {"capability", "root", "known_defect"} <= whys, whys


GENERATED = {
    "test_bare.py": "import pytest\n\n\ndef test_unfinished():\n    pytest.skip('later')\n",
    "test_static_xfail.py": "import pytest\n\n\n@pytest.mark.xfail(strict=True, reason='sign lost')\n"
                            "def test_sign():\n    assert False\n",
    "test_param_mark.py": "import pytest\n\n\n"
                          "@pytest.mark.parametrize('x', [pytest.param(1, marks=pytest.mark.skip)])\n"
                          "def test_p(x):\n    pass\n",
    "test_other_reason.py": "import os\nimport sys\nimport pytest\n\n"
                            "pytestmark = pytest.mark.skipif(os.geteuid() != 0 or sys.platform != 'linux', "
                            "reason='x')\n",
    "test_aliases.py": "import pytest as pt\nfrom pytest import importorskip as need_module\n\n"
                       "boto3 = need_module('boto3')\n\n\ndef test_a(target):\n    if target.provider == 'aws':\n"
                       "        pt.xfail('not on aws')\n",
    "test_fine.py": "import os\nimport pytest\n\n\ndef test_cap(target):\n    if not target.has('tail'):\n"
                    "        pytest.skip('no tail')\n\n\n@pytest.mark.skipif(os.geteuid() != 0, reason='root')\n"
                    "def test_root():\n    pass\n\n\ndef test_catch():\n    try:\n        pass\n"
                    "    except pytest.skip.Exception:\n        raise\n",
}


def test_the_check_is_red_on_generated_files_with_undeclared_skips(tmp_path):
    tests = tmp_path / "tests"
    tests.mkdir()
    for name, text in GENERATED.items():
        (tests / name).write_text(text)
    sites = scan(tmp_path)
    bad, stale = judge(sites, {("tests/test_gone.py", "test_x", "skip"): "an entry for a site that went"})
    assert sorted(bad) == sorted([
        "tests/test_bare.py:5 (test_unfinished): skip",
        "tests/test_static_xfail.py:4 (test_sign): mark.xfail",
        "tests/test_param_mark.py:4 (test_p): mark.skip",
        "tests/test_other_reason.py:5 (<module>): mark.skipif",
        "tests/test_aliases.py:4 (<module>): importorskip",
        "tests/test_aliases.py:9 (test_a): xfail",
    ]), bad
    assert stale == ["tests/test_gone.py / test_x / skip"]
    fine = [s for s in sites if s.path == "tests/test_fine.py"]
    assert [(s.function, s.kind, s.why) for s in fine] == [("test_cap", "skip", "capability"),
                                                           ("test_root", "mark.skipif", "root")], fine
    # and an allow-list entry with a reason lets exactly its site through
    bad, _ = judge(sites, {("tests/test_bare.py", "test_unfinished", "skip"): "a reason"})
    assert "tests/test_bare.py:5 (test_unfinished): skip" not in bad and len(bad) == 5
