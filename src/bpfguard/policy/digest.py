"""``binaryDigests`` of a uprobe: the binaries it may attach to.

A digest is ``<algo>:<hex>`` as Tetragon takes it: a hash of the whole file
(sha1, sha256, sha384, sha512, by hashlib) or the ELF ``build-id`` note (by
pyelftools).
"""

from __future__ import annotations

import hashlib
import os
from typing import Final

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import NoteSection

__all__ = ["DIGEST_ALGOS", "digest_problem", "file_digest", "matching_digest"]

# algorithm -> hex digits of its digest (None: any, a build id's length varies)
DIGEST_ALGOS: Final = {"sha1": 40, "sha256": 64, "sha384": 96, "sha512": 128, "build-id": None}


def digest_problem(text: str) -> str | None:
    """Why `text` is not a digest Tetragon takes; None when it is."""
    algo, sep, value = text.strip().partition(":")
    algo, value = algo.strip().lower(), value.strip().lower()
    if not sep or not algo or not value:
        return f"binary digest {text!r}: expected <algo>:<hex>, e.g. sha256:0123..."
    if algo not in DIGEST_ALGOS:
        return (f"binary digest {text!r}: algorithm {algo!r} is not one of "
                f"{', '.join(DIGEST_ALGOS)}")
    want = DIGEST_ALGOS[algo]
    if any(c not in "0123456789abcdef" for c in value) or (want and len(value) != want):
        length = f"{want} hex digits" if want else "hex digits"
        return f"binary digest {text!r}: a {algo} digest is {length}"
    return None


def file_digest(fd: int, algo: str) -> str:
    """The `algo` digest (lower-case hex) of the open file `fd`, read from
    its start; OSError or ValueError (no build id) when it cannot be had."""
    with os.fdopen(os.dup(fd), "rb") as f:  # (a dup shares the offset: start over)
        f.seek(0)
        if algo == "build-id":
            try:
                elf = ELFFile(f)
                for sec in elf.iter_sections():
                    if isinstance(sec, NoteSection):
                        for note in sec.iter_notes():
                            # (pyelftools names type 3 so in any namespace)
                            if note["n_name"] == "GNU" and note["n_type"] == "NT_GNU_BUILD_ID":
                                return str(note["n_desc"]).lower()
            except ELFError as exc:
                raise ValueError(f"not an ELF object ({exc})") from None
            raise ValueError("no build id note")
        return hashlib.file_digest(f, algo).hexdigest()


def matching_digest(fd: int, digests: tuple[str, ...]) -> tuple[str | None, str]:
    """The first of `digests` the file `fd` has (None: none), and the file's
    own digests as text, for a message."""
    seen: dict[str, str] = {}
    for d in digests:
        algo, _, want = d.strip().partition(":")
        algo, want = algo.strip().lower(), want.strip().lower()
        if algo not in seen:
            try:
                seen[algo] = file_digest(fd, algo)
            except (OSError, ValueError) as exc:
                seen[algo] = f"<{exc}>"
        if seen[algo] == want:
            return d, ""
    return None, ", ".join(f"{a}:{h}" for a, h in seen.items())
