"""Falco's condition language: condition text in, :mod:`.ast` out.

The grammar is libsinsp's (``userspace/libsinsp/filter/parser.{h,cpp}``),
written for lark's LALR parser. libsinsp's parser is hand-written and lexes
by context, and so does this one: lark's contextual lexer only tries the
tokens the parser can accept at each point, which is what lets ``and`` be an
operator after a check, a macro name where a check is expected and a plain
value after ``=``, exactly as in libsinsp. The libsinsp facts the grammar
encodes:

* precedence ``not`` > ``and`` > ``or``; ``and``/``or`` must be followed by
  a blank or ``(``; ``not`` by a blank or ``(``. A run of ``not`` prefixes
  toggles (``not not a`` is ``a``), as libsinsp folds them.
* a field is ``[a-zA-Z][a-zA-Z0-9_]*`` with at least one ``.part``, and an
  argument in brackets right after it (no blank): a quoted string or a run
  of anything but blanks, brackets and quotes.
* a bare identifier (no dot) where a check is expected is a macro reference.
* operators: ``exists``; ``< <= > >=`` (a number, hex or decimal, on the
  right); ``= == !=`` and the word operators (``contains``... ``regex``,
  which need a blank after them) with a quoted or bare string on the right;
  ``in intersects pmatch`` with a parenthesised, possibly empty, list of
  strings or a bare identifier (a list name) on the right. Any of them also
  takes ``val(field)`` or a transformer on the right.
* a bare string is a run of anything but blanks, quotes, parentheses, ``=``
  and ``,``: ``/etc/shadow``, ``-1``, ``10.0.0.0/8``, ``*.log``,
  ``runc:[1:CHILD]`` are all bare strings.
* quoted strings (``"..."`` or ``'...'``) end at the first delimiter not
  preceded by a backslash and know the escapes ``\\b \\f \\n \\r \\t \\\\ \\/``, the
  escaped delimiter (``\\"`` only in ``"``-strings, ``\\'`` only in
  ``'``-strings); libsinsp reads ``\\<space>`` as a backslash.
* transformers ``tolower toupper b64 basename len`` wrap a field or another
  transformer, written with the ``(`` right after the name.

libsinsp's newest ``join(...)`` transformer takes several arguments and
transformer lists, which the syntax tree has no node for; it is not parsed.
"""

from __future__ import annotations

import re
from typing import Final

import lark
from lark import Lark, Token, Transformer, v_args

from ..errors import ConfigError
from . import ast
from .fields import split_field

__all__ = [
    "FIELD_PATTERN",
    "MAX_DEPTH",
    "TRANSFORMERS",
    "ConditionSyntaxError",
    "parse_condition",
    "parse_list_items",
    "parse_operand",
    "unescape",
]

TRANSFORMERS: Final = ("tolower", "toupper", "b64", "basename", "len")
"""The field transformers a condition may apply, in libsinsp's order."""

MAX_DEPTH: Final = 100
"""Deepest syntax tree a condition may produce. libsinsp caps its recursive
parser (100 levels historically); the cap here keeps every later walk of the
tree far from Python's recursion limit, whatever the input."""


class ConditionSyntaxError(ConfigError):
    """A condition is not valid Falco syntax.

    Attributes:
        offset: 0-based position in the condition text where it went wrong.
        reason: what was found and what was expected there.
    """

    def __init__(self, offset: int, reason: str) -> None:
        self.offset = offset
        self.reason = reason
        super().__init__(f"at offset {offset}: {reason}")


# Blanks as libsinsp's lex_blank() sees them (note: \b yes, \v and \f no).
_BLANK = r"[ \t\b\r\n]"
# What [[:space:]] matches in libsinsp's POSIX regexes.
_SPACE = r"\t\n\v\f\r "
# A quoted string ends at the first delimiter not preceded by a backslash:
# libsinsp's lexer looks one character back, so "a\\" does not end at its
# last quote either. NUL ends libsinsp's C string, so it ends nothing here.
_DQUOTED = r'"(?:[^"\x00]|(?<=\\)")*(?<!\\)"'
_SQUOTED = r"'(?:[^'\x00]|(?<=\\)')*(?<!\\)'"
_FIELD_NAME = r"[a-zA-Z][a-zA-Z0-9_]*(?:\.[a-zA-Z][a-zA-Z0-9_]*)+"
_TRANSFORM_NAMES = "|".join(TRANSFORMERS)
# libsinsp's string operators that are words: a blank must follow them.
_WORD_OPS = "glob|iglob|contains|icontains|bcontains|startswith|bstartswith|endswith|regex"
_FIELD_ARG = rf"\[(?:{_DQUOTED}|{_SQUOTED}|[^\]\[\"'{_SPACE}\x00]+)\]"

FIELD_PATTERN: Final = rf"{_FIELD_NAME}(?:{_FIELD_ARG})?"
"""A regular expression for a field as a condition writes it, argument
included: what libsinsp takes for a field wherever one may stand."""

_GRAMMAR: Final = rf"""
start: or_expr
list_start: [list_items]
operand_start: operand

?or_expr: and_expr (_OR and_expr)*
?and_expr: not_expr (_AND not_expr)*
?not_expr: NOT+ NOT_PAREN or_expr _RPAR -> negation_paren
         | NOT+ atom                    -> negation
         | NOT_PAREN or_expr _RPAR      -> not_paren
         | atom
?atom: LPAR or_expr _RPAR         -> paren
     | operand EXISTS             -> unary
     | operand NUM_OP num_value   -> binary
     | operand STR_OP str_value   -> binary
     | operand LIST_OP list_value -> binary
     | IDENT                      -> macro

?operand: FIELD                       -> field
        | TRANSFORM operand _RPAR     -> transformer

?num_value: NUMBER -> word
          | HEXNUM -> word
          | field_value
?str_value: QUOTED -> word
          | BARESTR -> word
          | field_value
?list_value: LPAR [list_items] _RPAR -> value_list
           | IDENT                   -> word
           | field_value
list_items: list_item (_COMMA list_item)*
?list_item: QUOTED -> word
          | BARESTR -> word
?field_value: VAL FIELD _RPAR         -> val
            | TRANSFORM operand _RPAR -> transform_value

_OR: /or(?={_BLANK}|\()/
_AND: /and(?={_BLANK}|\()/
NOT.4: /not[{_SPACE}]+/
NOT_PAREN.4: "not("
TRANSFORM.4: /({_TRANSFORM_NAMES})\(/
VAL.4: "val("
EXISTS: "exists"
NUM_OP: /<=|<|>=|>/
STR_OP: /==|=|!=/ | /({_WORD_OPS})(?={_BLANK})/
LIST_OP: /intersects|in|pmatch/
LPAR: "("
_RPAR: ")"
_COMMA: ","
FIELD.2: /{FIELD_PATTERN}/
IDENT.1: /[a-zA-Z][a-zA-Z0-9_]*/
HEXNUM.3: /0[xX][0-9a-fA-F]+/
NUMBER.2: /[+\-]?[0-9]+\.?[0-9]*(?:[eE][+\-][0-9]+)?/
QUOTED: /{_DQUOTED}|{_SQUOTED}/
BARESTR: /[^()"'{_SPACE}=,\x00]+/
BLANK.9: /{_BLANK}+/
%ignore BLANK
"""

# What each token is, for "expected ..." messages.
_TOKEN_NAMES: Final = {
    "FIELD": "a field",
    "IDENT": "an identifier",
    "NOT": "'not'",
    "NOT_PAREN": "'not('",
    "TRANSFORM": "a transformer (" + ", ".join(t + "(" for t in TRANSFORMERS) + ")",
    "VAL": "'val('",
    "EXISTS": "'exists'",
    "NUM_OP": "an operator",
    "STR_OP": "an operator",
    "LIST_OP": "an operator",
    "LPAR": "'('",
    "_RPAR": "')'",
    "_COMMA": "','",
    "_AND": "'and'",
    "_OR": "'or'",
    "HEXNUM": "a number",
    "NUMBER": "a number",
    "QUOTED": "a quoted string",
    "BARESTR": "a string",
    "$END": "the end of the condition",
}

_ESCAPES: Final = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", " ": "\\", "\\": "\\",
                   "/": "/"}


def unescape(token: str) -> str:
    """The value of a quoted string token (delimiters included), with
    libsinsp's escapes applied. Raises ValueError on an escape libsinsp
    rejects."""
    quote = token[0]
    out: list[str] = []
    escaped = False
    for ch in token[1:-1]:
        if not escaped:
            if ch == "\\":
                escaped = True
            else:
                out.append(ch)
            continue
        escaped = False
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch in "\"'":
            if ch != quote:
                raise ValueError(f"invalid \\{ch} escape in {quote}-quoted string")
            out.append(ch)
        else:
            raise ValueError(f"unsupported string escape sequence: \\{ch}")
    return "".join(out)


def _fold_nots(children: list[Token | ast.Condition]) -> ast.Condition:
    """A run of ``not`` prefixes (``not(`` counts as one) before one item:
    libsinsp toggles on each, so an even number cancels out."""
    *nots, item = children
    first = nots[0]
    assert isinstance(first, Token) and not isinstance(item, Token)
    return ast.Not(item, pos=first.start_pos or 0) if len(nots) % 2 else item


def _word(tok: Token) -> ast.Word:
    pos = tok.start_pos or 0
    if tok.type == "QUOTED":
        try:
            return ast.Word(unescape(str(tok)), quoted=True, pos=pos)
        except ValueError as exc:
            raise ConditionSyntaxError(pos, str(exc)) from None
    return ast.Word(str(tok), pos=pos)


def _field(tok: Token) -> ast.FieldRef:
    pos = tok.start_pos or 0
    text = str(tok)
    name, bracket, arg = text.partition("[")
    if not bracket:
        return split_field(text, pos)
    arg = arg[:-1]
    if arg[:1] in ("'", '"'):
        try:
            arg = unescape(arg)
        except ValueError as exc:
            raise ConditionSyntaxError(pos + len(name) + 1, str(exc)) from None
    return ast.FieldRef(name, arg, pos=pos)


@v_args(inline=True)
class _Build(Transformer[Token, ast.Condition]):
    """Builds :mod:`.ast` nodes as the parser reduces (no parse tree)."""

    def start(self, cond: ast.Condition) -> ast.Condition:
        return cond

    def list_start(self, items: tuple[ast.Word, ...] | None) -> tuple[ast.Word, ...]:
        return items or ()

    def operand_start(self, operand: ast.Operand) -> ast.Operand:
        return operand

    @v_args(inline=False)
    def or_expr(self, items: list[ast.Condition]) -> ast.Or:
        return ast.Or(tuple(items), pos=items[0].pos)

    @v_args(inline=False)
    def and_expr(self, items: list[ast.Condition]) -> ast.And:
        return ast.And(tuple(items), pos=items[0].pos)

    @v_args(inline=False)
    def negation(self, children: list[Token | ast.Condition]) -> ast.Condition:
        return _fold_nots(children)

    @v_args(inline=False)
    def negation_paren(self, children: list[Token | ast.Condition]) -> ast.Condition:
        return _fold_nots(children)

    def not_paren(self, tok: Token, item: ast.Condition) -> ast.Not:
        return ast.Not(item, pos=tok.start_pos or 0)

    def paren(self, _lpar: Token, item: ast.Condition) -> ast.Condition:
        return item

    def unary(self, left: ast.Operand, op: Token) -> ast.Compare:
        return ast.Compare(left, str(op), None, pos=left.pos)

    def binary(self, left: ast.Operand, op: Token,
               right: ast.Word | ast.ListValue | ast.Value) -> ast.Compare:
        return ast.Compare(left, str(op), right, pos=left.pos)

    def macro(self, tok: Token) -> ast.MacroRef:
        return ast.MacroRef(str(tok), pos=tok.start_pos or 0)

    def field(self, tok: Token) -> ast.FieldRef:
        return _field(tok)

    def transformer(self, tok: Token, operand: ast.Operand) -> ast.Transform:
        return ast.Transform(str(tok)[:-1], operand, pos=tok.start_pos or 0)

    def word(self, tok: Token) -> ast.Word:
        return _word(tok)

    def value_list(self, tok: Token, items: tuple[ast.Word, ...] | None) -> ast.ListValue:
        return ast.ListValue(items or (), pos=tok.start_pos or 0)

    @v_args(inline=False)
    def list_items(self, items: list[ast.Word]) -> tuple[ast.Word, ...]:
        return tuple(items)

    def val(self, tok: Token, field: Token) -> ast.Value:
        return ast.Value(_field(field), pos=tok.start_pos or 0)

    def transform_value(self, tok: Token, operand: ast.Operand) -> ast.Value:
        pos = tok.start_pos or 0
        return ast.Value(ast.Transform(str(tok)[:-1], operand, pos=pos), pos=pos)


_PARSER: Final = Lark(
    _GRAMMAR,
    parser="lalr",
    lexer="contextual",
    start=["start", "list_start", "operand_start"],
    transformer=_Build(),
    propagate_positions=False,
    maybe_placeholders=True,
)


def _expected(names: set[str] | frozenset[str]) -> str:
    found = sorted({_TOKEN_NAMES.get(n, n) for n in names})
    if not found:
        return "nothing more"
    return found[0] if len(found) == 1 else ", ".join(found[:-1]) + " or " + found[-1]


_FOUND = re.compile(r"[^ \t\b\r\n]{1,20}")
_KEYWORD_NO_BLANK = re.compile(r"(and|or|not)(?![ \t\b\r\n(])")


def _syntax_error(text: str, exc: lark.exceptions.UnexpectedInput) -> ConditionSyntaxError:
    pos: int
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        pos = exc.pos_in_stream or 0
        allowed: set[str] | frozenset[str] = exc.allowed or set()
    elif isinstance(exc, lark.exceptions.UnexpectedToken):
        tok = exc.token
        pos = len(text) if tok.type == "$END" else (tok.start_pos or 0)
        allowed = exc.accepts or exc.expected
    else:
        pos = len(text)
        allowed = set(getattr(exc, "expected", ()) or ())
    pos = min(max(pos, 0), len(text))
    if not text.strip(" \t\b\r\n"):
        return ConditionSyntaxError(pos, "the condition is empty")
    if pos == len(text):
        return ConditionSyntaxError(
            pos, f"unexpected end of condition: expected {_expected(allowed)}")
    keyword = _KEYWORD_NO_BLANK.match(text, pos)
    if keyword and {"_AND", "_OR", "NOT"} & set(allowed):
        return ConditionSyntaxError(pos, f"expected a blank or '(' after {keyword[1]!r}")
    found = _FOUND.match(text, pos)
    shown = found[0] if found else text[pos]
    if shown[0] in "\"'" and "QUOTED" in allowed:
        return ConditionSyntaxError(pos, f"unterminated quoted string {shown!r}")
    return ConditionSyntaxError(pos, f"unexpected {shown!r}: expected {_expected(allowed)}")


def _check_depth(root: ast.Node) -> None:
    stack: list[tuple[ast.Node, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ConditionSyntaxError(node.pos, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, ast.And | ast.Or):
            stack.extend((item, depth + 1) for item in node.items)
        elif isinstance(node, ast.Not):
            stack.append((node.item, depth + 1))
        elif isinstance(node, ast.Compare):
            stack.append((node.left, depth + 1))
            if node.right is not None:
                stack.append((node.right, depth + 1))
        elif isinstance(node, ast.Transform | ast.Value):
            stack.append((node.operand, depth + 1))


def _parse(text: str, start: str) -> object:
    try:
        return _PARSER.parse(text, start=start)
    except lark.exceptions.UnexpectedInput as exc:
        raise _syntax_error(text, exc) from None


def parse_condition(text: str) -> ast.Condition:
    """Parse a condition (a rule's or a macro's) into its syntax tree.

    Macro references stay :class:`~.ast.MacroRef` and list names stay words:
    resolving them is the loader's job. Raises ConditionSyntaxError, and
    nothing else, on any input that is not a valid condition.
    """
    tree = _parse(text, "start")
    assert isinstance(tree, ast.And | ast.Or | ast.Not | ast.Compare | ast.MacroRef)
    _check_depth(tree)
    return tree


def parse_list_items(text: str) -> tuple[ast.Word, ...]:
    """Parse the inside of a value list, ``a, "b c", d``, as libsinsp reads
    it between the parentheses of ``in (...)``. Falco substitutes a list's
    items into conditions as text, so this is how a list item is read."""
    items = _parse(text, "list_start")
    assert isinstance(items, tuple)
    return items


def parse_operand(text: str) -> ast.Operand:
    """Parse a field, ``proc.aname[2]``, or a transformer applied to one,
    ``tolower(proc.name)``: what may stand left of an operator."""
    operand = _parse(text, "operand_start")
    assert isinstance(operand, ast.FieldRef | ast.Transform)
    _check_depth(operand)
    return operand
