"""The offline default noise corpus: six Jane Austen novels from Debian's `r-cran-janeaustenr` package.

The package stores the novels as R data (one character vector of lines per novel), which `rdata`
reads without R. `python -m rmt_cli.austen [DEST]` fetches them into DEST as <novel>.txt.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
import tempfile
import warnings
import zlib
from pathlib import Path

from rmt_cli.atomic import atomic_file
from rmt_cli.errors import RmtError, RuntimeFailure

PACKAGE = "r-cran-janeaustenr"
NOVELS = ("emma", "mansfieldpark", "northangerabbey", "persuasion", "prideprejudice", "sensesensibility")
_DATA_DIR = Path("usr/lib/R/site-library/janeaustenr/data")
_FALLBACK = "or use your own text with noise=files noise.paths=[DIR]"


def default_austen_dir() -> Path:
    """$RMT_DATA_DIR/austen if set, else ~/.cache/rmt/corpora/austen."""
    from rmt_cli.download import corpus_folder

    return corpus_folder("austen")


def fetch_austen(dest: Path) -> list[Path]:
    """Write dest/<novel>.txt for the six novels; does nothing if they all exist already."""
    dest = Path(dest).expanduser()
    paths = [dest / f"{name}.txt" for name in NOVELS]
    if all(p.is_file() for p in paths):
        return paths
    for tool in ("apt-get", "dpkg"):
        if shutil.which(tool) is None:
            raise RuntimeFailure(f"`{tool}` not found: the Austen corpus comes from Debian's {PACKAGE} package; "
                                 f"run on Debian/Ubuntu, {_FALLBACK}")
    with tempfile.TemporaryDirectory(prefix="rmt-austen-") as tmp:
        novels = read_novels(_unpack(Path(tmp)))
    dest.mkdir(parents=True, exist_ok=True)
    for name, path in zip(NOVELS, paths, strict=True):
        with atomic_file(path, encoding="utf-8") as novel:  # a fetch cut short never leaves a partial novel behind
            novel.write(novels[name])
    return paths


def _unpack(workdir: Path) -> Path:
    """Download and extract the .deb into workdir; return the package's R data directory."""
    # apt-get prints a harmless warning about the unsandboxed download when run as root.
    download = _run(["apt-get", "download", PACKAGE], cwd=workdir)
    if download.returncode != 0:
        raise RuntimeFailure(f"`apt-get download {PACKAGE}` failed ({_last_line(download)}); "
                             f"run `apt-get update` and check the network, {_FALLBACK}")
    debs = sorted(workdir.glob(f"{PACKAGE}_*.deb"))
    if not debs:
        raise RuntimeFailure(f"`apt-get download {PACKAGE}` produced no .deb in {workdir}; "
                             f"run `apt-get update` and retry, {_FALLBACK}")
    extract = _run(["dpkg", "-x", str(debs[-1]), str(workdir / "root")], cwd=workdir)
    if extract.returncode != 0:
        raise RuntimeFailure(f"`dpkg -x {debs[-1].name}` failed ({_last_line(extract)}); "
                             f"check that dpkg works and the disk has space, {_FALLBACK}")
    return workdir / "root" / _DATA_DIR


def read_novels(data_dir: Path) -> dict[str, str]:
    """Read the novels from the package's lazy-load database (Rdata.rdx index + Rdata.rdb blobs)."""
    import rdata

    rdx, rdb = data_dir / "Rdata.rdx", data_dir / "Rdata.rdb"
    if not (rdx.is_file() and rdb.is_file()):
        raise RuntimeFailure(f"{PACKAGE} has no R data at {data_dir}; the package layout changed, {_FALLBACK}")

    def parse(raw: bytes):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Unknown file type", category=UserWarning)
            return rdata.conversion.convert(rdata.parser.parse_data(raw))

    index = parse(gzip.decompress(rdx.read_bytes()))["variables"]
    blob = rdb.read_bytes()
    novels = {}
    for name in NOVELS:
        offset, length = (int(x) for x in index[name])
        # Each blob is a 4-byte big-endian uncompressed length followed by a zlib stream.
        lines = parse(zlib.decompress(blob[offset + 4 : offset + length]))
        novels[name] = "\n".join(str(line) for line in lines) + "\n"
    return novels


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit code {proc.returncode}"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1 or any(a.startswith("-") for a in args):
        print("usage: python -m rmt_cli.austen [DEST]", file=sys.stderr)
        return 2
    dest = Path(args[0]).expanduser() if args else default_austen_dir()
    try:
        paths = fetch_austen(dest)
    except RmtError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    print(f"Austen corpus: {len(paths)} novels, {megabytes:.1f} MB in {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
