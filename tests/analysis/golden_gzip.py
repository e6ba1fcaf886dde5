"""Golden files are gzipped JSON with no timestamp or file name in their gzip header, so a
`--write` that stores the same content again leaves the same bytes and a golden file's
diff shows only when a figure moved."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any


def write_json_gz(path: Path, value: Any, **dump_options: Any) -> None:
    """Store `value` as JSON in `path`, gzipped at level 9 with mtime 0 and no name."""
    with (
        path.open("wb") as raw,
        gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as f,
    ):
        f.write(json.dumps(value, **dump_options).encode())
