"""What can go wrong when a task's samples are drawn: neutral errors, worded for the command line in
user_messages.py."""

from __future__ import annotations

from rmt_cli.errors import RuntimeFailure, UsageError


class NoiseShorterThanSegment(RuntimeFailure):
    """The noise split made of `documents` holds no window of `content_length` tokens."""

    def __init__(self, documents: tuple[str, ...], content_length: int):
        self.documents, self.content_length = documents, content_length
        super().__init__(f"the noise split {', '.join(documents)} is shorter than one segment of {content_length} "
                         "tokens")


class StoriesDoNotFit(UsageError):
    """No story drawn from `task`'s generator fits an input of `n_segments` segments of `content_length` tokens."""

    def __init__(self, task: str, n_segments: int, content_length: int):
        self.task, self.n_segments, self.content_length = task, n_segments, content_length
        super().__init__(f"{task} stories do not fit inputs of {n_segments} segments of {content_length} content "
                         "tokens")


class SentenceLongerThanSegment(UsageError):
    """A story (`where`: its file and line, or its task) has a sentence longer than a segment's content."""

    def __init__(self, where: str, content_length: int):
        self.where, self.content_length = where, content_length
        super().__init__(f"{where} has a sentence longer than the {content_length} content tokens of a segment")


class NoMultiFactStories(UsageError):
    """A stage asked for stories whose question names someone or somewhere that several facts name; `task` has none."""

    def __init__(self, task: str, share: float):
        self.task, self.share = task, share
        super().__init__(f"no {task} story asks about someone or somewhere that two of its facts name, so no share "
                         f"({share:g}) of the training stories can be such stories")


class NoConfusers(UsageError):
    """Training noise asked to hold `share` of windows that name one of the `labels` has no such window (in its
    `origin` text, 'source' or 'generated', when a stage draws from each apart)."""

    def __init__(self, share: float, labels: tuple[str, ...], origin: str | None = None):
        self.share, self.labels, self.origin = share, labels, origin
        where = "the training noise" if origin is None else f"the {origin} text of the training noise"
        super().__init__(f"{where} never names one of the answers ({', '.join(labels)}), so no share "
                         f"({share:g}) of its windows can be drawn from those that do")


class NoGeneratedWindows(UsageError):
    """Training noise asked to hold `share` of windows from generated text has no window of `content_length`
    tokens in the part it needs (`part`: 'generated' or 'source')."""

    def __init__(self, share: float, part: str, content_length: int):
        self.share, self.part, self.content_length = share, part, content_length
        what = "holds no text generated from it" if part == "generated" else "holds only generated text"
        super().__init__(f"the training noise {what} of a segment's {content_length} tokens, so no share "
                         f"({share:g}) of its windows can be drawn from {part} text")


class StoryNeedsMoreSegments(UsageError):
    """The longest story of a task's data (`where`, `facts` facts and its question in `tokens` tokens) needs `need`
    segments of `content_length` tokens; the input has `n_segments`."""

    def __init__(self, where: str, facts: int, tokens: int, need: int, n_segments: int, content_length: int):
        self.where, self.facts, self.tokens = where, facts, tokens
        self.need, self.n_segments, self.content_length = need, n_segments, content_length
        super().__init__(f"{where} ({facts} facts and its question, {tokens} tokens) needs at least {need} segments "
                         f"of {content_length} content tokens, this input has {n_segments}")
