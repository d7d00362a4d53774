"""The syntax tree of a Falco condition.

The parser (:mod:`.grammar`) produces it from condition text; the loader
resolves macro references and list names in it; the compiler
(:mod:`.compiler`) turns it into Python closures and the pushdown planner
reads it to find what the kernel can check. Nodes are immutable and carry
their position in the condition text, for error messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "And",
    "Compare",
    "Condition",
    "FieldRef",
    "ListValue",
    "MacroRef",
    "Node",
    "Not",
    "Operand",
    "Or",
    "Transform",
    "Value",
    "Word",
]


@dataclass(frozen=True)
class Node:
    """Base of every node. `pos` is the 0-based offset in the condition text."""

    pos: int = field(default=0, compare=False, kw_only=True)


@dataclass(frozen=True)
class Word(Node):
    """A literal on the right of an operator. `quoted`: written in quotes (so it
    can never name a list); `text` is the value with quotes and escapes removed."""

    text: str
    quoted: bool = False


@dataclass(frozen=True)
class FieldRef(Node):
    """A field, with its optional argument: ``proc.aname[2]`` is
    FieldRef("proc.aname", "2"), ``proc.env[HOME]`` FieldRef("proc.env", "HOME"),
    ``evt.arg.flags`` FieldRef("evt.arg", "flags") as Falco reads it."""

    name: str
    arg: str | None = None


@dataclass(frozen=True)
class Transform(Node):
    """A transformer applied to a field (or another transformer):
    ``tolower(proc.name)`` is Transform("tolower", FieldRef("proc.name"))."""

    name: str  # tolower, toupper, b64, basename, len
    operand: Operand


Operand = FieldRef | Transform


@dataclass(frozen=True)
class Value(Node):
    """``val(field)`` on the right of an operator: compare with another field."""

    operand: Operand


@dataclass(frozen=True)
class ListValue(Node):
    """``(a, b, "c")``. Before resolution an unquoted item may name a list;
    after it, every item is a literal or a val()."""

    items: tuple[Word | Value, ...]


@dataclass(frozen=True)
class Compare(Node):
    """`left op right`. `right` is None for the unary ``exists``."""

    left: Operand
    op: str  # =, ==, !=, <, <=, >, >=, contains, icontains, bcontains, startswith,
    # bstartswith, endswith, glob, iglob, regex, in, intersects, pmatch, exists
    right: Word | ListValue | Value | None


@dataclass(frozen=True)
class MacroRef(Node):
    """A bare identifier in boolean position: a macro, resolved by the loader."""

    name: str


@dataclass(frozen=True)
class Not(Node):
    item: Condition


@dataclass(frozen=True)
class And(Node):
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Or(Node):
    items: tuple[Condition, ...]


Condition = And | Or | Not | Compare | MacroRef
