"""Files written whole or not at all: written under a temporary name in the same folder, then renamed over the
target, so that a reader (another process, a later run) never sees half a file, and a write cut short leaves the
old file, if any, as it was."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_file(path: Path, mode: str = "w", encoding: str | None = None) -> Iterator[IO[Any]]:
    """An open temporary file beside `path` that replaces `path` when the block ends without an error, readable by
    all (temporary files are created private; caches and corpora may be shared). On an error it is removed."""
    staging = tempfile.NamedTemporaryFile(mode, dir=path.parent, prefix=f".{path.name}-", suffix=".tmp",
                                          delete=False, encoding=encoding)
    try:
        with staging:
            yield staging
        os.chmod(staging.name, 0o644)
        os.replace(staging.name, path)
    except BaseException:
        Path(staging.name).unlink(missing_ok=True)
        raise
