"""binaryDigests: the formats Tetragon takes, and a file's digests."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest

from bpfguard.policy import PolicyError, load_policy_text
from bpfguard.policy.digest import digest_problem, file_digest, matching_digest

SHA = "ab" * 32


@pytest.mark.parametrize(("text", "why"), [
    (f"sha256:{SHA}", None),
    (f" SHA256 : {SHA.upper()} ", None),
    ("build-id:0123abcd", None),
    (SHA, "expected <algo>:<hex>"),
    (f"md5:{SHA}", "algorithm 'md5' is not one of sha1, sha256, sha384, sha512, build-id"),
    ("sha256:abc", "a sha256 digest is 64 hex digits"),
    (f"sha1:{'zz' * 20}", "a sha1 digest is 40 hex digits"),
])
def test_digest_formats(text: str, why: str | None) -> None:
    got = digest_problem(text)
    assert (got is None) if why is None else (got is not None and why in got)


def test_a_policy_with_a_bad_digest_names_the_entry() -> None:
    text = ("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: d}\n"
            "spec:\n  uprobes:\n  - path: /bin/true\n    symbols: [main]\n"
            "    binaryDigests: [sha256:abc]\n    ignore: {digestVerificationFailure: true}\n")
    with pytest.raises(PolicyError) as info:
        load_policy_text("d.yaml", text)
    [p] = info.value.problems
    assert (p.context.line, p.context.name) == (8, "spec.uprobes[0].binaryDigests[0]")
    ok = load_policy_text("d.yaml", text.replace("sha256:abc", f"sha256:{SHA}"))
    assert ok.uprobes[0].binary_digests == (f"sha256:{SHA}",)
    assert ok.uprobes[0].ignore_digest_failure


def test_a_files_digests(tmp_path: Path) -> None:
    f = tmp_path / "bin"
    shutil.copy("/bin/true", f)
    data = f.read_bytes()
    fd = os.open(f, os.O_RDONLY)
    try:
        assert file_digest(fd, "sha256") == hashlib.sha256(data).hexdigest()
        assert len(file_digest(fd, "build-id")) >= 16  # Debian's binaries carry one
        good = "sha512:" + hashlib.sha512(data).hexdigest()
        assert matching_digest(fd, (f"sha256:{SHA}", good)) == (good, "")
        found, has = matching_digest(fd, (f"sha256:{SHA}",))
        assert found is None and has == f"sha256:{hashlib.sha256(data).hexdigest()}"
    finally:
        os.close(fd)
