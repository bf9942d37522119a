"""`rmt attention`: where the memory is written, kept and read (the RMT paper's Figure 6).

A few test samples run through the engine one segment at a time with the backbone on eager attention, so every
layer returns its attention weights. Positions of a segment fall into groups, and the attention between groups is
summarised for three segments of each sample: one that holds a fact (write), one without facts between it and the
question (keep) and the last one (read). Next to it, how far each segment moves the memory.

One job per module:

    groups    the group of every position of a segment, and attention summarised between groups
    segments  which segments matter: fact segments, the write/keep/read roles, memory change
    capture   a sample through the engine, keeping attention maps and memory states
    report    per-sample reports, their means, attention.json and the printed summary
    plots     attention.png, attention_tokens.png and memory_change.png
    command   the `rmt attention` command itself

The names below are what other modules and the tests import; import them from `rmt_cli.attention`.
"""

from rmt_cli.attention.capture import (
    SampleCapture,
    capture_sample,
    eager_attention,
    select_attention,
)
from rmt_cli.attention.command import attention_from_config
from rmt_cli.attention.groups import (
    CLS,
    CONTENT,
    FACT,
    GROUPS,
    MEMORY,
    OTHER,
    QUESTION,
    QUESTION_END,
    READER,
    SEP,
    WRITE,
    WRITER,
    fact_spans,
    group_attention,
    position_groups,
    positions_of,
)
from rmt_cli.attention.report import sample_report, summary_lines
from rmt_cli.attention.segments import (
    ROLES,
    fact_segments,
    memory_change,
    pick_roles,
    ranked_segments,
)

__all__ = [
    "CLS", "CONTENT", "FACT", "GROUPS", "MEMORY", "OTHER", "QUESTION", "QUESTION_END", "READER", "ROLES", "SEP",
    "WRITE", "WRITER", "SampleCapture", "attention_from_config", "capture_sample", "eager_attention", "fact_segments",
    "fact_spans", "group_attention", "memory_change", "pick_roles", "position_groups", "positions_of",
    "ranked_segments", "sample_report", "select_attention", "summary_lines",
]
