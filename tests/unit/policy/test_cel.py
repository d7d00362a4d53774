"""CelExpr: Tetragon's CEL subset, type-checked and compiled to postfix code."""

from __future__ import annotations

import pytest

from bpfguard.policy import PolicyError, load_policy_text
from bpfguard.policy.cel import CelError, compile_cel
from bpfguard.policy.compiler import compile_policy

TYPES = {0: "int32", 1: "int32", 2: "uint", 3: "uint32", 4: "int"}


def _ops(text: str) -> list[tuple[str, int]]:
    ops, _ = compile_cel(text, TYPES.get)  # type: ignore[arg-type]
    return [(o.code, o.operand) for o in ops]


def test_tetragons_example_compiles_to_postfix() -> None:
    assert _ops("arg1 == int32(-1) && arg0 >= int32(1024)") == [
        ("ARG", 1), ("CONST", 1), ("NEG", 0), ("I32", 0), ("EQ", 0),
        ("ARG", 0), ("CONST", 1024), ("I32", 0), ("GE", 0), ("AND", 0)]


def test_32_bit_values_are_computed_in_32_bits() -> None:
    # as Tetragon: a uint32's not() and sums wrap at 32 bits
    assert _ops("not(arg3) == uint32(4294967294u)") == [
        ("ARG", 3), ("BNOT", 0), ("U32", 0), ("CONST", 4294967294), ("U32", 0), ("EQ", 0)]
    assert _ops("arg0 + int32(1) < arg0") == [
        ("ARG", 0), ("CONST", 1), ("I32", 0), ("ADD", 0), ("I32", 0), ("ARG", 0), ("LT", 0)]
    assert _ops("-arg4 > 0") == [("ARG", 4), ("NEG", 0), ("CONST", 0), ("GT", 0)]


def test_unsigned_comparisons_and_bitwise_functions() -> None:
    assert _ops("arg2 < 7u") == [("ARG", 2), ("CONST", 7), ("LTU", 0)]
    assert _ops("!(and(arg4, 0x10) != 0) || xor(arg4, not(arg4)) == 3") == [
        ("ARG", 4), ("CONST", 16), ("BAND", 0), ("CONST", 0), ("NE", 0), ("NOT", 0),
        ("ARG", 4), ("ARG", 4), ("BNOT", 0), ("BXOR", 0), ("CONST", 3), ("EQ", 0), ("OR", 0)]
    assert _ops("uint(arg4) + 1u > arg2") == [
        ("ARG", 4), ("CONST", 1), ("ADD", 0), ("ARG", 2), ("GTU", 0)]


def test_the_stack_depth_is_counted() -> None:
    _, depth = compile_cel("arg4 + (arg4 + (arg4 - arg4)) > 0", TYPES.get)  # type: ignore[arg-type]
    assert depth == 4


@pytest.mark.parametrize(("text", "why"), [
    ("arg0 == 1u", "no matching overload"),
    ("arg0 == 1", "x == y of an int32 and an int: no matching overload"),
    ("arg4 + arg2 > 0", "no matching overload"),
    ("arg4 == 010", "is not a CEL expression"),
    ("arg7 > 0", "arg7: the hook's args have no integer entry 7"),
    ("arg0", "not a condition"),
    ("size(arg0) > 1", "size(): not a function"),
    ("arg0 >", "is not a CEL expression"),
    ("-arg2 > 1u", "-x of a uint"),
    ("arg4 > 1 && 3", "&& of an int"),
    ("99999999999999999999 > arg4", "does not fit a 64-bit int"),
])
def test_what_is_refused_says_why(text: str, why: str) -> None:
    with pytest.raises(CelError, match=why.replace("(", r"\(").replace(")", r"\)")):
        compile_cel(text, TYPES.get)  # type: ignore[arg-type]


HEAD = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: c\nspec:\n"


def _policy(values: str) -> str:
    return HEAD + (
        "  kprobes:\n"
        "  - call: sys_lseek\n"
        "    args:\n"
        "    - {index: 2, type: int, label: whence}\n"
        "    - {index: 0, type: nop}\n"
        "    - {index: 1, type: long, label: offset}\n"
        "    selectors:\n"
        "    - matchArgs:\n"
        "      - operator: CelExpr\n"
        f"        values: {values}\n")


def test_a_filters_expressions_are_ored_and_name_args_entries() -> None:
    c = compile_policy(load_policy_text("c.yaml", _policy('["arg0 == int32(0)", "arg2 > 1000"]')),
                       ns_root="/nonexistent")
    [f] = c.hooks[0].selectors[0].filters
    assert f.op == "CEL"
    [(s, program)] = c.sets.cel
    # args entry 2 is the compiled argument 1: the nop entry is not read
    assert s == f.set and program == (("ARG", 0), ("CONST", 0), ("I32", 0), ("EQ", 0),
                                      ("ARG", 1), ("CONST", 1000), ("GT", 0), ("OR", 0))


def test_a_bad_expression_is_the_policys_error_with_its_line() -> None:
    with pytest.raises(PolicyError) as info:
        compile_policy(load_policy_text("c.yaml", _policy('["arg1 > 0"]')),
                       ns_root="/nonexistent")
    [p] = info.value.problems
    assert p.code == "POLICY_BAD_VALUE" and "arg1: the hook's args have no integer entry 1" \
        in p.message
    too_long = " || ".join(["arg2 == 1"] * 12)
    with pytest.raises(PolicyError, match="the engine runs 32"):
        compile_policy(load_policy_text("c.yaml", _policy(f'["{too_long}"]')),
                       ns_root="/nonexistent")


