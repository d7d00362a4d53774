"""The condition parser against libsinsp's grammar (filter/parser.cpp)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpfguard.errors import ConfigError
from bpfguard.rules import ast
from bpfguard.rules.grammar import (
    MAX_DEPTH,
    ConditionSyntaxError,
    parse_condition,
    parse_list_items,
    parse_operand,
    unescape,
)

F = ast.FieldRef
W = ast.Word
M = ast.MacroRef


def cmp(left: str | ast.Operand, op: str, right: ast.Word | ast.ListValue | ast.Value | None
        ) -> ast.Compare:
    return ast.Compare(F(left) if isinstance(left, str) else left, op, right)


def error(text: str) -> ConditionSyntaxError:
    with pytest.raises(ConditionSyntaxError) as info:
        parse_condition(text)
    return info.value


# -- operators --------------------------------------------------------------

@pytest.mark.parametrize("op", ["=", "==", "!=", "contains", "icontains", "bcontains",
                                "startswith", "bstartswith", "endswith", "glob", "iglob",
                                "regex"])
def test_string_operators(op: str) -> None:
    assert parse_condition(f"proc.name {op} bash") == cmp("proc.name", op, W("bash"))
    assert parse_condition(f'proc.name {op} "a b"') == cmp("proc.name", op, W("a b", True))


@pytest.mark.parametrize("op", ["<", "<=", ">", ">="])
def test_numeric_operators(op: str) -> None:
    assert parse_condition(f"fd.num {op} 10") == cmp("fd.num", op, W("10"))
    assert parse_condition(f"fd.num{op}10") == cmp("fd.num", op, W("10"))


@pytest.mark.parametrize("op", ["in", "intersects", "pmatch"])
def test_list_operators(op: str) -> None:
    assert parse_condition(f"fd.name {op} (/etc, '/tmp')") == cmp(
        "fd.name", op, ast.ListValue((W("/etc"), W("/tmp", True))))


def test_exists_is_unary() -> None:
    assert parse_condition("proc.pname exists") == cmp("proc.pname", "exists", None)
    assert error("proc.pname exists x").offset == 18


def test_symbol_operators_need_no_blanks() -> None:
    assert parse_condition("proc.name=bash") == cmp("proc.name", "=", W("bash"))
    assert parse_condition("proc.name!=bash") == cmp("proc.name", "!=", W("bash"))
    assert parse_condition("proc.name==bash") == cmp("proc.name", "==", W("bash"))


@pytest.mark.parametrize("text", ['proc.name contains"x"', "proc.name containsx",
                                  "proc.name startswith(x)", "proc.name glob*"])
def test_word_operators_need_a_blank_after(text: str) -> None:
    assert error(text).offset == 10


def test_list_operators_need_no_blank() -> None:
    assert parse_condition("proc.name in(a,b)") == cmp(
        "proc.name", "in", ast.ListValue((W("a"), W("b"))))
    # libsinsp reads `inx` as `in` then the list name `x`.
    assert parse_condition("proc.name inx") == cmp("proc.name", "in", W("x"))


def test_unknown_operator_is_an_error() -> None:
    err = error("proc.name like bash")
    assert err.offset == 10
    assert "operator" in err.reason


# -- boolean structure --------------------------------------------------------

def test_precedence_not_over_and_over_or() -> None:
    assert parse_condition("a or b and c") == ast.Or((M("a"), ast.And((M("b"), M("c")))))
    assert parse_condition("not a and b") == ast.And((ast.Not(M("a")), M("b")))
    assert parse_condition("a and b or not c and d") == ast.Or((
        ast.And((M("a"), M("b"))), ast.And((ast.Not(M("c")), M("d")))))


def test_parentheses_group() -> None:
    assert parse_condition("(a or b) and c") == ast.And((ast.Or((M("a"), M("b"))), M("c")))
    assert parse_condition("not (a or b)") == ast.Not(ast.Or((M("a"), M("b"))))
    assert parse_condition("((((a))))") == M("a")


def test_runs_of_and_or_are_flat() -> None:
    assert parse_condition("a and b and c") == ast.And((M("a"), M("b"), M("c")))
    assert parse_condition("a or b or c") == ast.Or((M("a"), M("b"), M("c")))


def test_a_run_of_not_prefixes_folds_as_in_libsinsp() -> None:
    assert parse_condition("not not a") == M("a")
    assert parse_condition("not not not a") == ast.Not(M("a"))
    assert parse_condition("not not(a)") == M("a")
    assert parse_condition("not(a)") == ast.Not(M("a"))
    # Parentheses stop the folding.
    assert parse_condition("not (not a)") == ast.Not(ast.Not(M("a")))


def test_and_or_not_take_a_blank_or_a_parenthesis() -> None:
    assert parse_condition("a and(b)") == ast.And((M("a"), M("b")))
    assert parse_condition("(a)or(b)") == ast.Or((M("a"), M("b")))
    assert parse_condition("a\nand\tb") == ast.And((M("a"), M("b")))
    err = error("a andb")
    assert (err.offset, err.reason) == (2, "expected a blank or '(' after 'and'")
    assert error("a or").offset == 2
    # `notb` is an identifier, not a negation.
    assert parse_condition("a and notb") == ast.And((M("a"), M("notb")))


def test_keywords_are_identifiers_where_libsinsp_expects_one() -> None:
    assert parse_condition("and") == M("and")
    assert parse_condition("a and not") == ast.And((M("a"), M("not")))
    assert parse_condition("proc.name = or") == cmp("proc.name", "=", W("or"))


def test_blanks_are_libsinsp_blanks() -> None:
    assert parse_condition("\b a \r\n") == M("a")  # backspace is a blank to libsinsp
    assert error("a\fand b").offset == 1  # form feed is not


def test_macro_reference() -> None:
    assert parse_condition("spawned_process") == M("spawned_process")
    assert parse_condition("  open_read  ").pos == 2


def test_a_field_alone_is_no_condition() -> None:
    assert "operator" in error("proc.is_exe_upper_layer").reason


# -- values -------------------------------------------------------------------

@pytest.mark.parametrize("bare", ["/etc/shadow", "E", "-1", "10.0.0.0/8", "*.log", "k8s.io",
                                  "runc:[0:PARENT]", "/dev/shm/*", "O_TRUNC", "a.b.c",
                                  "héllo", "<NA>", "sh.exe!", "x\by"])
def test_bare_words(bare: str) -> None:
    assert parse_condition(f"proc.name = {bare}") == cmp("proc.name", "=", W(bare))


@pytest.mark.parametrize(("text", "value", "rest_at"), [
    ("proc.name = a=b", "a", 13), ("proc.name = a,b", "a", 13), ("proc.name = a(b", "a", 13),
    ("proc.name = a'b'", "a", 13), ('proc.name = a"b"', "a", 13), ("proc.name = a\vb", "a", 13),
])
def test_what_ends_a_bare_word(text: str, value: str, rest_at: int) -> None:
    assert error(text).offset == rest_at


@pytest.mark.parametrize(("text", "value"), [
    (r'"a\"b"', 'a"b'), (r"'a\'b'", "a'b"), (r'"\\"', None), (r'"a\\b"', "a\\b"),
    (r'"\b\f\n\r\t"', "\b\f\n\r\t"), (r'"\/"', "/"), (r'"a\ b"', "a\\b"),
    ("'it''s'", None), ('""', ""), ("''", ""), ('"it\'s"', "it's"), ("'say \"hi\"'", 'say "hi"'),
])
def test_quoted_strings_and_escapes(text: str, value: str | None) -> None:
    if value is None:
        error(f"proc.name = {text}")
    else:
        assert parse_condition(f"proc.name = {text}") == cmp("proc.name", "=", W(value, True))


@pytest.mark.parametrize(("text", "reason"), [
    (r"'a\"b'", "invalid \\\" escape in '-quoted string"),
    (r'"a\'b"', "invalid \\' escape in \"-quoted string"),
    (r'"a\xb"', "unsupported string escape sequence: \\x"),
])
def test_bad_escapes_are_reported_at_the_string(text: str, reason: str) -> None:
    err = error(f"proc.name = {text}")
    assert (err.offset, err.reason) == (12, reason)


def test_unterminated_string() -> None:
    err = error('proc.name = "abc and x')
    assert err.offset == 12
    assert "unterminated" in err.reason
    # libsinsp ends a string at a delimiter not preceded by a backslash, even
    # an escaped one: "a\\" never ends.
    assert "unterminated" in error(r'proc.name = "a\\"').reason


def test_numbers() -> None:
    for number in ["0", "42", "-1", "+7", "1.5", "1.5e+10", "3e-2", "0x1F", "0XaB"]:
        assert parse_condition(f"evt.rawres >= {number}") == cmp("evt.rawres", ">=", W(number))
    assert error("evt.rawres >= abc").offset == 14
    assert error("evt.rawres >= 1e5").offset == 15  # libsinsp wants a signed exponent


def test_lists() -> None:
    assert parse_condition("proc.name in ()") == cmp("proc.name", "in", ast.ListValue(()))
    assert parse_condition("proc.name in ( )") == cmp("proc.name", "in", ast.ListValue(()))
    assert parse_condition('proc.name in (a, "b c", shell_binaries)') == cmp(
        "proc.name", "in", ast.ListValue((W("a"), W("b c", True), W("shell_binaries"))))
    assert parse_condition("proc.name in shell_binaries") == cmp(
        "proc.name", "in", W("shell_binaries"))
    assert error("proc.name in (a,)").offset == 16
    assert error("proc.name in (,a)").offset == 14
    assert error("proc.name in (a b)").offset == 16
    assert error("proc.name in /etc").offset == 13


def test_parse_list_items() -> None:
    assert parse_list_items('a, "b c" , d') == (W("a"), W("b c", True), W("d"))
    assert parse_list_items("") == ()
    with pytest.raises(ConditionSyntaxError):
        parse_list_items("a b")


# -- fields, transformers, val() ----------------------------------------------

@pytest.mark.parametrize(("text", "ref"), [
    ("proc.aname[2]", F("proc.aname", "2")),
    ("evt.arg[0]", F("evt.arg", "0")),
    ("proc.env[HOME]", F("proc.env", "HOME")),
    ('proc.env["A B"]', F("proc.env", "A B")),
    ("proc.env['x\\'y']", F("proc.env", "x'y")),
    ("evt.arg.flags", F("evt.arg", "flags")),
    ("evt.rawarg.res", F("evt.rawarg", "res")),
    ("fd.sip.name", F("fd.sip.name")),
    ("a.b_2.c3", F("a.b_2.c3")),
])
def test_fields_and_arguments(text: str, ref: ast.FieldRef) -> None:
    assert parse_condition(f"{text} = x") == ast.Compare(ref, "=", W("x"))
    assert parse_operand(text) == ref


@pytest.mark.parametrize("text", ["proc.aname [2] = x", "proc.aname[] = x",
                                  "proc.aname[ 2] = x", "proc.aname[2 = x", "_a.b = x",
                                  "a._b = x", "a. b = x"])
def test_malformed_fields(text: str) -> None:
    error(text)


def test_transformers_nest_on_the_left() -> None:
    inner = ast.Transform("basename", F("proc.exepath"))
    expected = ast.Transform("tolower", ast.Transform("toupper", inner))
    text = "tolower( toupper(basename(proc.exepath) ) ) = bash"
    assert parse_condition(text) == ast.Compare(expected, "=", W("bash"))
    for name in ("b64", "len"):
        assert parse_condition(f"{name}(proc.name) > 3") == cmp(
            ast.Transform(name, F("proc.name")), ">", W("3"))


def test_transformers_need_the_parenthesis_right_after_the_name() -> None:
    # `tolower (x)` is a macro named tolower followed by junk, as in libsinsp.
    assert error("tolower (proc.name) = x").offset == 8
    assert error("tolower(bash) = x").offset == 8


def test_val_and_transformers_on_the_right() -> None:
    assert parse_condition("proc.name = val(proc.pname)") == cmp(
        "proc.name", "=", ast.Value(F("proc.pname")))
    assert parse_condition("proc.name = tolower(proc.pname)") == cmp(
        "proc.name", "=", ast.Value(ast.Transform("tolower", F("proc.pname"))))
    assert parse_condition("fd.num > val(proc.pid)") == cmp(
        "fd.num", ">", ast.Value(F("proc.pid")))
    assert parse_condition("proc.name in val(proc.aname)") == cmp(
        "proc.name", "in", ast.Value(F("proc.aname")))
    # val() takes a field only, not a transformer, and is no left operand.
    error("proc.name = val(tolower(proc.pname))")
    error("val(proc.name) = x")


def test_parse_operand_rejects_conditions() -> None:
    with pytest.raises(ConditionSyntaxError):
        parse_operand("proc.name = x")


# -- positions and errors -----------------------------------------------------

def test_positions() -> None:
    cond = parse_condition('a and not proc.aname[2] in (x, "y") or tolower(fd.name) = val(f.g)')
    assert isinstance(cond, ast.Or)
    left, right = cond.items
    assert isinstance(left, ast.And) and isinstance(right, ast.Compare)
    macro, negation = left.items
    assert macro.pos == 0
    assert isinstance(negation, ast.Not) and negation.pos == 6
    check = negation.item
    assert isinstance(check, ast.Compare) and isinstance(check.right, ast.ListValue)
    assert (check.pos, check.left.pos, check.right.pos) == (10, 10, 27)
    assert [w.pos for w in check.right.items] == [28, 31]
    assert isinstance(right.left, ast.Transform) and isinstance(right.right, ast.Value)
    assert (right.pos, right.left.pos, right.left.operand.pos) == (39, 39, 47)
    assert (right.right.pos, right.right.operand.pos) == (58, 62)


@pytest.mark.parametrize(("text", "offset", "says"), [
    ("", 0, "empty"),
    ("proc.name = ", 12, "end of condition"),
    ("(a", 2, "')'"),
    ("a)", 1, "unexpected ')'"),
    ("a b", 2, "'and'"),
    ("proc.name", 9, "operator"),
    ("proc.name = x and", 14, "after 'and'"),
    ("fd.num > x", 9, "a number"),
    ("proc.name in (a", 15, "')'"),
    ("not", 0, None),
    ("proc.name = 'x", 12, "unterminated"),
    ("= x", 0, "a field"),
])
def test_error_offsets_and_messages(text: str, offset: int, says: str | None) -> None:
    if says is None:
        parse_condition(text)  # `not` alone is a macro name to libsinsp
        return
    err = error(text)
    assert err.offset == offset
    assert says in err.reason
    assert isinstance(err, ConfigError)
    assert f"offset {offset}" in str(err)


def test_depth_is_capped_not_parentheses() -> None:
    assert parse_condition("(" * 5000 + "a" + ")" * 5000) == M("a")
    nested = "a"
    for _ in range(MAX_DEPTH):
        nested = f"not (b or {nested})"
    assert "nested" in error(nested).reason
    deep = "tolower(" * (MAX_DEPTH + 5) + "proc.name" + ")" * (MAX_DEPTH + 5) + " = x"
    assert "nested" in error(deep).reason


def test_unescape() -> None:
    assert unescape(r'"a\tb"') == "a\tb"
    with pytest.raises(ValueError, match="unsupported"):
        unescape(r'"\q"')


# -- properties ---------------------------------------------------------------

def _check_no_crash(text: str) -> None:
    try:
        parse_condition(text)
    except ConditionSyntaxError as err:
        assert 0 <= err.offset <= len(text)
        assert err.reason


@settings(max_examples=400)
@given(st.text())
def test_never_crashes_on_arbitrary_text(text: str) -> None:
    _check_no_crash(text)


_VOCABULARY = ["and", "or", "not", "not(", "(", ")", ",", " ", "\t", "\n", "\b", "\f", "\x00",
               "proc.name", "proc.aname[2]", "evt.arg.flags", "proc.env[HOME]", "fd.name[",
               "]", "=", "==", "!=", "<", "<=", ">", ">=", "contains ", "icontains ",
               "bcontains ", "startswith ", "bstartswith ", "endswith ", "glob ", "iglob ",
               "regex ", "in", "intersects", "pmatch", "exists", "val(", "tolower(",
               "toupper(", "b64(", "basename(", "len(", "'x'", '"y"', "'", '"', "\\", "\\n",
               "bare", "/etc/shadow", "-1", "0x1F", "1.5e+3", "*.log", "é", "macro_a", "in ("]


@settings(max_examples=1500)
@given(st.lists(st.sampled_from(_VOCABULARY), max_size=25))
def test_never_crashes_on_token_soup(tokens: list[str]) -> None:
    _check_no_crash("".join(tokens))


# Round trip: any syntax tree, written as text, parses back to itself.

_NAMES = st.sampled_from(["a", "open_read", "Spawned2", "and_x", "nothing", "or_else"])
_BARE = st.from_regex(r"[a-zA-Z0-9/_.*:\-\[\]<>!]{1,12}", fullmatch=True).filter(
    lambda s: not s.startswith(("val(", "not")))
_NUMBER = st.from_regex(r"[+\-]?[0-9]{1,6}(\.[0-9]{1,3})?", fullmatch=True)
_QUOTABLE = st.text(st.characters(blacklist_characters="\x00"), max_size=12).filter(
    lambda s: not s.endswith("\\"))
_FIELDS = st.one_of(
    st.builds(F, st.sampled_from(["proc.name", "fd.name", "evt.type", "fd.sip.name"])),
    st.builds(F, st.just("proc.aname"), st.from_regex(r"[0-9]{1,2}", fullmatch=True)),
    st.builds(F, st.just("proc.env"), st.text(
        st.characters(blacklist_characters="\x00\\'\"[]\t\n\v\f\r "), min_size=1, max_size=8)),
)
_OPERANDS = st.recursive(
    _FIELDS, lambda inner: st.builds(ast.Transform, st.sampled_from(
        ["tolower", "toupper", "b64", "basename", "len"]), inner), max_leaves=3)
_WORDS = st.one_of(st.builds(W, _BARE), st.builds(W, _QUOTABLE, st.just(True)))
_RIGHT_SIDES = st.one_of(
    st.tuples(st.sampled_from(["=", "!=", "contains", "glob", "endswith", "regex"]), _WORDS),
    st.tuples(st.sampled_from(["<", ">=", "<="]), st.builds(W, _NUMBER)),
    st.tuples(st.sampled_from(["in", "intersects", "pmatch"]),
              st.builds(ast.ListValue, st.lists(_WORDS, max_size=4).map(tuple))),
    st.tuples(st.sampled_from(["=", "<", "in"]), st.builds(ast.Value, _OPERANDS)),
    st.tuples(st.just("exists"), st.none()),
)
_CHECKS = st.builds(lambda left, right: ast.Compare(left, right[0], right[1]),
                    _OPERANDS, _RIGHT_SIDES)
_CONDITIONS = st.recursive(
    st.one_of(_CHECKS, st.builds(M, _NAMES)),
    lambda inner: st.one_of(
        st.builds(ast.Not, inner),
        st.builds(ast.And, st.lists(inner, min_size=2, max_size=3).map(tuple)),
        st.builds(ast.Or, st.lists(inner, min_size=2, max_size=3).map(tuple)),
    ), max_leaves=8)

_ESCAPE = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
           "\t": "\\t"}


def _write(node: ast.Node) -> str:
    if isinstance(node, ast.And | ast.Or):
        joiner = " and " if isinstance(node, ast.And) else " or "
        return joiner.join(f"({_write(i)})" if isinstance(i, ast.And | ast.Or) else _write(i)
                           for i in node.items)
    if isinstance(node, ast.Not):
        return f"not ({_write(node.item)})"
    if isinstance(node, ast.MacroRef):
        return node.name
    if isinstance(node, ast.Compare):
        right = "" if node.right is None else " " + _write(node.right)
        return f"{_write(node.left)} {node.op}{right}"
    if isinstance(node, ast.FieldRef):
        return node.name if node.arg is None else f"{node.name}[{node.arg}]"
    if isinstance(node, ast.Transform):
        return f"{node.name}({_write(node.operand)})"
    if isinstance(node, ast.Value):
        inner = _write(node.operand)
        return inner if isinstance(node.operand, ast.Transform) else f"val({inner})"
    if isinstance(node, ast.ListValue):
        return "(" + ", ".join(_write(i) for i in node.items) + ")"
    assert isinstance(node, ast.Word)
    if node.quoted:
        return '"' + "".join(_ESCAPE.get(c, c) for c in node.text) + '"'
    return node.text


@settings(max_examples=500)
@given(_CONDITIONS)
def test_written_conditions_parse_back(cond: ast.Condition) -> None:
    assert parse_condition(_write(cond)) == cond
