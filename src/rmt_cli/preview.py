"""`rmt preview`: one sample of a task, decoded, with its facts, question and answer highlighted.

The sample is test sample 0 of the set seeded by `seed`, drawn exactly as `rmt eval` draws its test sets, from
the eval split of the noise. Only the tokenizer and the noise are loaded, so this takes seconds.
"""

from __future__ import annotations

from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from rmt_cli.backbones import load_tokenizer
from rmt_cli.corpus import load_noise
from rmt_cli.experiment import check_sizes, task_spec
from rmt_cli.samples import SampleFactory

STYLES = {"noise": "dim", "fact": "bold green", "question": "bold yellow", "answer": "bold black on green"}


def segment_text(runs, tokenizer, answer: str) -> Text:
    text = Text()
    for kind, tokens in runs:
        part = Text(tokenizer.decode(tokens.tolist()).strip(), style=STYLES[kind])
        if kind == "fact":
            part.highlight_words([answer], style=STYLES["answer"], case_sensitive=False)
        if text:
            text.append(" ")
        text.append_text(part)
    return text


def preview_from_config(cfg, console: Console | None = None) -> None:
    n_segments, seed = cfg.segments, cfg.seed
    content = check_sizes(cfg)
    task = task_spec(cfg)
    tokenizer = load_tokenizer(cfg.backbone)
    noise = load_noise(cfg.noise, tokenizer)
    factory = SampleFactory(task, noise.eval, tokenizer, content)
    sample = factory.sample_set("test", seed, n_segments, 1)[0]
    answer = task.labels[sample.label]

    console = console or Console()
    console.rule(f"{task.name}: {n_segments} segment{'s' * (n_segments > 1)} of {content} content tokens, "
                 f"seed {seed}")
    console.print(Text.assemble("legend: ", ("noise", STYLES["noise"]), "  ", ("fact", STYLES["fact"]), "  ",
                                ("question", STYLES["question"]), "  ", ("answer", STYLES["answer"])))
    for index in range(n_segments):
        facts = sum(f.segment == index for f in sample.facts)
        title = f"segment {index + 1}/{n_segments}" + (f", {facts} fact{'s' * (facts > 1)}" if facts else "")
        console.print(Panel(segment_text(factory.runs(sample, index), tokenizer, answer), title=title,
                            title_align="left"))
    console.print(Text.assemble("answer: ", (answer, STYLES["answer"]),
                                f"  (label {sample.label} of {len(task.labels)}: {', '.join(task.labels)})"))
