"""Every TracingPolicy of Tetragon's repository (examples, policy library,
docs, Go tests: tests/fixtures/tetragon/corpus, collected by
scripts/collect-tetragon-policies) either loads or is refused only for what
this machine lacks (POLICY_UNAVAILABLE: a program type, a kernel function, a
tracepoint, a binary). The exceptions are listed in corpus/EXPECTED:
policies Tetragon refuses too, and bpfguard's remaining gaps.

Three checks, so that the slow TCG guest of scripts/vmtest does only what
the host cannot: every policy is compiled against this kernel's BTF and
features (host and guest); every policy is loaded into the engine, verifier
and attach included (host); and in the guest, where kernel-function and LSM
hooks attach, one policy per distinct set of programs such a hook loads."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bpfguard.policy import PolicyError, load_policy
from bpfguard.policy.compiler import compile_policy
from bpfguard.policy.engine import PolicyEngine
from bpfguard.policy.loader import PolicyCode, render_problem
from bpfguard.policy.model import Option, Policy
from bpfguard.probe import features
from bpfguard.sensors import SensorSet

pytestmark = pytest.mark.kernel

CORPUS = Path(__file__).parents[1] / "fixtures" / "tetragon" / "corpus"
POLICIES = sorted(CORPUS.glob("*.yaml"))
EXPECTED: dict[str, dict[str, str]] = yaml.safe_load((CORPUS / "EXPECTED").read_text())
# One policy per set of programs a kernel-function or LSM hook loads (fentry,
# fentry+fexit, kprobe, fmod_ret, fmod_ret+fexit, lsm, lsm with imaHash), with
# and without resolve paths; test_guest_cover_covers_every_program_set keeps it whole.
GUEST_COVER = (
    "cve-2023-2640-overlayfs-ubuntu-a524de966a.yaml",  # fmod_ret + fexit
    "cve-2024-3094-xz-ssh-be898d5e57.yaml",  # fentry + fexit
    "example-decab36c64.yaml",  # fentry
    "hooks-3b4588af3f.yaml",  # lsm, resolve
    "hooks-5061c1f6b3.yaml",  # fentry, resolve
    "hooks-e846baa492.yaml",  # lsm
    "kprobe-amd64-test-f2bb3d9489.yaml",  # kprobe (pt_regs data)
    "lsm-bprm-check-613da358b3.yaml",  # lsm + imaHash
    "override-security-dee49db5be.yaml",  # fmod_ret
    "creds-capability-usage-9f6604408b.yaml",  # fentry + fexit, a socket (resolve)
    "security-socket-connect-block-others-1c5b05404c.yaml",  # fmod_ret, a socket
)


def _monitor(policy: Policy) -> Policy:
    """In monitor mode: the corpus's Sigkills and Overrides must not act on
    this machine's processes while the policy is loaded."""
    return dataclasses.replace(policy, options=(
        *(o for o in policy.options if o.name != "policy-mode"),
        Option("policy-mode", "monitor")))


def _judge(path: Path, problems: tuple[object, ...] | None) -> None:
    """Checks the outcome for `path` against corpus/EXPECTED: `problems` is
    None when the policy loaded."""
    verdict = EXPECTED.get(path.name, {})
    if problems is None:
        assert not verdict, f"{path.name} loads, but corpus/EXPECTED says {verdict}"
        return
    ours = [p for p in problems if getattr(p, "code", None) != PolicyCode.UNAVAILABLE]
    if "rejected" in verdict:
        return
    if "gap" in verdict:
        # bpfguard's own refusal says what EXPECTED says; refused for what
        # this kernel lacks alone, the gap shows on a kernel that has it
        if ours:
            said = [p.message for p in ours]  # type: ignore[attr-defined]
            for reason in verdict["gap"].split("; "):
                assert any(reason in m for m in said), (reason, said)
        return
    assert not ours, "\n".join(render_problem(p) for p in ours)  # type: ignore[arg-type]


def test_expected_names_corpus_policies() -> None:
    assert len(POLICIES) > 250
    assert sorted(set(EXPECTED) - {p.name for p in POLICIES}) == []
    for name, verdict in EXPECTED.items():
        assert list(verdict) in (["rejected"], ["gap"]), name
    assert set(GUEST_COVER) <= {p.name for p in POLICIES} - set(EXPECTED)


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_policy_compiles_or_is_refused_for_what_this_kernel_lacks(path: Path) -> None:
    try:
        compile_policy(_monitor(load_policy(path)), features=features())
    except PolicyError as exc:
        _judge(path, exc.problems)
        return
    _judge(path, None)


def test_gaps_show_on_a_kernel_with_every_program_type() -> None:
    # compiled for a kernel that has every program type (this kernel's BTF):
    # a gap entry that compiles is served now, and must leave EXPECTED
    served = []
    for name, verdict in EXPECTED.items():
        if "gap" not in verdict:
            continue
        try:
            compile_policy(_monitor(load_policy(CORPUS / name)), features=None)
        except PolicyError:
            continue  # (refused only for a function this BTF lacks: the guest tells)
        served.append(name)
    assert served == [], "served now: take them out of corpus/EXPECTED"


@pytest.fixture(scope="module")
def engine() -> Iterator[PolicyEngine]:
    """One started engine for the module (nobody reads its events: a full
    ring buffer only drops them)."""
    eng = PolicyEngine(features=features())
    with SensorSet(syscalls=(), extra=[eng]) as sensors:
        sensors.start()
        yield eng


def _load(engine: PolicyEngine, path: Path) -> None:
    try:
        policy = _monitor(load_policy(path))
        engine.add(policy)
    except PolicyError as exc:
        _judge(path, exc.problems)
        return
    engine.delete(policy.name)
    _judge(path, None)


@pytest.mark.host_covers
@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_policy_loads_into_the_engine(engine: PolicyEngine, path: Path) -> None:
    _load(engine, path)


@pytest.mark.parametrize("name", GUEST_COVER)
def test_kernel_function_policies_load_into_the_engine(engine: PolicyEngine,
                                                       name: str) -> None:
    _load(engine, CORPUS / name)


@pytest.mark.host_covers
def test_guest_cover_covers_every_program_set() -> None:
    def program_sets(path: Path) -> set[tuple[tuple[str, ...], bool]]:
        try:
            compiled = compile_policy(load_policy(path), features=None)
        except PolicyError:
            return set()
        return {(h.programs, any(a.steps for a in h.args))
                for h in compiled.hooks if h.kind == "FUNC"}

    everything = set().union(*(program_sets(p) for p in POLICIES if p.name not in EXPECTED))
    covered = set().union(*(program_sets(CORPUS / n) for n in GUEST_COVER))
    assert everything - covered == set()
