"""The public surface: `bpfguard.__all__` resolves, lazily, and names the whole
exception tree errors.py draws."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import bpfguard
from bpfguard import errors


def test_every_public_name_resolves() -> None:
    for name in bpfguard.__all__:
        assert getattr(bpfguard, name) is not None, name
    assert set(bpfguard.__all__) <= set(dir(bpfguard))
    assert bpfguard.Alert.__module__ == "bpfguard.outputs.alert"


def test_the_exception_tree_is_exported_whole() -> None:
    drawn = set(re.findall(r"\b([A-Z]\w*(?:Error|Listening|Served))\b",
                           errors.__doc__ or ""))
    assert "BpfguardError" in drawn and "RulesError" in drawn and "ControlError" in drawn
    assert drawn <= set(bpfguard.__all__)
    exported = [getattr(bpfguard, n) for n in bpfguard.__all__
                if isinstance(getattr(bpfguard, n), type)
                and issubclass(getattr(bpfguard, n), BaseException)]
    assert {e.__name__ for e in exported} == drawn
    assert all(issubclass(e, bpfguard.BpfguardError) for e in exported)


def test_import_is_lazy_and_typed() -> None:
    # the command line's start-up imports bpfguard: it must not pull the parts in
    out = subprocess.run([sys.executable, "-c", "import sys, bpfguard; print(sorted(m for m in "
                          "sys.modules if m.startswith('bpfguard')))"],
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['bpfguard', 'bpfguard.errors']"
    assert (Path(bpfguard.__file__).parent / "py.typed").exists()


@pytest.mark.parametrize("module", ["bpfguard.policy.compiler", "bpfguard.sensors.sensors",
                                    "bpfguard.seccomp.hook", "bpfguard.containers.cache"])
def test_each_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    """pytest imports packages in its own order, which hides import cycles."""
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
