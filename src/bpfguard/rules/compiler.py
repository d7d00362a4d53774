"""Conditions to Python closures, with Falco's comparison semantics.

- A field that cannot be extracted makes every comparison on it false,
  ``!=`` included; ``not`` then makes the negation true, as in Falco.
- A field standing for several values (``proc.aname`` without an index, the
  either-end network fields) matches if one of its values does.
- The right-hand side is parsed once, for the field's type: numbers for
  numeric fields, addresses and networks for network fields (``fd.snet in
  ("10.0.0.0/8")`` is network membership), ``true``/``false`` for booleans.
- ``regex`` is RE2 anchored at both ends (libsinsp's ANCHOR_BOTH); ``glob``
  is fnmatch without special meaning for ``/``; ``pmatch`` matches a path
  equal to, or under, one of the given prefixes; ``in`` and ``intersects``
  are set membership for single values.
"""

from __future__ import annotations

import base64
import fnmatch
import ipaddress
import posixpath
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import re2

from ..errors import ConfigError
from . import ast
from .event import RuleEvent
from .extract import AnyOf, Extractor, extractor, field_function
from .fields import FIELDS, FieldType

__all__ = ["ALL_TYPES", "Check", "CompileError", "Matcher", "OnError", "compile_condition",
           "compile_matcher", "event_types", "fields_used", "prepare", "specialize"]

Check = Callable[[RuleEvent], bool]

_STRING_OPS = {"contains", "icontains", "bcontains", "startswith", "bstartswith", "endswith",
               "glob", "iglob", "regex", "pmatch"}
_ORDER_OPS = {"<", "<=", ">", ">="}
_NUMERIC = {FieldType.INT, FieldType.PORT, FieldType.TIME, FieldType.DURATION}


class CompileError(ConfigError):
    """A condition that parses but cannot be evaluated (a type mismatch, a bad
    regex, ...). `pos` is the offset in the condition text."""

    def __init__(self, message: str, pos: int) -> None:
        self.pos = pos
        super().__init__(message)


# -- operands --------------------------------------------------------------------------

_TRANSFORMS: dict[str, tuple[Callable[[Any], Any], FieldType | None]] = {
    "tolower": (lambda v: v.lower() if isinstance(v, str) else v, FieldType.STR),
    "toupper": (lambda v: v.upper() if isinstance(v, str) else v, FieldType.STR),
    "b64": (lambda v: _b64(v), FieldType.STR),
    "basename": (lambda v: posixpath.basename(v) if isinstance(v, str) else v, FieldType.STR),
    "len": (lambda v: len(v) if isinstance(v, (str, list)) else None, FieldType.INT),
}


def _b64(v: Any) -> str | None:
    if not isinstance(v, str):
        return None
    try:
        return base64.b64decode(v, validate=False).decode(errors="replace")
    except ValueError:
        return None


def _operand(node: ast.Operand) -> tuple[Extractor, FieldType]:
    """The extractor of a field or transformed field, and its resulting type."""
    if isinstance(node, ast.FieldRef):
        return extractor(node), FIELDS[node.name].type
    inner, typ = _operand(node.operand)
    if node.name not in _TRANSFORMS:
        raise CompileError(f"unknown transformer {node.name!r}", node.pos)
    fn, out = _TRANSFORMS[node.name]
    if typ not in (FieldType.STR, FieldType.LIST) and node.name != "len":
        raise CompileError(f"transformer {node.name} applies to strings, not {typ.value}",
                           node.pos)

    def transformed(e: RuleEvent) -> Any:
        v = inner(e)
        if v is None:
            return None
        if isinstance(v, AnyOf):
            return AnyOf(x for x in map(fn, v) if x is not None)
        return fn(v)
    return transformed, out or typ


# -- right-hand values -------------------------------------------------------------------


def _convert(text: str, typ: FieldType, op: str, pos: int) -> Any:
    """The literal `text` as a value of the field's type."""
    if op in ("bcontains", "bstartswith"):
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise CompileError(f"{op} takes hex bytes, not {text!r}", pos) from None
    if op in _STRING_OPS:
        if typ not in (FieldType.STR, FieldType.LIST):
            raise CompileError(f"operator {op} applies to strings, not {typ.value} fields", pos)
        if op == "regex":
            try:
                return re2.compile(text)
            except re2.error as exc:
                raise CompileError(f"bad regex {text!r}: {exc}", pos) from None
        if op == "iglob":
            return text.lower()
        return text
    if typ in _NUMERIC:
        try:
            return int(text, 0)
        except ValueError:
            raise CompileError(f"{text!r} is not a number", pos) from None
    if typ is FieldType.BOOL:  # lowercase only, as libsinsp parses booleans
        if text not in ("true", "false"):
            raise CompileError(f"{text!r} is not true or false", pos)
        return text == "true"
    if typ in (FieldType.IP, FieldType.NET):
        try:
            if "/" in text:
                return ipaddress.ip_network(text, strict=False)
            return ipaddress.ip_address(text)
        except ValueError:
            raise CompileError(f"{text!r} is not an IP address or network", pos) from None
    return text


def _equal(a: Any, b: Any) -> bool:
    if isinstance(b, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address)) and a in b
    return bool(a == b)


def _pmatch(value: str, prefixes: tuple[str, ...]) -> bool:
    for p in prefixes:
        p = p.rstrip("/")
        if value == p or value.startswith(p + "/") or p == "":
            return True
    return False


def _binary(op: str, want: Any) -> Callable[[Any], bool]:
    """A test of one extracted value against a constant."""
    if op in ("=", "=="):
        return lambda v: _equal(v, want)
    if op == "!=":
        return lambda v: not _equal(v, want)
    if op == "<":
        return lambda v: bool(v < want)
    if op == "<=":
        return lambda v: bool(v <= want)
    if op == ">":
        return lambda v: bool(v > want)
    if op == ">=":
        return lambda v: bool(v >= want)
    if op == "contains":
        return lambda v: isinstance(v, str) and want in v
    if op == "icontains":
        low = want.lower()
        return lambda v: isinstance(v, str) and low in v.lower()
    if op == "startswith":
        return lambda v: isinstance(v, str) and v.startswith(want)
    if op == "endswith":
        return lambda v: isinstance(v, str) and v.endswith(want)
    if op == "bcontains":
        return lambda v: isinstance(v, str) and want in v.encode(errors="surrogateescape")
    if op == "bstartswith":
        return lambda v: isinstance(v, str) and v.encode(errors="surrogateescape").startswith(want)
    if op == "glob":
        return lambda v: isinstance(v, str) and fnmatch.fnmatchcase(v, want)
    if op == "iglob":
        return lambda v: isinstance(v, str) and fnmatch.fnmatchcase(v.lower(), want)
    if op == "regex":
        return lambda v: isinstance(v, str) and want.fullmatch(v) is not None
    raise AssertionError(op)


def _against(get: Extractor, test: Callable[[Any], bool]) -> Check:
    def check(e: RuleEvent) -> bool:
        v = get(e)
        if v is None:
            return False
        if isinstance(v, AnyOf):
            return any(test(x) for x in v)
        return test(v)
    return check


def _compare(node: ast.Compare) -> Check:
    get, typ = _operand(node.left)
    op, right = node.op, node.right
    if op == "exists":
        return lambda e: get(e) is not None
    if op in _ORDER_OPS and typ not in _NUMERIC and typ is not FieldType.STR:
        raise CompileError(f"operator {op} does not apply to {typ.value} fields", node.pos)
    if isinstance(right, ast.Value):
        other, other_typ = _operand(right.operand)
        if other_typ is not typ:
            raise CompileError(f"val() compares a {typ.value} field with a {other_typ.value} "
                               "field", right.pos)

        def check_val(e: RuleEvent) -> bool:
            w = other(e)
            if w is None or isinstance(w, AnyOf):
                return False
            return _against(get, _binary(op if op != "in" else "=", w))(e)
        return check_val
    if op in ("in", "intersects", "pmatch"):
        items = right.items if isinstance(right, ast.ListValue) else (right,)
        words = [i for i in items if isinstance(i, ast.Word)]
        if len(words) != len(items):
            raise CompileError(f"{op} takes literals, not val()", node.pos)
        if op == "pmatch":
            prefixes = tuple(w.text for w in words)
            return _against(get, lambda v: isinstance(v, str) and _pmatch(v, prefixes))
        values = [_convert(w.text, typ, "=", w.pos) for w in words]
        nets = [v for v in values if isinstance(v, (ipaddress.IPv4Network,
                                                    ipaddress.IPv6Network))]
        exact = frozenset(v for v in values if v not in nets)

        def member(v: Any) -> bool:
            return v in exact or any(_equal(v, n) for n in nets)
        if typ is FieldType.LIST:  # a set field: in = all of it listed, intersects = some
            def list_check(e: RuleEvent) -> bool:
                v = get(e)
                if v is None:
                    return False
                members = [member(x) for x in v]
                return all(members) if op == "in" else any(members)
            return list_check
        return _against(get, member)
    if not isinstance(right, ast.Word):
        raise CompileError(f"operator {op} takes one value, not a list", node.pos)
    if isinstance(node.left, ast.FieldRef) and node.left.name == "evt.rawarg":
        return _against(get, _rawarg_test(op, right.text))
    return _against(get, _binary(op, _convert(right.text, typ, op, right.pos)))


def _rawarg_test(op: str, text: str) -> Callable[[Any], bool]:
    """evt.rawarg.X's type is its argument's: numbers compare as numbers, the rest
    as text (Falco types it by the event's parameter)."""
    try:
        number = int(text, 0)
    except ValueError:
        number = None
    as_text = _binary(op, text) if op not in _ORDER_OPS else (lambda v: False)
    as_number = _binary(op, number) if number is not None and op not in _STRING_OPS else None

    def test(v: Any) -> bool:
        if isinstance(v, int) and not isinstance(v, bool):
            return as_number(v) if as_number is not None else False
        return as_text(v if isinstance(v, str) else str(v))
    return test


# Raised by a rule's condition; the engine counts it against the rule.
OnError = Callable[[int, Exception], None]
# The positions, in the list compiled, of the conditions an event meets.
Matcher = Callable[[RuleEvent, OnError], list[int]]


def compile_matcher(conditions: Sequence[ast.Condition | bool], *, first: bool,
                    checks: dict[ast.Compare, Check] | None = None) -> Matcher:
    """One function deciding every condition of `conditions` for an event, in
    order; with `first`, it stops at the first that holds.

    The stock rules repeat the same macros (open_read, spawned_process,
    container, ...) in many rules, so a comparison met again is not decided
    again: each comparison the conditions hold more than once (AST nodes
    compare without their positions) is a local variable of the generated
    function, decided when first needed. Generated source, not nested
    closures: ``and``/``or``/``not`` become Python's own short-circuit
    operators, the common comparisons are inlined (:meth:`_Codegen._inline`),
    and a comparison met again costs a local variable's test, not a call and a
    dict lookup. Measured on the stock rules, this and lazy argument decoding
    took the reader from ~44k to ~90k events/s (bench/rules_eval.py).

    A condition that raises does not hold; the matcher calls `on_error` with
    its position and goes on with the next. `checks` keeps each comparison's
    compiled check, to share between matchers (see :func:`prepare`).

    At most MATCHER_CHUNK conditions go into one generated function: the
    memory compile() takes grows with the function, so 100k rules on one
    syscall in one function took gigabytes. More are matched by a function
    per chunk, in order (a comparison repeated across chunks is decided
    once per chunk)."""
    checks = {} if checks is None else checks
    parts = [_compile_part(conditions[at:at + MATCHER_CHUNK], at, first, checks)
             for at in range(0, len(conditions), MATCHER_CHUNK)] or \
        [_compile_part((), 0, first, checks)]
    if len(parts) == 1:
        return parts[0]

    def match(e: RuleEvent, on_error: OnError) -> list[int]:
        hits: list[int] = []
        for part in parts:
            hits += part(e, on_error)
            if first and hits:
                break
        return hits
    return match


# conditions per generated function (see compile_matcher); the stock rules
# have 100-odd in all, so they stay one function
MATCHER_CHUNK = 512


def _compile_part(conditions: Sequence[ast.Condition | bool], offset: int, first: bool,
                  checks: dict[ast.Compare, Check]) -> Matcher:
    """One generated function for `conditions`, the first of which is
    number `offset` of the whole list."""
    gen = _Codegen(checks, _repeated(conditions))
    body = []
    for i, cond in enumerate(conditions, offset):
        body += ["    try:",
                 f"        if {gen.expr(cond)}:",
                 f"            hits.append({i})"]
        if first:
            body.append("            return hits")
        body += ["    except Exception as exc:",
                 f"        on_error({i}, exc)"]
    src = ["def match(e, on_error):"]
    # one assignment per line: a chained one is limited in length
    src += [f"    {n} = None" for n in gen.names.values()]
    src += ["    hits = []", *body, "    return hits"]
    namespace: dict[str, Any] = dict(gen.consts)
    exec(compile("\n".join(src), "<rules>", "exec"), namespace)  # noqa: S102 - our own source
    return namespace["match"]  # type: ignore[no-any-return]


def _repeated(conditions: Sequence[ast.Condition | bool]) -> frozenset[ast.Compare]:
    """The comparisons met more than once in `conditions`."""
    seen: set[ast.Compare] = set()
    again: set[ast.Compare] = set()
    for c in conditions:
        for n in _comparisons(c):
            (again if n in seen else seen).add(n)
    return frozenset(again)


def _comparisons(node: ast.Condition | bool) -> Iterator[ast.Compare]:
    """Every comparison of a resolved condition, in order, repeats included."""
    if isinstance(node, (ast.And, ast.Or)):
        for i in node.items:
            yield from _comparisons(i)
    elif isinstance(node, ast.Not):
        yield from _comparisons(node.item)
    elif isinstance(node, ast.Compare):
        yield node


def prepare(node: ast.Condition | bool, checks: dict[ast.Compare, Check]) -> None:
    """Compiles the comparisons of `node` into `checks`, for the matchers later
    compiled with it: a condition that does not compile raises here."""
    _Codegen(checks).expr(node)


# What _binary tests, as source over a value {x} and the constant {w}.
_INLINE_TESTS = {
    "=": "{x} == {w}", "==": "{x} == {w}", "!=": "{x} != {w}",
    "<": "{x} < {w}", "<=": "{x} <= {w}", ">": "{x} > {w}", ">=": "{x} >= {w}",
    "contains": "(isinstance({x}, str) and {w} in {x})",
    "startswith": "(isinstance({x}, str) and {x}.startswith({w}))",
    "endswith": "(isinstance({x}, str) and {x}.endswith({w}))",
}


class _Codegen:
    """Python source for conditions: comparisons as lazily set locals."""

    def __init__(self, checks: dict[ast.Compare, Check],
                 repeated: frozenset[ast.Compare] = frozenset()) -> None:
        self.checks = checks
        self.repeated = repeated                 # the comparisons met more than once
        self.names: dict[ast.Compare, str] = {}  # such a comparison -> its local variable
        self.consts: dict[str, Any] = {}         # globals of the source
        self.decide: dict[ast.Compare, str] = {}  # the expression deciding a comparison

    def _inline(self, node: ast.Compare, name: str) -> str | None:
        """The common comparisons of a field with constants as an expression of
        their own: the semantics of :func:`_compare` (absent is false, an AnyOf
        holds when one of its values does), without its calls. None for the
        others (transformers, val(), lists, addresses, regex, glob, ...), which
        call their check."""
        left, right, op = node.left, node.right, node.op
        if not isinstance(left, ast.FieldRef) or left.name == "evt.rawarg":
            return None
        typ = FIELDS[left.name].type
        if typ is FieldType.LIST or typ in (FieldType.IP, FieldType.NET):
            return None
        if op in ("in", "intersects") and isinstance(right, ast.ListValue) \
                and all(isinstance(w, ast.Word) for w in right.items):
            self.consts[f"S{name}"] = frozenset(
                _convert(w.text, typ, "=", w.pos) for w in right.items  # type: ignore[union-attr]
            )
            test = f"(v in S{name} if v.__class__ is not AnyOf else not S{name}.isdisjoint(v))"
        elif op in _INLINE_TESTS and isinstance(right, ast.Word):
            self.consts[f"W{name}"] = _convert(right.text, typ, op, right.pos)
            form = _INLINE_TESTS[op]
            many = f"W{name} in v" if op in ("=", "==") else \
                f"any({form.format(x='x', w=f'W{name}')} for x in v)"
            test = f"({form.format(x='v', w=f'W{name}')} if v.__class__ is not AnyOf else {many})"
        else:
            return None
        self.consts[f"F{name}"], self.consts[f"A{name}"] = field_function(left)
        self.consts["AnyOf"] = AnyOf
        return f"((v := F{name}(e, A{name})) is not None and {test})"

    def expr(self, node: ast.Condition | bool) -> str:
        if node is True or node is False:
            return str(bool(node))
        if isinstance(node, ast.And):
            return "(" + " and ".join(self.expr(i) for i in node.items) + ")"
        if isinstance(node, ast.Or):
            return "(" + " or ".join(self.expr(i) for i in node.items) + ")"
        if isinstance(node, ast.Not):
            return f"(not {self.expr(node.item)})"
        if isinstance(node, ast.Compare):
            decide = self.decide.get(node)
            if decide is None:
                check = self.checks.get(node)
                if check is None:
                    check = self.checks[node] = _compare(node)
                tag = f"c{len(self.decide)}"
                self.consts[f"K{tag}"] = check
                decide = self.decide[node] = self._inline(node, tag) or f"K{tag}(e)"
            if node not in self.repeated:
                return f"({decide})"
            # met again: a local variable keeps what it decided
            name = self.names.setdefault(node, f"r{len(self.names)}")
            return f"({name} if {name} is not None else ({name} := {decide}))"
        raise CompileError(f"unresolved macro {node.name!r}", node.pos)


def _reraise(i: int, exc: Exception) -> None:
    raise exc


def compile_condition(node: ast.Condition | bool) -> Check:
    """The check deciding one resolved condition (no macro references left), or
    a constant one (what :func:`specialize` may leave). What the condition
    raises, the check raises."""
    match = compile_matcher([node], first=True)
    return lambda e: bool(match(e, _reraise))


def specialize(node: ast.Condition, evt_type: str) -> ast.Condition | bool:
    """The condition as it reads for events of type `evt_type`: its tests of
    evt.type decided (True or False), and what they decide folded away. The
    engine compiles each rule once per event type it indexes it under, so no
    event pays for the type tests its index already made."""
    if isinstance(node, ast.Compare):
        left = node.left
        if isinstance(left, ast.FieldRef) and left.name == "evt.type" and left.arg is None:
            items = node.right.items if isinstance(node.right, ast.ListValue) else (node.right,)
            if all(isinstance(i, ast.Word) for i in items):
                words = {i.text for i in items if isinstance(i, ast.Word)}
                if node.op in ("=", "==", "in", "intersects"):
                    return evt_type in words
                if node.op == "!=" and isinstance(node.right, ast.Word):
                    return evt_type not in words
        return node
    if isinstance(node, ast.Not):
        inner = specialize(node.item, evt_type)
        return (not inner) if isinstance(inner, bool) else ast.Not(inner, pos=node.pos)
    if isinstance(node, (ast.And, ast.Or)):
        decisive = isinstance(node, ast.Or)   # the value that decides the whole
        kept: list[ast.Condition] = []
        for item in node.items:
            x = specialize(item, evt_type)
            if x is decisive:
                return decisive
            if not isinstance(x, bool):
                kept.append(x)
        if not kept:
            return not decisive
        if len(kept) == 1:
            return kept[0]
        return type(node)(tuple(kept), pos=node.pos)
    return node


# -- event types --------------------------------------------------------------------------

ALL_TYPES: frozenset[str] = frozenset({"*"})


def event_types(node: ast.Condition) -> frozenset[str]:
    """The evt.type values a condition can match; ALL_TYPES when it does not say.
    Sound over-approximation: a condition never matches an event outside it."""
    if isinstance(node, ast.Compare):
        left = node.left
        if isinstance(left, ast.FieldRef) and left.name == "evt.type":
            if node.op in ("=", "==") and isinstance(node.right, ast.Word):
                return frozenset({node.right.text})
            if node.op in ("in", "intersects") and isinstance(node.right, ast.ListValue):
                words = [i for i in node.right.items if isinstance(i, ast.Word)]
                if len(words) == len(node.right.items):
                    return frozenset(w.text for w in words)
        return ALL_TYPES
    if isinstance(node, ast.And):
        known = [t for t in map(event_types, node.items) if t is not ALL_TYPES]
        if not known:
            return ALL_TYPES
        out = known[0]
        for t in known[1:]:
            out &= t
        return frozenset(out)
    if isinstance(node, ast.Or):
        parts = [event_types(i) for i in node.items]
        if any(p is ALL_TYPES for p in parts):
            return ALL_TYPES
        return frozenset().union(*parts)
    return ALL_TYPES  # not, or an unresolved macro: anything


def fields_used(node: ast.Condition) -> set[str]:
    """The names of every field a resolved condition reads (val() and transformers too)."""
    out: set[str] = set()

    def operand(o: ast.Operand) -> None:
        if isinstance(o, ast.FieldRef):
            out.add(o.name)
        else:
            operand(o.operand)

    for n in _comparisons(node):
        operand(n.left)
        right = n.right.items if isinstance(n.right, ast.ListValue) else (n.right,)
        for r in right:
            if isinstance(r, ast.Value):
                operand(r.operand)
    return out
