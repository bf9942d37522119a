"""rmt: an experiment runner for the Recurrent Memory Transformer.

From Python: `rmt_cli.load_run(path)` loads a trained run or an exported folder, `rmt_cli.wrap(backbone, tokenizer,
labels)` builds a RecurrentMemory model around any Hugging Face backbone (see rmt_cli.api).
"""

from pathlib import Path

__version__ = "0.1.0"
__all__ = ["RecurrentMemory", "Run", "load_run", "wrap", "config_dir"]


def __getattr__(name: str):
    # Imported on first use, so that `rmt --help` does not pay for torch and transformers.
    if name in ("load_run", "wrap", "Run"):
        from rmt_cli import api

        return getattr(api, name)
    if name == "RecurrentMemory":
        from rmt_cli.engine import RecurrentMemory

        return RecurrentMemory
    raise AttributeError(f"module 'rmt_cli' has no attribute {name!r}")


def config_dir() -> Path:
    """conf/ ships inside the wheel as rmt_cli/conf; an editable install reads the repo's top-level conf/. The
    schemas its defaults lists name are put in Hydra's ConfigStore first."""
    from rmt_cli.schema import register

    register()
    packaged = Path(__file__).resolve().parent / "conf"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "conf"
