"""What every run folder records about where it ran: the source commit, package versions and the device."""

from __future__ import annotations

import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

FILE = "run_info.json"
PACKAGES = ("torch", "transformers")


def git_commit(folder: Path) -> dict | None:
    """The commit of the checkout holding `folder` (and whether it has uncommitted changes), or None outside one."""
    def git(*args):
        return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").stdout.strip())
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine
        return None
    return {"commit": head.stdout.strip(), "dirty": dirty}


def package_versions() -> dict[str, str | None]:
    from rmt_cli import __version__

    versions: dict[str, str | None] = {"rmt": __version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_info(device: torch.device) -> dict:
    info: dict[str, str | None] = {"device": str(device), "python": platform.python_version(),
                                   "platform": platform.platform()}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info.update(gpu=torch.cuda.get_device_name(index), cuda=torch.version.cuda)
    return info


def collect(device: torch.device) -> dict:
    return {"git": git_commit(Path(__file__).resolve().parent), "packages": package_versions(),
            **device_info(device)}


def write(run_dir: Path, info: dict) -> Path:
    path = Path(run_dir) / FILE
    path.write_text(json.dumps(info, indent=2))
    return path


def read(run_dir: Path) -> dict | None:
    try:
        return json.loads((Path(run_dir) / FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
