"""Tetragon's ``CelExpr`` argument filter, compiled for the kernel.

Tetragon evaluates a CEL expression over a hook's integer arguments in the
kernel; so does bpfguard, as a short postfix program the selector engine
runs (``bg_pol_cel`` in ``bpf/lib/selectors.bpf.h``). The language is the
part of CEL Tetragon documents: ``argN`` (the N-th entry of the hook's
``args``, from 0), integer literals (``7``, ``0x10``, ``7u``), ``+``, ``-``,
comparisons, ``&&``, ``||``, ``!``, the casts ``int32()`` and ``uint32()``,
``int()``/``uint()``, and the bitwise ``and()``, ``or()``, ``xor()``,
``not()``. Types are Tetragon's: an argument of 4 bytes or less is an
int32 or uint32, computed in 32 bits as Tetragon does, a wider one an int
or uint; a comparison or sum of two types is refused ("no matching
overload"), as CEL refuses it, so ``arg0 == int32(3)`` for an int argument.

lark parses; the type checking and the code are here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from lark import Lark, Token, Tree
from lark.exceptions import LarkError

__all__ = ["CelError", "CelOp", "compile_cel", "CEL_OPS"]

CEL_OPS: Final = {
    "ARG": 1, "CONST": 2, "ADD": 3, "SUB": 4, "NEG": 5, "BAND": 6, "BOR": 7, "BXOR": 8,
    "BNOT": 9, "I32": 10, "U32": 11, "EQ": 12, "NE": 13, "LT": 14, "LE": 15, "GT": 16,
    "GE": 17, "LTU": 18, "LEU": 19, "GTU": 20, "GEU": 21, "AND": 22, "OR": 23, "NOT": 24,
}
"""enum bg_pol_cel_code of bpf/include/bpfguard.h (checked against it by the engine)."""

_GRAMMAR: Final = r"""
?start: or_
?or_: and_ ("||" and_)*
?and_: rel ("&&" rel)*
?rel: sum (RELOP sum)?
?sum: unary (ADDOP unary)*
?unary: "!" unary -> not_
      | "-" unary -> neg
      | primary
?primary: ARG -> arg
        | UINT -> uint
        | INT -> int
        | NAME "(" [or_ ("," or_)*] ")" -> call
        | "(" or_ ")"
RELOP: "==" | "!=" | "<=" | ">=" | "<" | ">"
ADDOP: "+" | "-"
ARG.2: /arg[0-9]+\b/
UINT.2: /(0x[0-9a-fA-F]+|0|[1-9][0-9]*)[uU]/
INT: /0x[0-9a-fA-F]+|0|[1-9][0-9]*/
NAME: /[A-Za-z_][A-Za-z0-9_]*/
%ignore /\s+/
"""
_PARSER: Final = Lark(_GRAMMAR, parser="lalr")

# int/uint: 64 bits; int32/uint32: 32, kept cut to 32 after each sum or
# bitwise operation, as Tetragon computes them; values are held 64 bits wide,
# sign- or zero-extended, so comparisons are the 64-bit ones
Type = Literal["int", "uint", "int32", "uint32", "bool"]
_CUT: Final = {"int32": "I32", "uint32": "U32"}
_M64: Final = (1 << 64) - 1


class CelError(ValueError):
    """The expression is not one bpfguard can evaluate; the message says why."""


@dataclass(frozen=True)
class CelOp:
    """One instruction: its code (a key of CEL_OPS) and operand (an
    argument's compiled index for ARG, the 64-bit value for CONST)."""

    code: str
    operand: int = 0


@dataclass
class _Code:
    ops: list[CelOp]
    type: Type
    depth: int  # stack slots it needs


def _a(t: str) -> str:
    return f"an {t}" if t.startswith("int") else f"a {t}"


_REL: Final = {"==": "EQ", "!=": "NE", "<": "LT", "<=": "LE", ">": "GT", ">=": "GE"}


def compile_cel(text: str, arg_type: Callable[[int], Type | None]) -> tuple[list[CelOp], int]:
    """The postfix program of expression `text` and the stack depth it
    needs. `arg_type(n)` is the CEL type of ``argN`` (None: not an integer
    argument the engine reads). Raises CelError."""
    try:
        tree = _PARSER.parse(text)
    except LarkError as exc:
        raise CelError(f"{text!r} is not a CEL expression bpfguard reads: "
                       f"{str(exc).splitlines()[0]}") from None
    code = _gen(tree, arg_type)
    if code.type != "bool":
        raise CelError(f"{text!r} is {_a(code.type)}, not a condition (a comparison)")
    return code.ops, code.depth


def _gen(node: Tree[Token] | Token, arg_type: Callable[[int], Type | None]) -> _Code:
    def binary(a: _Code, b: _Code, op: str, out: Type) -> _Code:
        cut = [CelOp(_CUT[out])] if out in _CUT else []
        return _Code([*a.ops, *b.ops, CelOp(op), *cut], out, max(a.depth, b.depth + 1))

    def same(a: _Code, b: _Code, what: str) -> None:
        if a.type != b.type or a.type == "bool":
            raise CelError(f"{what} of {_a(a.type)} and {_a(b.type)}: no matching overload "
                           "(cast with int32(), uint32(), int() or uint())")

    if isinstance(node, Token):  # (a bare literal or name reaches here only via rules)
        raise CelError(f"unexpected {node!s}")
    kind = node.data
    kids = node.children
    if kind == "arg":
        n = int(str(kids[0])[3:])
        t = arg_type(n)
        if t is None:
            raise CelError(f"arg{n}: the hook's args have no integer entry {n} (argN is the "
                           "N-th entry of args, from 0; CelExpr reads integer arguments)")
        return _Code([CelOp("ARG", n)], t, 1)
    if kind in ("int", "uint"):
        raw = str(kids[0]).rstrip("uU")
        value = int(raw, 16) if raw[:2].lower() == "0x" else int(raw)
        if value > _M64 or (kind == "int" and value >= 1 << 63):
            raise CelError(f"{kids[0]!s} does not fit a 64-bit {kind}")
        return _Code([CelOp("CONST", value)], "uint" if kind == "uint" else "int", 1)
    if kind == "neg":
        a = _gen(kids[0], arg_type)
        if a.type not in ("int", "int32"):
            raise CelError(f"-x of {_a(a.type)}: no matching overload")
        cut = [CelOp(_CUT[a.type])] if a.type in _CUT else []
        return _Code([*a.ops, CelOp("NEG"), *cut], a.type, a.depth)
    if kind == "not_":
        a = _gen(kids[0], arg_type)
        if a.type != "bool":
            raise CelError(f"!x of {_a(a.type)}: no matching overload")
        return _Code([*a.ops, CelOp("NOT")], "bool", a.depth)
    if kind in ("or_", "and_"):
        parts = [_gen(k, arg_type) for k in kids]
        for p in parts:
            if p.type != "bool":
                raise CelError(f"{'||' if kind == 'or_' else '&&'} of {_a(p.type)}: no "
                               "matching overload")
        out = parts[0]
        for p in parts[1:]:
            out = binary(out, p, "OR" if kind == "or_" else "AND", "bool")
        return out
    if kind == "rel":
        a, op, b = _gen(kids[0], arg_type), str(kids[1]), _gen(kids[2], arg_type)
        if a.type == "bool" and b.type == "bool" and op in ("==", "!="):
            return binary(a, b, _REL[op], "bool")
        same(a, b, f"x {op} y")
        code = _REL[op] + ("U" if a.type in ("uint", "uint32") and op not in ("==", "!=")
                           else "")
        return binary(a, b, code, "bool")
    if kind == "sum":
        out = _gen(kids[0], arg_type)
        for i in range(1, len(kids), 2):
            b = _gen(kids[i + 1], arg_type)
            same(out, b, f"x {kids[i]!s} y")
            out = binary(out, b, "ADD" if str(kids[i]) == "+" else "SUB", out.type)
        return out
    if kind == "call":
        name = str(kids[0])
        args = [_gen(k, arg_type) for k in kids[1:] if k is not None]
        # int() and uint() take the 64 bits as they are (CEL's raise when
        # the value does not fit; Tetragon has neither)
        casts: dict[str, tuple[str, Type]] = {
            "int32": ("I32", "int32"), "uint32": ("U32", "uint32"), "int": ("", "int"),
            "uint": ("", "uint")}
        if name in casts:
            if len(args) != 1 or args[0].type == "bool":
                raise CelError(f"{name}() takes one integer")
            op, cast = casts[name]
            return _Code([*args[0].ops, *([CelOp(op)] if op else [])], cast, args[0].depth)
        bitwise = {"and": "BAND", "or": "BOR", "xor": "BXOR"}
        if name in bitwise:
            if len(args) != 2:
                raise CelError(f"{name}() takes two integers")
            same(args[0], args[1], f"{name}()")
            return binary(args[0], args[1], bitwise[name], args[0].type)
        if name == "not":
            if len(args) != 1 or args[0].type == "bool":
                raise CelError("not() takes one integer")
            t = args[0].type
            cut = [CelOp(_CUT[t])] if t in _CUT else []
            return _Code([*args[0].ops, CelOp("BNOT"), *cut], t, args[0].depth)
        raise CelError(f"{name}(): not a function of Tetragon's CelExpr (int32, uint32, int, "
                       "uint, and, or, xor, not)")
    raise CelError(f"unexpected {kind}")
