"""One guard for what users hand bpfguard (rules, policies, configs, seccomp
profiles, firewall configs, control-socket requests): its size, its encoding
and how deeply it nests, checked before a parser reads all of it or recurses
into it. Python's YAML composer and JSON decoder recurse once per level, so
20,000 nested brackets end in a RecursionError, not a message; a 1 GB file
is read whole before anything says it is too big. Each check raises
:class:`InputError` with the line and column it concerns, which the caller
turns into its own error (file:line:col, every problem of its kind).

Limits: :data:`MAX_NESTING` levels of YAML or JSON collections (Falco's
rules nest about six deep, Tetragon's policies about eight), and a byte
size per kind of input that the caller names.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

__all__ = ["MAX_NESTING", "GuardedLoader", "InputError", "check_json_nesting", "decode_text",
           "read_text"]

#: Collections (mappings, sequences; objects, arrays) inside each other.
MAX_NESTING: Final = 128


@dataclass
class InputError(ValueError):
    """What is wrong with an input, and where: 1-based line and column (0:
    the whole input), and the offset in the text (characters; bytes for
    what is not text)."""

    message: str
    line: int = 0
    column: int = 0
    offset: int = 0

    def __str__(self) -> str:
        return self.message


def _line_col(data: bytes | str, offset: int) -> tuple[int, int]:
    head = data[:offset]
    nl = b"\n" if isinstance(head, bytes) else "\n"
    line = head.count(nl) + 1  # type: ignore[arg-type]
    return line, offset - (head.rfind(nl) + 1) + 1  # type: ignore[arg-type]


def decode_text(data: bytes) -> str:
    """`data` as UTF-8 text; InputError at the first byte that is not, or at
    a NUL (a binary file)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, col = _line_col(data, exc.start)
        raise InputError(f"not UTF-8 text: byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}", line, col, exc.start) from None
    nul = text.find("\0")
    if nul >= 0:
        line, col = _line_col(text, nul)
        raise InputError("binary data (a NUL byte), not text", line, col, nul)
    return text


def read_text(path: str | os.PathLike[str], max_bytes: int) -> str:
    """The UTF-8 text of file `path`, refused (InputError) before it is read
    when it is larger than `max_bytes`. OSError as open and read raise it."""
    with Path(path).open("rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size > max_bytes:
            raise InputError(f"{size:,} bytes: larger than the {max_bytes:,} bytes bpfguard "
                             "reads from such a file")
        data = f.read(max_bytes + 1)  # (a file that grew meanwhile, or one /proc says is 0)
    if len(data) > max_bytes:
        raise InputError(f"larger than the {max_bytes:,} bytes bpfguard reads from such a file")
    return decode_text(data)


class GuardedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing (InputError) what would make it or the
    code walking its nodes recurse without bound: collections nested more
    than :data:`MAX_NESTING` deep (its composer recurses a level a call),
    counting what an alias brings in; an alias inside the collection it
    names (a cycle); and an alias to a collection that holds aliases
    itself (expanded, such chains grow exponentially). Use it where
    ``yaml.SafeLoader`` would be (``compose``, ``compose_all``)."""

    def __init__(self, stream: str, *, max_items: int | None = None,
                 max_items_why: str = "") -> None:
        super().__init__(stream)
        # a list longer is refused at its first item too many, before the
        # rest is composed (`max_items_why` ends the message: whose limit)
        self._max_items = max_items
        self._max_items_why = max_items_why
        self._depth = 0
        self._peak = 0                       # deepest level reached in the current collection
        self._open: list[str] = []           # anchors of the collections being composed
        self._heights: dict[str, int] = {}   # anchored collection -> levels it spans
        self._aliasing: set[str] = set()     # anchored collections holding an alias

    def _refuse(self, message: str, mark: Any) -> InputError:
        return InputError(message, mark.line + 1 if mark else 0,
                          mark.column + 1 if mark else 0, mark.index if mark else 0)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if self._max_items is not None and isinstance(parent, yaml.SequenceNode) \
                and index >= self._max_items:
            raise self._refuse(f"a list of more than {self._max_items:,} items"
                               + (f": {self._max_items_why}" if self._max_items_why else ""),
                               event.start_mark)
        if isinstance(event, yaml.AliasEvent) and event.anchor in self._open:
            raise self._refuse(f"alias *{event.anchor} inside the collection &{event.anchor} "
                               "it names (a cycle)", event.start_mark)
        if isinstance(event, yaml.AliasEvent) and event.anchor in self._heights:
            anchor = event.anchor
            if anchor in self._aliasing:
                raise self._refuse(f"alias *{anchor} to a collection that holds aliases itself "
                                   "(expanded, such chains grow exponentially)",
                                   event.start_mark)
            self._aliasing.update(self._open)
            self._peak = max(self._peak, self._depth + self._heights[anchor])
            if self._peak > MAX_NESTING:
                raise self._refuse(f"nested more than {MAX_NESTING} levels deep with what "
                                   f"alias *{anchor} brings in", event.start_mark)
            return super().compose_node(parent, index)
        if not isinstance(event, yaml.CollectionStartEvent):
            return super().compose_node(parent, index)
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise self._refuse(f"nested more than {MAX_NESTING} levels deep (mappings and "
                               "sequences inside each other)", event.start_mark)
        outer_peak, self._peak = self._peak, self._depth
        if event.anchor:
            self._open.append(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            if event.anchor:
                self._open.pop()
                self._heights[event.anchor] = self._peak - self._depth + 1
            self._peak = max(outer_peak, self._peak)
            self._depth -= 1


    def top_items(self) -> Iterator[tuple[bool, yaml.Node]]:
        """The stream's documents, a top-level sequence's composed one item
        at a time: (True, item) for each item of a document that is a
        sequence, (False, document) for any other document. Memory holds
        one item's nodes at a time, not a whole file's; errors are raised
        where the parser meets them, as compose_all would."""
        self.get_event()  # type: ignore[no-untyped-call]  # stream start
        while not self.check_event(yaml.StreamEndEvent):
            self.get_event()  # type: ignore[no-untyped-call]  # document start
            if self.check_event(yaml.SequenceStartEvent):
                start = self.get_event()  # type: ignore[no-untyped-call]
                if start.anchor:   # an alias to the sequence from inside it: a cycle
                    self._open.append(start.anchor)
                self._depth = self._peak = 1
                while not self.check_event(yaml.SequenceEndEvent):
                    node = self.compose_node(None, 0)
                    assert node is not None
                    yield True, node
                self.get_event()  # type: ignore[no-untyped-call]  # sequence end
                self._depth = self._peak = 0
                self._open.clear()
            else:
                node = self.compose_node(None, 0)
                assert node is not None
                yield False, node
            self.get_event()  # type: ignore[no-untyped-call]  # document end
            self.anchors = {}


# a JSON string (skipped whole; possessive, and an unclosed one runs to the
# end, so that the scan stays linear) or a bracket
_JSON_TOKENS: Final = re.compile(rb'"(?:[^"\\]|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)


def check_json_nesting(text: str | bytes, limit: int = MAX_NESTING) -> None:
    """InputError where `text`'s objects and arrays nest more than `limit`
    deep (brackets inside strings do not count). Linear; the JSON itself is
    the decoder's to check."""
    data = text.encode() if isinstance(text, str) else text
    depth = 0
    for m in _JSON_TOKENS.finditer(data):
        token = m.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > limit:
                line, col = _line_col(data, m.start())
                raise InputError(f"nested more than {limit} levels deep (objects and arrays "
                                 "inside each other)", line, col, m.start())
        elif token in (b"]", b"}"):
            depth -= 1
