"""`rmt flops`: forward FLOPs of full attention and of RMT, counted analytically and checked against a counter.

One job per module:

    shapes       model geometry (`ModelShape`, the OPT family) and where it comes from; request validation
    count        the analytic Chinchilla count and its conventions, full attention vs RMT
    measurement  real forwards of small random models under FlopCounterMode (`--measure`)
    report       tables, CSV, JSON, the Figure 3 plot and the output folder's files
    command      the `rmt flops` command itself: options, then count or measure, then report

The names below are the package's Python API (docs/flops.md); import them from `rmt_cli.flops`.
"""

from rmt_cli.flops.command import (
    DEFAULT_TOKENS,
    FORMATS,
    check_format,
    check_out_folder,
    parse_tokens,
    run_command,
)
from rmt_cli.flops.count import (
    BASE_TOKENS,
    CONVENTIONS,
    DEFAULT_SEGMENT_LENGTH,
    PAPER_RATIOS,
    PAPER_TOKENS,
    Convention,
    compare,
    convention,
    forward_flops,
    forward_terms,
    full_attention_flops,
    paper_check,
    rmt_flops,
    segment_count,
)
from rmt_cli.flops.measurement import (
    MEASURE_LABELS,
    MEASURE_MAX_FULL_TOKENS,
    MEASURE_MAX_TOKENS,
    TINY_MODELS,
    count_flops,
    measure,
    measure_model,
    tiny_hf_config,
)
from rmt_cli.flops.report import (
    curve_lengths,
    plot_figure,
    to_csv,
    to_json,
    write_outputs,
)
from rmt_cli.flops.shapes import (
    OPT_FAMILY,
    ModelShape,
    backbone_hf_config,
    backbone_shape,
    resolve_models,
    segment_content,
    shape_from_hf_config,
    validate,
)

__all__ = [
    "BASE_TOKENS", "CONVENTIONS", "DEFAULT_SEGMENT_LENGTH", "DEFAULT_TOKENS", "FORMATS", "MEASURE_LABELS",
    "MEASURE_MAX_FULL_TOKENS", "MEASURE_MAX_TOKENS", "OPT_FAMILY", "PAPER_RATIOS", "PAPER_TOKENS", "TINY_MODELS",
    "Convention", "ModelShape", "backbone_hf_config", "backbone_shape", "check_format", "check_out_folder", "compare",
    "convention", "count_flops", "curve_lengths", "forward_flops", "forward_terms", "full_attention_flops", "measure",
    "measure_model", "paper_check", "parse_tokens", "plot_figure", "resolve_models", "rmt_flops", "run_command",
    "segment_content", "segment_count", "shape_from_hf_config", "tiny_hf_config", "to_csv", "to_json", "validate",
    "write_outputs",
]
