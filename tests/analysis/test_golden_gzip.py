"""The judge's golden files change only when their content does: a `--write` that stores
the same figures again leaves the same bytes (no timestamp or file name in the gzip header),
so a regenerated golden file is no diff to review unless a figure moved."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import pytest

from tests.analysis import detectable_corpus, judge_trace
from tests.analysis.golden_gzip import write_json_gz

GOLDEN_FILES = [judge_trace.GOLDEN, detectable_corpus.FIGURES]
FNAME = 0x08  # the gzip header's flag for a stored file name (RFC 1952)


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.name)
def test_a_stored_golden_file_carries_no_timestamp_or_name(path: Path) -> None:
    header = path.read_bytes()[:10]
    assert header[:2] == b"\x1f\x8b"
    assert int.from_bytes(header[4:8], "little") == 0, "mtime"
    assert not header[3] & FNAME, "file name"


def test_the_same_content_written_twice_apart_is_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content = [{"window": 1, "p": 0.0123456789, "verdict": "fail"}]
    first, second = tmp_path / "a.json.gz", tmp_path / "other_name.json.gz"
    write_json_gz(first, content)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)
    write_json_gz(second, content)
    assert first.read_bytes() == second.read_bytes()
    assert json.loads(gzip.decompress(second.read_bytes())) == content
