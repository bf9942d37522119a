"""`rmt flops`: its options checked, the rows counted (or measured), printed and written."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

from rmt_cli.errors import UsageError
from rmt_cli.flops.count import DEFAULT_SEGMENT_LENGTH, compare, convention
from rmt_cli.flops.measurement import measure
from rmt_cli.flops.report import (
    curve_lengths,
    render_measure_table,
    render_table,
    to_csv,
    to_json,
    write_outputs,
)
from rmt_cli.flops.shapes import resolve_models

DEFAULT_TOKENS = (512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2048000)
FORMATS = ("table", "csv", "json")


def run_command(models: str | None = None, tokens: str | None = None,
                segment_length: int = DEFAULT_SEGMENT_LENGTH, memory_size: int = 0, backbone: str | None = None,
                fmt: str = "table", out: Path | None = None, measure_flops: bool = False,
                convention_name: str | None = None, echo: Callable[[str], None] = print,
                conf_dir: Path | None = None) -> list[dict]:
    """Everything `rmt flops` does: count (or measure), print in `fmt`, write CSV (+ PNG) into the output folder.

    Files are written for `--format table`, and for csv/json only when `out` is given, so that piped output does not
    leave folders behind. Status lines go to stderr; stdout carries only the table, CSV or JSON.
    """
    fmt = check_format(fmt)
    if out is not None:
        check_out_folder(Path(out))
    lengths = parse_tokens(tokens) if tokens is not None else None
    if measure_flops:
        if convention_name and convention(convention_name).name != "matmul":
            raise UsageError("--measure compares against the matmul convention; drop --convention")
        rows, curves = measure(models, lengths, segment_length, memory_size, backbone, conf_dir), None
    else:
        conv = convention(convention_name)
        shapes = resolve_models(models, backbone, conf_dir)
        rows = compare(shapes, lengths or list(DEFAULT_TOKENS), segment_length, memory_size, conv)
        curves = compare(shapes, curve_lengths([row["tokens"] for row in rows]), segment_length, memory_size, conv)
    if fmt == "json":
        echo(to_json(rows))
    elif fmt == "csv":
        echo(to_csv(rows).rstrip("\n"))
    else:
        from rich.console import Console

        console = Console(width=max(140, Console().width))
        table = render_measure_table(rows) if measure_flops else render_table(
            rows, segment_length, memory_size, convention(convention_name).name)
        console.print(table)
    if fmt == "table" or out is not None:
        write_outputs(rows, Path(out) if out is not None else default_out_dir(), plot=not measure_flops,
                      curves=curves)
    return rows


def parse_tokens(text: str | None, default: Sequence[int] = DEFAULT_TOKENS) -> list[int]:
    """--tokens: comma-separated positive integers ("512,2048000" or "2_048_000")."""
    if text is None:
        return list(default)
    values = []
    for item in text.split(","):
        item = item.strip()
        try:
            value = int(item)
        except ValueError:
            raise UsageError(f"--tokens takes comma-separated positive integers, got '{item}'") from None
        if value <= 0:
            raise UsageError(f"--tokens must be positive, got {value}; e.g. --tokens 512,4096,2048000")
        values.append(value)
    if not values:
        raise UsageError("--tokens is empty; e.g. --tokens 512,4096,2048000")
    return values


def check_format(fmt: str) -> str:
    fmt = (fmt or "").strip().lower()
    if fmt not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")
    return fmt


def check_out_folder(out: Path) -> None:
    """--out must be a folder this process can create or write to; checked before anything is computed."""
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise UsageError(f"--out {out}: {existing} is a file, not a folder; give a folder for flops.csv and flops.png")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot write to {existing}; choose a folder you can write to")


def default_out_dir() -> Path:
    """Where `--format table` writes without --out: a new timestamped folder under outputs/flops."""
    return Path("outputs") / "flops" / datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
