"""The GitHub Actions workflows users copy from ``ci/github/`` to
``.github/workflows/``.

actionlint (built from its Go module, pinned in ``harness/tools.py``, into the
binary cache by the set-up step, ``make setup``; never built here) lints them
in a throwaway repository tree, the way GitHub will see them, with shellcheck
over every ``run:`` script; it must find nothing, and it must find the faults
in a deliberately broken workflow. Then the shape the project promises is
checked on the parsed YAML: the nightly matrix, a timeout on every job that
leaves the teardown its time, teardown and uploads that always run, the
janitor after the matrix and on a schedule, the local-kube cells as root on
the runner, every pytest run of a workflow with ``--no-skips`` (and
``--no-skips`` really failing a run with a skip), the same for every pytest
step of ``.ci/run``, ``id-token: write`` only where OIDC is used, pinned
actions, commands that name only options, targets, extras and paths that
exist, and no AGPL system (the project never builds or deploys one).
"""

from __future__ import annotations

import functools
import itertools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from harness.binaries import BinaryResolver, BinarySpec, cache_dir
from harness.errors import StackproofError
from harness.tools import ACTIONLINT_VERSION, resolve_tool

from .conftest import REPO, run_cli
from .test_no_skip import run_pytest

CI_DIR = REPO / "ci" / "github"
WORKFLOWS = {p.name: p for p in sorted(CI_DIR.glob("*.yml"))}

CLOUDS = {"aws", "gcp"}
NIGHTLY_SUITES = {"conformance", "durability", "upgrade", "load-smoke"}
OIDC_ACTIONS = ("aws-actions/configure-aws-credentials", "google-github-actions/auth")
CLOUD_ENV = {  # what each cloud's commands read from the environment
    "aws": {"AWS_REGION", "STACKPROOF_OWNER"},
    "gcp": {"STACKPROOF_GCP_PROJECT", "STACKPROOF_GCP_LOCATIONS", "STACKPROOF_OWNER"},
}
CONFORMANCE = ["suites/smoke", "suites/metrics", "suites/logs", "suites/security", "suites/otlp", "suites/alerting"]

SHELLCHECK = BinarySpec(name="shellcheck", system_names=("shellcheck",))


# -- loading ---------------------------------------------------------------------

def _load(path: Path) -> dict:
    doc = _load_text(path.read_text())
    assert isinstance(doc, dict), f"{path.name}: not a mapping"
    return doc


def _load_text(text: str) -> dict:
    doc = yaml.safe_load(text)
    if True in doc:  # YAML 1.1 reads the key `on` as a boolean
        doc["on"] = doc.pop(True)
    return doc


@functools.cache
def _docs() -> dict[str, dict]:
    # loaded by the tests, not at import: a workflow that is not YAML fails them, not the collection
    return {name: _load(path) for name, path in WORKFLOWS.items()}


def _jobs(docs: dict[str, dict] | None = None):
    for name, doc in (_docs() if docs is None else docs).items():
        for job_id, job in doc["jobs"].items():
            yield name, job_id, job


def _uses(step: dict) -> str:
    return step.get("uses", "").split("@")[0]


def _is_always(cond) -> bool:
    return str(cond).strip().removeprefix("${{").removesuffix("}}").strip() == "always()"


def _env(doc: dict, job: dict) -> dict:
    return {**doc.get("env", {}), **job.get("env", {})}


# -- commands in run: scripts ----------------------------------------------------

@dataclass
class Command:
    where: str  # file, job and step, for messages
    tool: str  # pytest | stackproof | make | pip
    args: list[str]
    workflow: str
    job: dict
    step: dict
    as_root: list[str]  # the `sudo ... env ...` words before it, if any


_CONTROL = {";", "&&", "||", "|", "&", "(", ")", ";;"}
_KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "!", "{", "}", "time", "exec"}


def _simple_commands(script: str) -> list[list[str]]:
    """The simple commands of a bash script, word-split as bash would (near enough);
    ``"${name[@]}"`` is replaced by everything the script puts into the array."""
    out = []
    script = script.replace("\\\n", " ")
    arrays: dict[str, list[str]] = {}
    for name, words in re.findall(r"\b([A-Za-z_]\w*)\+?=\(([^)]*)\)", script):
        arrays.setdefault(name, []).extend(shlex.split(words))
    for line in script.splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=";&|()")
        lex.whitespace_split = True
        tokens = []
        for tok in lex:
            m = re.fullmatch(r"\$\{([A-Za-z_]\w*)\[@\]\}", tok)
            tokens += arrays.get(m.group(1), []) if m else [tok]
        current: list[str] = []
        for tok in tokens + [";"]:
            if tok in _CONTROL:
                while current and (current[0] in _KEYWORDS or re.match(r"^[A-Za-z_]\w*=", current[0])):
                    current.pop(0)
                if current:
                    out.append(current)
                current = []
            else:
                current.append(tok)
    return out


def _as_root(words: list[str]) -> tuple[list[str], list[str]]:
    """``sudo [-E] [env [NAME=value ...]] CMD ...`` -> (the prefix, ``CMD ...``)."""
    if not words or words[0] != "sudo":
        return [], words
    i = 1
    while i < len(words) and words[i].startswith("-"):
        i += 1
    if i < len(words) and words[i] == "env":
        i += 1
        while i < len(words) and re.match(r"^[A-Za-z_]\w*=", words[i]):
            i += 1
    return words[:i], words[i:]


@functools.cache
def _commands() -> list[Command]:
    return _commands_in(_docs())


def _commands_in(docs: dict[str, dict]) -> list[Command]:
    found = []
    for name, job_id, job in _jobs(docs):
        for step in job.get("steps", []):
            if "run" not in step:
                continue
            where = f"{name} job {job_id!r} step {step.get('name', step['run'][:30])!r}"
            for words in _simple_commands(step["run"]):
                root, words = _as_root(words)
                if not words:
                    continue
                prog = Path(words[0]).name
                if prog in ("python", "python3") and words[1:3] == ["-m", "pytest"]:
                    found.append(Command(where, "pytest", words[3:], name, job, step, root))
                elif prog in ("python", "python3") and words[1:3] == ["-m", "pip"]:
                    found.append(Command(where, "pip", words[3:], name, job, step, root))
                elif prog in ("pytest", "stackproof", "make"):
                    found.append(Command(where, prog, words[1:], name, job, step, root))
    return found



def _help_options(help_text: str) -> tuple[set[str], dict[str, set[str]]]:
    """Option names and the choices of options that have them, from --help output
    (pytest's or argparse's: the option column of lines that start with '-')."""
    names, choices = set(), {}
    for line in help_text.splitlines():
        spec = re.split(r"\s{2,}", line.strip())[0]
        if not spec.startswith("-"):
            continue
        for opt in re.findall(r"(?:^|[\s,])(--?[A-Za-z][\w-]*)", spec):
            names.add(opt)
        for opt, values in re.findall(r"(--[\w-]+)[= ]\{([^}]*)\}", spec):
            choices[opt] = set(values.split(","))
    return names, choices


def _normal(opt: str) -> str:
    # pytest's help shows one of '--junitxml' and '--junit-xml' (the longer): compare without inner dashes
    return opt if not opt.startswith("--") else "--" + opt[2:].replace("-", "")


def _options_used(args: list[str]) -> list[str]:
    return [a.split("=", 1)[0] for a in args if a.startswith("-") and not a.startswith("-$")]


def _values(c: Command, value: str) -> set[str]:
    """What an argument can be: itself, or for $PROVIDER what the job sets it from."""
    if value != "$PROVIDER":
        assert not value.startswith("$"), f"{c.where}: cannot tell what {value} holds"
        return {value}
    source = c.job["env"]["PROVIDER"]
    if source == "${{ matrix.provider }}":
        return set(c.job["strategy"]["matrix"]["provider"])
    assert source == "${{ inputs.provider }}" and "inputs.provider != 'local'" in c.job["if"], (c.where, source)
    return set(_docs()[c.workflow]["on"]["workflow_dispatch"]["inputs"]["provider"]["options"]) - {"local"}


def _check_choices(c: Command, args: list[str], choices: dict[str, set[str]], normal=lambda o: o) -> int:
    """Values given to options that take one of a set of choices are among them."""
    by_name = {normal(o): v for o, v in choices.items()}
    checked = 0
    for i, arg in enumerate(args):
        opt, eq, value = arg.partition("=")
        if normal(opt) in by_name:
            value = value if eq else args[i + 1]
            bad = _values(c, value) - by_name[normal(opt)]
            assert not bad, f"{c.where}: {opt} does not take {sorted(bad)} (only {sorted(by_name[normal(opt)])})"
            checked += 1
    return checked


# -- fixtures ----------------------------------------------------------------------

def cached_actionlint() -> Path:
    """actionlint from the binary cache, where the set-up step (``make setup``) builds it: a
    build here would fetch Go modules, and the tests run behind the network guard."""
    try:
        return resolve_tool("actionlint", build=False).path
    except StackproofError:
        pytest.fail(f"actionlint {ACTIONLINT_VERSION} is not in the binary cache ({cache_dir()}): "
                    "the set-up step builds it, run 'make setup'", pytrace=False)


@pytest.fixture(scope="session")
def actionlint() -> Path:
    path = cached_actionlint()
    out = subprocess.run([str(path), "-version"], capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines()[0] == ACTIONLINT_VERSION, out.stdout
    return path


def test_actionlint_missing_from_the_cache_fails_in_one_line_naming_the_set_up_step(tmp_path, monkeypatch):
    monkeypatch.setenv("STACKPROOF_CACHE", str(tmp_path))
    monkeypatch.delenv("STACKPROOF_BIN_ACTIONLINT", raising=False)
    with pytest.raises(pytest.fail.Exception) as exc:
        cached_actionlint()
    assert str(exc.value) == (f"actionlint {ACTIONLINT_VERSION} is not in the binary cache ({tmp_path}): "
                              "the set-up step builds it, run 'make setup'")
    assert not (tmp_path / "build").exists(), "nothing was built"


@pytest.fixture(scope="session")
def shellcheck() -> Path:
    # passed to actionlint explicitly: without it actionlint skips shellcheck silently
    return BinaryResolver().resolve(SHELLCHECK, None).path


def _lint(actionlint: Path, shellcheck: Path, root: Path, files: dict[str, str]) -> list[dict]:
    """actionlint over ``files`` placed in a repository tree of their own, as
    .github/workflows/NAME: only inside a repository (.git and .github/workflows)
    does actionlint follow calls between workflows (``uses: ./.github/workflows/x.yml``)."""
    wf = root / ".github" / "workflows"
    wf.mkdir(parents=True)
    (root / ".git").mkdir()
    for name, text in files.items():
        (wf / name).write_text(text)
    proc = subprocess.run([str(actionlint), "-no-color", f"-shellcheck={shellcheck}", "-format", "{{json .}}",
                           *(f".github/workflows/{n}" for n in files)],
                          cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), f"actionlint failed to run (exit {proc.returncode}): {proc.stderr}"
    findings = json.loads(proc.stdout or "[]")
    assert (proc.returncode == 1) == bool(findings), (proc.returncode, proc.stdout, proc.stderr)
    return findings


def _show(findings: list[dict]) -> str:
    return "\n".join(f"{f['filepath']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings)


# -- actionlint --------------------------------------------------------------------

def test_the_workflows_are_there():
    assert set(WORKFLOWS) == {"pull-request.yml", "nightly.yml", "release-gate.yml", "janitor.yml"}


def test_actionlint_finds_nothing(actionlint, shellcheck, tmp_path):
    findings = _lint(actionlint, shellcheck, tmp_path, {n: p.read_text() for n, p in WORKFLOWS.items()})
    assert not findings, "actionlint:\n" + _show(findings)


BROKEN = """\
name: broken on purpose
on: push
permissions: {}
jobs:
  build:
    runs-on: ubuntu-24.04
    timeout-minutes: 10
    needs: no-such-job
    steps:
      - uses: actions/checkout@v2
      - uses: actions/upload-artifact@v7
        with: {nme: results}
      - run: echo "${{ matrix.no_such_key }}"
      - run: |
          for f in $(ls results); do cat $f; done
"""


def test_actionlint_reports_a_broken_workflow(actionlint, shellcheck, tmp_path):
    findings = _lint(actionlint, shellcheck, tmp_path, {"broken.yml": BROKEN})
    kinds = {f["kind"] for f in findings}
    messages = _show(findings)
    assert {"job-needs", "action", "expression", "shellcheck"} <= kinds, messages
    assert 'needs job "no-such-job"' in messages
    assert '"actions/checkout@v2" action is too old' in messages
    assert 'input "nme" is not defined' in messages and 'missing input "path"' in messages
    assert "SC2045" in messages  # iterating over ls output: shellcheck really ran


def test_actionlint_follows_the_nightly_call_into_the_janitor(actionlint, shellcheck, tmp_path):
    findings = _lint(actionlint, shellcheck, tmp_path, {"nightly.yml": WORKFLOWS["nightly.yml"].read_text()})
    assert [f["kind"] for f in findings] == ["workflow-call"], _show(findings)
    assert "janitor.yml" in findings[0]["message"]


# -- the shape of the workflows ----------------------------------------------------

def test_every_workflow_says_what_it_is_for_and_where_it_goes():
    for name, path in WORKFLOWS.items():
        header = list(itertools.takewhile(lambda line: line.startswith("#"), path.read_text().splitlines()))
        assert len(header) >= 2, f"{name}: no comment at the top saying what it is for"
        assert "Copy to .github/workflows/" in " ".join(header), f"{name}: header does not say where it goes"


# AGPL-licensed systems: stackproof never builds, caches or deploys them (they can
# only be a target a user already runs), so no workflow names one
AGPL = ("loki", "mimir", "grafana", "tempo", "k6")


def test_the_workflows_name_no_agpl_system():
    pattern = re.compile(rf"\b({'|'.join(AGPL)})\b", re.IGNORECASE)
    assert pattern.search("builds Loki v3 and caches grafana/k6")  # the pattern sees them
    for name, path in WORKFLOWS.items():
        found = sorted({m.group(0).lower() for m in pattern.finditer(path.read_text())})
        assert not found, f"{name} names {', '.join(found)}: AGPL, never built or deployed by stackproof"


def _suite_jobs(doc: dict) -> dict[str, dict]:
    return {jid: j for jid, j in doc["jobs"].items() if "suite" in j.get("strategy", {}).get("matrix", {})}


def _matrix_job(doc: dict) -> tuple[str, dict]:
    """The cloud matrix: providers by suites."""
    found = [(jid, j) for jid, j in _suite_jobs(doc).items() if "provider" in j["strategy"]["matrix"]]
    assert len(found) == 1, [jid for jid, _ in found]
    return found[0]


def _what_runs(c: Command) -> list[str]:
    """The suites a command runs: its suites/ paths, or ``load <profile>``."""
    if c.tool == "stackproof" and c.args[:1] == ["load"]:
        return ["load", c.args[c.args.index("--profile") + 1]]
    return [a for a in c.args if a.startswith("suites/")]


def test_nightly_matrix_is_exactly_clouds_and_local_kube_by_suites():
    doc = _docs()["nightly.yml"]
    assert "schedule" in doc["on"]
    _, job = _matrix_job(doc)
    matrix = job["strategy"]["matrix"]
    assert set(matrix) == {"provider", "suite"}, "no include/exclude or other axes: the product is the matrix"
    assert sorted(matrix["provider"]) == sorted(CLOUDS) and len(matrix["provider"]) == 2
    assert sorted(matrix["suite"]) == sorted(NIGHTLY_SUITES) and len(matrix["suite"]) == 4
    assert job["strategy"].get("fail-fast") is False, "one failing cell must not cancel the others' teardown"
    # the local-kube column: a job of its own (no credentials, no janitor), the same suites
    jobs = _suite_jobs(doc)
    assert set(jobs) == {"cloud", "local-kube"}, set(jobs)
    lk = jobs["local-kube"]
    assert lk["strategy"]["matrix"] == {"suite": matrix["suite"]}, "the same suites as the cloud cells"
    assert lk["strategy"].get("fail-fast") is False
    by_suite = {}
    for job_id in ("cloud", "local-kube"):
        for s in jobs[job_id]["steps"]:
            m = re.fullmatch(r"\s*matrix\.suite\s*==\s*'([\w-]+)'\s*", str(s.get("if", "")))
            if m:
                runs = [_what_runs(c) for c in _commands() if c.job is jobs[job_id] and c.step is s]
                by_suite.setdefault(m.group(1), {})[job_id] = runs
    assert set(by_suite) == NIGHTLY_SUITES
    for suite, runs in by_suite.items():
        assert runs["cloud"] and runs["cloud"] == runs["local-kube"], f"{suite}: {runs}"  # the same suites


def test_local_kube_cells_run_as_root_on_the_runner_without_any_cloud():
    doc = _docs()["nightly.yml"]
    job = doc["jobs"]["local-kube"]
    assert "RUN_ID" not in job.get("env", {}) and "PROVIDER" not in job.get("env", {})
    assert job.get("permissions") == {"contents": "read"}, "no id-token: nothing to sign in to"
    assert not [s for s in job["steps"] if _uses(s) in OIDC_ACTIONS]
    assert not [s for s in job["steps"] if "janitor" in s.get("run", "")], "the janitor is for clouds only"
    mine = [c for c in _commands() if c.job is job]
    setup = [c for c in mine if c.tool == "make"]
    assert [c.args for c in setup] == [["setup"]] and not setup[0].as_root  # the venv is the runner user's
    suites = [c for c in mine if c.tool == "pytest" or c.args[:1] == ["load"]]
    assert len(suites) == len(NIGHTLY_SUITES)
    for c in suites:
        i = c.args.index("--provider")
        assert c.args[i + 1] == "local-kube", c.where
        # as root, keeping the environment and the runner's PATH (go, the venv's tools)
        assert c.as_root == ["sudo", "-E", "env", "PATH=$PATH"], (c.where, c.as_root)
        assert "--run-id" not in c.args, c.where  # nothing to sweep by
    # the steps before the suites run as the runner's user; a step after them hands the results back
    steps = job["steps"]
    last_suite = max(i for i, s in enumerate(steps) if any(c.step is s for c in suites))
    chown = [i for i, s in enumerate(steps) if "chown" in s.get("run", "")]
    uploads = [i for i, s in enumerate(steps) if _uses(s) == "actions/upload-artifact"]
    assert len(chown) == 1 and last_suite < chown[0] < min(uploads)
    assert _is_always(steps[chown[0]].get("if"))
    for i, s in enumerate(steps):
        if "sudo" in s.get("run", "") and i != chown[0]:
            assert any(c.step is s for c in suites), f"{s.get('name')!r}: only the suites run as root"


def _gated_runs(commands: list[Command]) -> list[Command]:
    return [c for c in commands if c.workflow in ("nightly.yml", "release-gate.yml") and c.tool == "pytest"]


def _skips_allowed(commands: list[Command]) -> list[str]:
    """The pytest runs of the nightly and the gate that would pass on skips (no --no-skips)."""
    return [f"{c.where}: python -m pytest {' '.join(c.args)}" for c in _gated_runs(commands)
            if "--no-skips" not in c.args]


def test_every_pytest_run_of_the_nightly_and_the_gate_fails_on_skips():
    """A cell whose suite skipped (a capability the provider should have given its platform,
    an upgrade that did not run) must not pass: every pytest step of the nightly (conformance,
    durability, upgrade; on the clouds and on local-kube) and of the gate passes --no-skips."""
    runs = _gated_runs(_commands())
    job_of = {id(job): job_id for _, job_id, job in _jobs()}
    cells = {(c.workflow, job_of[id(c.job)], c.args[0]) for c in runs}
    assert cells == {(w, j, s) for w, j in (("nightly.yml", "cloud"), ("nightly.yml", "local-kube"))
                     for s in ("suites/smoke", "suites/durability", "suites/upgrade")} | {
        ("release-gate.yml", "local", "suites/upgrade"), ("release-gate.yml", "cloud", "suites/upgrade")}, cells
    assert _skips_allowed(_commands()) == []
    # and no step runs pytest some other way the check above would miss
    for name in ("nightly.yml", "release-gate.yml"):
        for _, job_id, job in (j for j in _jobs() if j[0] == name):
            for s in job.get("steps", []):
                if "pytest" in s.get("run", ""):
                    assert any(c.step is s for c in runs), f"{name} {job_id} {s.get('name')!r}"


def test_a_cell_without_no_skips_is_found():
    """The check above on a stand-in nightly whose durability cell lost --no-skips."""
    broken = _load_text(WORKFLOWS["nightly.yml"].read_text().replace(
        "python -m pytest suites/durability --no-skips", "python -m pytest suites/durability", 1))
    found = _skips_allowed(_commands_in({"nightly.yml": broken}))
    assert len(found) == 1 and found[0].startswith("nightly.yml job 'cloud' step 'durability"), found
    assert "suites/durability --provider $PROVIDER" in found[0]


CI_RUN = REPO / ".ci" / "run"


def _ci_run_steps(script: str) -> list[list[str]]:
    """The pytest steps of ``.ci/run``: its ``run_pytest ARGS`` calls."""
    return [w[1:] for w in _simple_commands(script) if w[0] == "run_pytest" and w[1:2] != ["()"]]  # not its definition


def _ci_run_skips_allowed(script: str) -> list[str]:
    return [" ".join(args) for args in _ci_run_steps(script) if "--no-skips" not in args]


def test_every_pytest_step_of_ci_run_fails_on_skips_and_runs_as_typed():
    """``make test`` (.ci/run): every pytest step runs on a target a provider made (the local
    provider, a platform of its own for durability and load, local-kube), so every one passes
    --no-skips, the harness's own tests too (CI runs as root); and no step needs a plugin a user
    would not type (the load suite runs as ``pytest suites/load``)."""
    script = CI_RUN.read_text()
    steps = _ci_run_steps(script)
    assert [a[0] for a in steps] == ["tests", "suites/durability", "suites/load", "suites/smoke", "suites/upgrade"]
    assert _ci_run_skips_allowed(script) == []
    assert [a for a in steps if "-p" in a] == []
    # nothing runs pytest past run_pytest (its own body passes "$@" on)
    direct = [w for w in _simple_commands(script) if "pytest" in w and w[0] != "run_pytest"]
    assert direct == [[".venv/bin/python", "-m", "pytest", "$@"]], direct


def test_a_ci_run_step_without_no_skips_is_found():
    broken = CI_RUN.read_text().replace("run_pytest suites/load --no-skips", "run_pytest suites/load")
    assert _ci_run_skips_allowed(broken) == ["suites/load --timeout=600 --junitxml=$RESULTS/load-junit.xml"]


def test_no_skips_fails_a_pytest_run_that_skipped(tmp_path):
    """What the workflows rely on: --no-skips really turns a run with a skip into a
    failure that names the skipped test; without it the same run passes."""
    (tmp_path / "test_gate.py").write_text(
        "import pytest\n\n\ndef test_upgraded():\n    pass\n\n\n"
        "def test_not_upgraded():\n    pytest.skip('no restart capability')\n")
    plain = run_pytest(tmp_path, "test_gate.py")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "test_not_upgraded" not in plain.stdout.replace("SKIPPED", "")  # reported only as a skip
    gate = run_pytest(tmp_path, "test_gate.py", "--no-skips")
    assert gate.returncode == 1, gate.stdout + gate.stderr
    named = [ln for ln in gate.stdout.splitlines() if ln.startswith("stackproof: --no-skips:")]
    assert named == ["stackproof: --no-skips: 1 test skipped: test_gate.py::test_not_upgraded"], gate.stdout


def test_every_job_has_a_timeout():
    for name, job_id, job in _jobs():
        if "uses" in job:  # a reusable workflow: its own jobs carry the timeouts
            called = job["uses"].removeprefix("./.github/workflows/")
            assert called in WORKFLOWS, f"{name} job {job_id!r} calls {job['uses']}, not one of ci/github/"
            continue
        t = job.get("timeout-minutes")
        assert isinstance(t, int) and 0 < t <= 360, f"{name} job {job_id!r}: timeout-minutes is {t!r}"


def _cloud_jobs():
    """Jobs that provision in a cloud under a run id."""
    for name, job_id, job in _jobs():
        if "RUN_ID" in job.get("env", {}):
            yield name, job_id, job


def test_cloud_jobs_tear_down_their_run_always_and_last():
    cloud = list(_cloud_jobs())
    assert {(n, j) for n, j, _ in cloud} == {("nightly.yml", "cloud"), ("release-gate.yml", "cloud")}
    for name, job_id, job in cloud:
        steps = job["steps"]
        teardown = [i for i, s in enumerate(steps) if re.search(r"\bstackproof janitor\b", s.get("run", ""))]
        assert len(teardown) == 1, f"{name} {job_id}: one teardown step"
        step = steps[teardown[0]]
        assert _is_always(step.get("if")), f"{name} {job_id}: teardown must run with if: always()"
        assert shlex.split(step["run"]) == ["stackproof", "janitor", "--provider", "$PROVIDER", "--run-id", "$RUN_ID"]
        suites = [i for i, s in enumerate(steps) if re.search(r"\bpytest\b|\bstackproof load\b", s.get("run", ""))]
        assert suites and max(suites) < teardown[0], f"{name} {job_id}: teardown comes after every suite"
        # what the suites provision is what the teardown deletes: the same provider and run id
        for i in suites:
            for words in _simple_commands(steps[i]["run"]):
                if "pytest" in words or words[:2] == ["stackproof", "load"]:
                    args = " ".join(words)
                    assert '--provider $PROVIDER' in args and "--run-id $RUN_ID" in args, (name, args)


def test_uploads_run_always_carry_allure_and_junit_and_nothing_else():
    for name, job_id, job in _jobs():
        steps = job.get("steps", [])
        uploads = [s for s in steps if _uses(s) == "actions/upload-artifact"]
        for s in uploads:
            assert _is_always(s.get("if")), f"{name} {job_id}: upload {s.get('name')!r} must run with if: always()"
            # never the workspace root: google-github-actions/auth writes its credentials file there
            for path in s["with"]["path"].split():
                assert path.lstrip("!").startswith("results/"), f"{name} {job_id}: uploads {path}"
        uploaded = " ".join(s["with"]["path"] for s in uploads)
        for words in (w for s in steps if "run" in s for w in _simple_commands(s["run"])):
            if words[:2] == ["make", "test"] or "pytest" in words or words[:2] == ["stackproof", "load"]:
                assert "results/" in uploaded, f"{name} {job_id}: results/ is not uploaded"
            for arg in words:
                opt, _, value = arg.partition("=")
                if opt in ("--alluredir", "--junitxml", "--stackproof-results"):
                    top = value.split("/")[0] + "/"
                    assert top in uploaded, f"{name} {job_id}: {arg} is written but not uploaded"
                    if opt == "--alluredir":
                        assert any(s["with"]["path"].strip().rstrip("/") == value.rstrip("/") for s in uploads), \
                            f"{name} {job_id}: the Allure results ({value}) are not an artifact of their own"


def _exclusive_key(step: dict) -> str | None:
    """Steps guarded by `X == 'value'` for one X: at most one of them runs."""
    m = re.fullmatch(r"\s*((?:matrix|inputs)\.[\w-]+)\s*==\s*'[^']*'\s*", str(step.get("if", "")))
    return m.group(1) if m else None


def test_cloud_jobs_leave_the_teardown_its_time():
    """Every step has a timeout and together they fit the job's: a suite that hangs
    is stopped by its step's timeout, and the teardown still runs inside the job's."""
    for name, job_id, job in _cloud_jobs():
        groups: dict[str, int] = {}
        total = 0
        for s in job["steps"]:
            t = s.get("timeout-minutes")
            assert isinstance(t, int) and t > 0, f"{name} {job_id}: step {s.get('name') or s.get('uses')!r} " \
                                                 "has no timeout-minutes"
            key = _exclusive_key(s)
            if key:
                groups[key] = max(groups.get(key, 0), t)
            else:
                total += t
        total += sum(groups.values())
        assert total <= job["timeout-minutes"], f"{name} {job_id}: steps may take {total} min, " \
                                                f"the job has {job['timeout-minutes']}"


def test_janitor_job_follows_the_matrix_whatever_happened():
    doc = _docs()["nightly.yml"]
    matrix_id, _ = _matrix_job(doc)
    janitors = [(jid, j) for jid, j in doc["jobs"].items() if j.get("uses", "").endswith("/janitor.yml")]
    assert len(janitors) == 1
    _, job = janitors[0]
    needs = job.get("needs")
    assert matrix_id in ([needs] if isinstance(needs, str) else needs)
    assert _is_always(job.get("if")), "the janitor runs whatever became of the matrix"
    assert job["uses"] == "./.github/workflows/janitor.yml"
    assert job["with"] == {"older-than": "6h"}

    janitor = _docs()["janitor.yml"]
    assert set(janitor["on"]) == {"schedule", "workflow_dispatch", "workflow_call"}
    assert janitor["on"]["workflow_call"]["inputs"]["older-than"]["default"] == "6h"
    (j,) = janitor["jobs"].values()
    assert sorted(j["strategy"]["matrix"]["provider"]) == sorted(CLOUDS)
    assert j["env"]["OLDER_THAN"] == "${{ inputs.older-than || '6h' }}"  # a scheduled run has no inputs
    sweeps = [w for s in j["steps"] if "run" in s
              for w in _simple_commands(s["run"]) if w[:2] == ["stackproof", "janitor"]]
    assert sweeps == [["stackproof", "janitor", "--provider", "$PROVIDER", "--older-than", "$OLDER_THAN"]]


def _fires_per_day(cron: str) -> int:
    minute, hour = cron.split()[:2]
    assert re.fullmatch(r"\d+", minute), f"{cron!r}: one minute of the hour"
    if hour == "*":
        return 24
    if m := re.fullmatch(r"\*/(\d+)", hour):
        return len(range(0, 24, int(m.group(1))))
    return len(hour.split(","))


def test_the_janitor_runs_on_a_schedule_more_often_than_its_age_limit():
    crons = [c["cron"] for c in _docs()["janitor.yml"]["on"]["schedule"]]
    assert crons and sum(map(_fires_per_day, crons)) >= 24 // 6, crons
    assert _fires_per_day("41 */3 * * *") == 8 and _fires_per_day("0 2,14 * * *") == 2


def _oidc(name: str, job: dict) -> bool:
    if "uses" in job:
        called = _docs()[job["uses"].removeprefix("./.github/workflows/")]
        return any(_oidc(name, j) for j in called["jobs"].values())
    return any(_uses(s) in OIDC_ACTIONS for s in job.get("steps", []))


def test_id_token_write_only_where_oidc_is_used_and_least_privilege_otherwise():
    for name, doc in _docs().items():
        assert "permissions" in doc, f"{name}: no workflow-level permissions (the default token can write)"
        assert isinstance(doc["permissions"], dict) and "id-token" not in doc["permissions"], \
            f"{name}: id-token belongs on the jobs that sign in, not the whole workflow"
        for job_id, job in doc["jobs"].items():
            perms = job.get("permissions", doc["permissions"])
            assert isinstance(perms, dict), f"{name} {job_id}: permissions {perms!r}"
            for scope, level in perms.items():
                if scope != "id-token":
                    assert level in ("read", "none"), f"{name} {job_id}: {scope}: {level}"
            assert (perms.get("id-token") == "write") == _oidc(name, job), \
                f"{name} {job_id}: id-token: {perms.get('id-token')!r} but OIDC used: {_oidc(name, job)}"


def test_clouds_get_their_configuration_from_the_environment():
    for name, doc in _docs().items():
        for job_id, job in doc["jobs"].items():
            env = _env(doc, job)
            for s in job.get("steps", []):
                cloud = {"aws-actions/configure-aws-credentials": "aws",
                         "google-github-actions/auth": "gcp"}.get(_uses(s))
                if cloud:
                    missing = CLOUD_ENV[cloud] - set(env)
                    assert not missing, f"{name} {job_id}: {cloud} without {sorted(missing)}"


def test_actions_are_pinned_to_a_major_version_and_the_same_everywhere():
    refs: dict[str, set[str]] = {}
    for name, job_id, job in _jobs():
        for s in job.get("steps", []):
            if "uses" not in s:
                continue
            m = re.fullmatch(r"([\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(v\d+|[0-9a-f]{40})", s["uses"])
            assert m, f"{name} {job_id}: {s['uses']!r} is not pinned to a major version"
            refs.setdefault(m.group(1), set()).add(m.group(2))
    assert {a: r for a, r in refs.items() if len(r) > 1} == {}


def test_every_workflow_has_a_concurrency_group():
    for name, doc in _docs().items():
        if "concurrency" in doc:
            continue
        for job_id, job in doc["jobs"].items():
            assert "concurrency" in job, f"{name} {job_id}: no concurrency group"


def test_no_expressions_inside_run_scripts():
    """Values reach scripts through env: (an input or a ref name in a script is a script injection)."""
    for name, job_id, job in _jobs():
        for s in job.get("steps", []):
            assert "${{" not in s.get("run", ""), f"{name} {job_id} {s.get('name')!r}: use env: for {s['run']!r}"


def _render(template: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{\{\s*([\w.-]+)\s*\}\}", lambda m: values[m.group(1)], template)


def test_run_ids_are_unique_per_cell_and_valid_cloud_labels():
    """Lowercase, starting with a letter, at most 40 characters (a GCP label value
    allows 63, a GKE cluster name 40), even with a 12-digit run number."""
    github = {"github.run_id": "999999999999", "github.run_attempt": "10"}
    nightly = _docs()["nightly.yml"]
    _, job = _matrix_job(nightly)
    m = job["strategy"]["matrix"]
    ids = {_render(job["env"]["RUN_ID"], {**github, "matrix.provider": p, "matrix.suite": s})
           for p, s in itertools.product(m["provider"], m["suite"])}
    assert len(ids) == 8
    gate = _docs()["release-gate.yml"]["jobs"]["cloud"]["env"]["RUN_ID"]
    ids |= {_render(gate, {**github, "inputs.provider": p}) for p in CLOUDS}
    for run_id in ids:
        assert re.fullmatch(r"[a-z][a-z0-9-]{0,39}", run_id), run_id


# -- the commands name only what exists ---------------------------------------------

def test_commands_are_read_from_scripts_as_bash_splits_them():
    script = """\
args=(--upgrade-from "$FROM")
if [ -n "$TO" ]; then args+=(--upgrade-to "$TO"); fi
rc=0
.venv/bin/python -m pytest suites/upgrade "${args[@]}" \\
  --alluredir=results/allure || rc=$?
X=1 stackproof janitor --provider "$PROVIDER" --run-id "$RUN_ID"; make setup build
"""
    assert [w for w in _simple_commands(script) if Path(w[0]).name in ("python", "stackproof", "make")] == [
        [".venv/bin/python", "-m", "pytest", "suites/upgrade", "--upgrade-from", "$FROM", "--upgrade-to", "$TO",
         "--alluredir=results/allure"],
        ["stackproof", "janitor", "--provider", "$PROVIDER", "--run-id", "$RUN_ID"],
        ["make", "setup", "build"],
    ]


def test_commands_were_found():
    tools = {c.tool for c in _commands()}
    assert tools == {"pytest", "stackproof", "make", "pip"}, tools
    conformance = [c for c in _commands() if c.tool == "pytest" and "suites/smoke" in c.args]
    assert len(conformance) == 2  # the nightly's cloud and local-kube cells
    for c in conformance:
        assert [a for a in c.args if a.startswith("suites/")] == CONFORMANCE, c.where
        assert c.args[c.args.index("-n") + 1] == "2", c.where


@pytest.fixture(scope="session")
def pytest_help() -> str:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_pytest_commands_name_only_options_paths_and_providers_that_exist(pytest_help):
    names, choices = _help_options(pytest_help)
    assert {"--provider", "--stackproof-results", "--alluredir", "-n", "--upgrade-from"} <= names  # parsed right
    known = {_normal(n) for n in names}
    choices_checked = 0
    for c in (c for c in _commands() if c.tool == "pytest"):
        for opt in _options_used(c.args):
            assert _normal(opt) in known, f"{c.where}: pytest has no option {opt}"
        for arg in c.args:
            if arg.startswith(("suites/", "tests/")):
                assert (REPO / arg).exists(), f"{c.where}: {arg} does not exist"
        choices_checked += _check_choices(c, c.args, choices, _normal)
    assert choices_checked >= 3  # --provider of the nightly's two pytest commands and the gate's cloud one
    literal = {c.args[c.args.index("--provider") + 1] for c in _commands() if "--provider" in c.args} - {"$PROVIDER"}
    assert literal == {"local-kube"}, literal
    providers = set()
    for name, job_id, job in _jobs():
        providers |= set(job.get("strategy", {}).get("matrix", {}).get("provider", []))
    for doc in _docs().values():
        dispatch = doc["on"].get("workflow_dispatch") or {}
        providers |= set(dispatch.get("inputs", {}).get("provider", {}).get("options", []))
    assert providers == {"local", "aws", "gcp"}
    providers |= literal
    assert providers <= choices["--provider"], choices["--provider"]


def test_stackproof_commands_name_only_subcommands_and_options_that_exist():
    used: dict[str, list[Command]] = {}
    for c in (c for c in _commands() if c.tool == "stackproof"):
        used.setdefault(c.args[0], []).append(c)
    assert set(used) == {"build", "janitor", "load"}, set(used)
    for sub, commands in used.items():
        proc = run_cli(sub, "--help", timeout=120)
        assert proc.returncode == 0, f"stackproof {sub} --help: {proc.stderr}"
        names, choices = _help_options(proc.stdout)
        for c in commands:
            for opt in _options_used(c.args[1:]):
                assert opt in names, f"{c.where}: stackproof {sub} has no option {opt}"
            _check_choices(c, c.args[1:], choices)


def test_make_targets_and_pip_extras_exist():
    targets = set(re.findall(r"^([\w.-]+)\s*:(?!=)", (REPO / "Makefile").read_text(), re.M))
    extras = set(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    makes = [c for c in _commands() if c.tool == "make"]
    assert makes
    for c in makes:
        for target in (a for a in c.args if not a.startswith("-") and "=" not in a):
            assert target in targets, f"{c.where}: the Makefile has no target {target}"
    pips = [c for c in _commands() if c.tool == "pip"]
    assert pips
    for c in pips:
        for arg in c.args:
            if m := re.fullmatch(r"\.\[([\w,-]+)\]", arg):
                missing = set(m.group(1).split(",")) - extras
                assert not missing, f"{c.where}: pyproject.toml has no extra {sorted(missing)}"
