"""How the command line words the library's errors: the config keys and commands that fix them.

Library modules raise typed errors (those named in WORDINGS) that say what is wrong in their own terms and carry
the values involved; they know nothing of Hydra overrides or of `rmt`'s commands. `user_message` turns such an
error into the one line `rmt` prints, naming the setting to change or the command to run. An error without a wording
here is printed as it is.

Wordings are looked up by the error class's full name, so that printing an error imports no library module (a bad
override fails before torch is imported, and its message should not wait for it).
"""

from __future__ import annotations

from typing import Any, Callable

from rmt_cli.errors import RmtError

# Which setting a tensor's shape follows, for the message when a checkpoint does not fit the model.
SHAPE_CAUSES = {"initial_memory": "another memory.size", "head.1.weight": "a task with another number of answers",
                "head.1.bias": "a task with another number of answers"}

# What makes a noise corpus large enough, by noise.source.
SMALL_CORPUS_FIX = {
    "austen": "re-fetch it with `rmt download` or change noise.eval_documents",
    "files": "add more text to noise.paths or change noise.eval_fraction",
    "synthetic": "raise noise.tokens",
    "hub": "raise noise.max_documents",
}

NOT_FROM_TRAIN = "it is not a checkpoint of `rmt train`"
PASS_A_RUN = "pass the run folder written by `rmt train`"

CLASSIFY_INSTEAD = "use task.head=classify"


def fetch_austen(error: Any) -> str:
    """The command that puts the Austen corpus where the config expects it."""
    return "run `rmt download`" if error.default else f"run `python -m rmt_cli.austen {error.root}`"


def fetch_package(error: Any) -> str:
    from rmt_cli.download import fetch_hint

    return f"{error}: {fetch_hint(error.package)}"


def fetch_folder(error: Any) -> str:
    from rmt_cli.download import fetch_hint

    return f"{error}: {fetch_hint(error.name)}"


def missing_noise_files(error: Any) -> str:
    return f"{error} or fix {error.setting}" if error.path_exists else f"{error}; fix {error.setting}"


def not_a_checkpoint(error: Any) -> str:
    return f"{error}; {NOT_FROM_TRAIN}" + ("" if error.unreadable else " (pass a run folder it wrote)")


def story_needs_more_segments(error: Any) -> str:
    return (f"{error}: train and evaluate on at least {error.need} segments (curriculum.stages, task.segments) or "
            "raise segment.length")


def babi_file_unreadable(error: Any) -> str:
    if error.reason is None:
        return (f"task.facts_file {error.path} does not exist; pass a bAbI file such as "
                "qa1_single-supporting-fact_train.txt")
    return f"cannot read task.facts_file {error.path}: {error.reason}"


def small_corpus(error: Any) -> str:
    return f"{error}; {SMALL_CORPUS_FIX[error.source]}"


WORDINGS: dict[str, Callable[[Any], str]] = {
    "rmt_cli.backbones.UnknownLayout": lambda error: (
        f"backbone.layout={error.layout} is unknown; use encoder (BERT family) or decoder "
        "(GPT-2, OPT, Llama families)"),
    "rmt_cli.backbones.PackageMissing": fetch_package,
    "rmt_cli.backbones.FolderMissing": fetch_folder,
    "rmt_cli.backbones.NotAnEncoder": lambda error: (
        f"backbone {error.name} is no BERT-family encoder (no [CLS]/[SEP], or no base model of that kind): set "
        "backbone.layout=decoder for a GPT-2, OPT or Llama family model"),
    "rmt_cli.backbones.NoPooler": lambda error: f"{error}; {CLASSIFY_INSTEAD}",
    "rmt_cli.backbones.BackboneNotLoaded": lambda error: (
        f"{error}; point backbone.name_or_path at a local model folder, or use backbone=minilm"),
    "rmt_cli.heads.NoAnswerEnd": lambda error: (
        "task.head=generate needs an end-of-answer token, and this tokenizer has neither EOS nor [SEP]; "
        f"{CLASSIFY_INSTEAD}"),
    "rmt_cli.heads.SameAnswerTokens": lambda error: (
        f"two answers of this task ({error.answers[0]!r} and {error.answers[1]!r}) have the same tokens under this "
        f"tokenizer; {CLASSIFY_INSTEAD}"),
    "rmt_cli.checkpoint.CheckpointNotWritten": lambda error: (
        f"{error}; free disk space, then run the same command again to resume from the last checkpoint"),
    "rmt_cli.checkpoint.CheckpointNotFound": lambda error: f"{error}; {PASS_A_RUN}",
    "rmt_cli.train.InitFromUnusable": lambda error: (
        f"{error}; start from a run folder of `rmt train` with this backbone and memory size"),
    "rmt_cli.checkpoint.NotACheckpoint": not_a_checkpoint,
    "rmt_cli.checkpoint.CheckpointDoesNotFit": lambda error: (
        f"{error} ({SHAPE_CAUSES.get(error.tensor, 'another backbone')}); evaluate it with the settings it was "
        "trained with"),
    "rmt_cli.sample_errors.NoiseShorterThanSegment": lambda error: (
        f"{error}; add text to the corpus or lower segment.length"),
    "rmt_cli.sample_errors.StoriesDoNotFit": lambda error: f"{error}; use more segments or raise segment.length",
    "rmt_cli.sample_errors.SentenceLongerThanSegment": lambda error: (
        f"{error}; raise segment.length or lower memory.size"),
    "rmt_cli.sample_errors.StoryNeedsMoreSegments": story_needs_more_segments,
    "rmt_cli.sample_errors.NoConfusers": lambda error: (
        f"{error}; leave confuser_share out of the curriculum stage, or use noise that names them"),
    "rmt_cli.sample_errors.NoGeneratedWindows": lambda error: (
        f"{error}; set noise.generated_training_tokens to at least a segment's length, or leave generated_share out "
        "of the curriculum"),
    "rmt_cli.sample_errors.NoMultiFactStories": lambda error: (
        f"{error}; leave multi_fact_share out of the curriculum stage, or use a task whose stories have several "
        "facts (reasoning, qa1)"),
    "rmt_cli.babi.BabiFileUnreadable": babi_file_unreadable,
    "rmt_cli.babi.AnswerNotALabel": lambda error: (
        f"{error} Pick the matching task, or set task.generator=null to take the labels from the file"),
    "rmt_cli.babilong.BabilongUnavailable": lambda error: (
        f"{error}; offline, use a generated task such as task=qa2 or a bAbI file with task.facts_file=PATH"),
    "rmt_cli.corpus.load.UnknownNoiseSource": lambda error: (
        f"unknown noise.source {error.source!r}; use noise=austen, noise=files, noise=synthetic or noise=pg19"),
    "rmt_cli.corpus.source_austen.AustenCorpusMissing": lambda error: f"{error}; {fetch_austen(error)}",
    "rmt_cli.corpus.source_austen.UnknownEvalDocuments": lambda error: (
        f"noise.eval_documents {error.missing} not found in {error.root} (it has {error.available}); "
        f"fix noise.eval_documents or {fetch_austen(error)}"),
    "rmt_cli.corpus.source_austen.NoTrainingDocuments": lambda error: (
        "noise.eval_documents holds out every Austen novel; leave at least one for training"),
    "rmt_cli.corpus.source_austen.HeldOutInTraining": lambda error: (
        f"{error}; leave them out of noise.extra_training"),
    "rmt_cli.corpus.source_files.NoNoisePaths": lambda error: (
        "noise.paths is empty; pass your text, e.g. noise=files 'noise.paths=[/data/books]'"),
    "rmt_cli.corpus.source_files.NoiseFilesMissing": missing_noise_files,
    "rmt_cli.corpus.source_files.CorpusNotDownloaded": lambda error: (
        f"{error}: run `rmt download --{error.name}`, or fix {error.setting}"),
    "rmt_cli.corpus.source_files.NotARegularFile": lambda error: f"{error}; remove it or fix {error.setting}",
    "rmt_cli.corpus.source_files.BadEvalFraction": lambda error: (
        f"noise.eval_fraction must be between 0 and 1, got {error.fraction}"),
    "rmt_cli.corpus.source_hub.HubUnreachable": lambda error: (
        f"{error}; use noise=austen or noise=files noise.paths=[...]"),
    "rmt_cli.corpus.source_hub.NoTextField": lambda error: f"{error}; fix noise.text_field",
    "rmt_cli.corpus.source_synthetic.NoPlainWords": lambda error: f"{error}; use noise=austen",
    "rmt_cli.corpus.sizes.CorpusTooSmall": small_corpus,
}


def full_name(kind: type) -> str:
    return f"{kind.__module__}.{kind.__qualname__}"


def user_message(error: RmtError) -> str:
    """The line `rmt` prints for `error`: its wording for the command line, or its own message."""
    for kind in type(error).__mro__:
        wording = WORDINGS.get(full_name(kind))
        if wording is not None:
            return wording(error)
    return str(error)
