"""rmt: an experiment runner for the Recurrent Memory Transformer."""

from pathlib import Path

__version__ = "0.1.0"


def config_dir() -> Path:
    """conf/ ships inside the wheel as rmt_cli/conf; an editable install reads the repo's top-level conf/."""
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf"
