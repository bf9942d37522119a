"""`rmt attention`: capture a trained run's attention on a few test samples, then write its figures and
attention.json to the run folder and print a summary."""

from __future__ import annotations

import json

from rmt_cli.attention.capture import capture_sample
from rmt_cli.attention.report import (
    Setting,
    attention_json,
    headline,
    role_means,
    sample_report,
    summary_lines,
    token_map,
)
from rmt_cli.errors import UsageError

DEFAULT_SEGMENTS = 4


def attention_from_config(cfg) -> None:
    """Everything `rmt attention` does, from the composed config of the command (`--checkpoint` and overrides)."""
    from rmt_cli.attention.plots import write_figures
    from rmt_cli.inference import predict
    from rmt_cli.trained_run import command_run_folder, load_trained

    cfg, _, folder, experiment = load_trained(cfg)
    model, factory = experiment.model, experiment.eval_data
    setting = read_setting(cfg, str(folder), model, factory.content_length)
    run_dir = command_run_folder(cfg)

    samples = factory.sample_set("test", cfg.task.eval_seed, setting.segments, cfg.samples)
    captures = [capture_sample(model, factory, s, setting.layer, setting.head, experiment.autocast)
                for s in samples]
    predictions = predict(experiment, factory, samples, batch_size=len(samples))
    labels = list(experiment.task.labels)
    reports = [sample_report(i, s, c, int(p), labels, setting.layout)
               for i, (s, c, p) in enumerate(zip(samples, captures, predictions, strict=True))]
    means = role_means(reports)
    tokens = token_map(reports[0], captures[0], experiment.tokenizer)

    write_figures(run_dir, setting, means, reports, tokens)
    (run_dir / "attention.json").write_text(json.dumps(attention_json(setting, means, reports, tokens), indent=1))
    print(headline(setting, len(samples)))
    for line in summary_lines(reports, setting.segments, setting.layout):
        print(line)
    print(f"wrote attention.png, attention_tokens.png, memory_change.png and attention.json to {run_dir}")


def read_setting(cfg, checkpoint: str, model, content_length: int) -> Setting:
    """The run's setting from the composed config (task.segments, layer, head) and the trained engine; --layer and
    --head are checked against the backbone."""
    segments = cfg.task.segments
    backbone_config = model.backbone.config
    layers, heads = int(backbone_config.num_hidden_layers), int(backbone_config.num_attention_heads)
    layer, head = cfg.layer, cfg.head
    check_range("layer", layer, layers, "layers")
    check_range("head", head, heads, "attention heads")
    return Setting(checkpoint=checkpoint, task=cfg.task.name,
                   segments=DEFAULT_SEGMENTS if segments is None else segments,
                   content_length=content_length, memory_size=model.memory_size, layer=layer, head=head,
                   layers=layers, heads=heads, layout=model.layout)


def check_range(name: str, value: int | None, count: int, what: str) -> None:
    if value is not None and not 0 <= value < count:
        raise UsageError(f"--{name} {value}: the backbone has {count} {what} (0-{count - 1}); "
                         f"leave --{name} out to average over all of them")
