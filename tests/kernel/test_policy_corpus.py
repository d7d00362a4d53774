"""Every TracingPolicy of Tetragon's repository (examples, policy library,
docs, Go tests: tests/fixtures/tetragon/corpus, collected by
scripts/collect-tetragon-policies) either loads into the running engine,
verifier and attach included, or is refused only for what this machine
lacks (POLICY_UNAVAILABLE: a program type, a kernel function, a tracepoint,
a binary). The exceptions are listed in corpus/EXPECTED: policies Tetragon
refuses too, and bpfguard's remaining gaps. Run on the host and in the
guest kernel of scripts/vmtest, each with its own kernel's features."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from bpfguard.policy import PolicyError, load_policy
from bpfguard.policy.engine import PolicyEngine
from bpfguard.policy.loader import PolicyCode, render_problem
from bpfguard.policy.model import Option
from bpfguard.probe import features
from bpfguard.sensors import SensorSet

pytestmark = pytest.mark.kernel

CORPUS = Path(__file__).parents[1] / "fixtures" / "tetragon" / "corpus"
POLICIES = sorted(CORPUS.glob("*.yaml"))
EXPECTED: dict[str, dict[str, str]] = yaml.safe_load((CORPUS / "EXPECTED").read_text())


def test_expected_names_corpus_policies() -> None:
    assert len(POLICIES) > 250
    assert sorted(set(EXPECTED) - {p.name for p in POLICIES}) == []
    for name, verdict in EXPECTED.items():
        assert list(verdict) in (["rejected"], ["gap"]), name


@pytest.fixture(scope="module")
def engine() -> Iterator[PolicyEngine]:
    """One started engine for the module (nobody reads its events: a full
    ring buffer only drops them)."""
    eng = PolicyEngine(features=features())
    with SensorSet(syscalls=(), extra=[eng]) as sensors:
        sensors.start()
        yield eng


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.stem)
def test_policy_loads_or_is_refused_for_what_this_machine_lacks(
        engine: PolicyEngine, path: Path) -> None:
    verdict = EXPECTED.get(path.name, {})
    try:
        # in monitor mode: the corpus's Sigkill and Override must not act on
        # this machine's processes while the policy is loaded
        policy = load_policy(path)
        policy = dataclasses.replace(policy, options=(
            *(o for o in policy.options if o.name != "policy-mode"),
            Option("policy-mode", "monitor")))
        engine.add(policy)
    except PolicyError as exc:
        ours = [p for p in exc.problems if p.code != PolicyCode.UNAVAILABLE]
        if "rejected" in verdict:
            return
        if "gap" in verdict:
            assert ours, f"{path.name} is served now: take it out of corpus/EXPECTED"
            return
        assert not ours, "\n".join(render_problem(p) for p in ours)
        return
    engine.delete(policy.name)
    assert not verdict, f"{path.name} loads, but corpus/EXPECTED says {verdict}"
