"""What the rule loader's stages share: positions in the files, and the one
record of problems."""

from __future__ import annotations

from bpfguard.rules.items import Problems, RulesFile, Scalar, Text
from bpfguard.rules.model import Context, ErrorCode, WarningCode

TEXT = "- macro: m\n  condition: evt.type = open\n"


def scalar_of(file: RulesFile, value: str, style: str | None = None) -> Scalar:
    """The scalar `value` as the first place its source text is in `file`."""
    raw = {None: value, "'": f"'{value}'", '"': f'"{value}"'}[style]
    start = file.text.index(raw)
    return Scalar(value, start, start + len(raw), style, file)


def test_file_contexts_are_one_based_and_inside_the_file() -> None:
    file = RulesFile("f.yaml", TEXT)
    ctx = file.context(TEXT.index("evt.type"), "condition expression")
    assert (ctx.line, ctx.column, ctx.offset) == (2, 14, TEXT.index("evt.type"))
    assert ctx.parent == file.root
    assert file.root.line == 0 and file.root.kind == "rules content"
    # Offsets past either end are clamped to the text.
    assert file.context(-5, "x").offset == 0
    assert file.context(10_000, "x").offset == len(TEXT)


def test_scalar_offsets_skip_the_quotes() -> None:
    file = RulesFile("f.yaml", "a: 'x = y'\n")
    scalar = scalar_of(file, "x = y", "'")
    assert [scalar.offset(i) for i in range(5)] == [4, 5, 6, 7, 8]
    assert scalar.offset(5) == 9  # just after the last character


def test_text_maps_appended_pieces_back_to_their_files() -> None:
    first = RulesFile("a.yaml", "c: evt.type = open\n")
    second = RulesFile("b.yaml", "c: proc.name = sh\n")
    text = Text.of(scalar_of(first, "evt.type = open")) + \
        Text.of(scalar_of(second, "proc.name = sh"))
    assert text.text == "evt.type = open proc.name = sh"
    parent = Context("a.yaml", 1, 1, "macro condition")
    at = text.context_at(text.text.index("proc"), parent, "condition expression")
    assert (at.file, at.line, at.column, at.parent) == ("b.yaml", 1, 4, parent)
    at = text.context_at(text.text.index("open"), parent, "condition expression")
    assert (at.file, at.column) == ("a.yaml", 15)


def test_built_text_is_in_no_file() -> None:
    parent = Context("a.yaml", 3, 5, "exception", "e")
    assert Text.built("(proc.name in (sh))").context_at(4, parent, "x") is parent


def test_problems_say_each_thing_once_in_the_order_found() -> None:
    problems = Problems()
    ctx = Context("f.yaml", 1, 1, "rule", "r")
    problems.warn(WarningCode.LOAD_UNUSED_LIST, "unused", ctx)
    assert problems.ok
    problems.error(ErrorCode.LOAD_ERR_VALIDATE, "bad", ctx)
    problems.error(ErrorCode.LOAD_ERR_VALIDATE, "worse", ctx)
    problems.error(ErrorCode.LOAD_ERR_VALIDATE, "bad", ctx)  # a macro checked twice, say
    assert not problems.ok
    assert [p.message for p in problems.errors] == ["bad", "worse"]
    assert [p.message for p in problems.warnings] == ["unused"]
