"""The two ways of answering from the last segment, picked by `task.head`: a loss for training and label predictions.

classify: the engine's linear head over the task's labels (cross-entropy on the label).
generate: the answer is generated as text by the backbone's LM head (decoders; BABILong style). Each label's target
    is the tokens of " " + label followed by an end token (the tokenizer's EOS, or [SEP] for a tokenizer without
    one), so that "bedroom" does not match a longer answer that starts with it. Training is cross-entropy on the
    answer tokens only, teacher-forced; a prediction is greedy decoding, scored by exact match: the label whose
    target tokens the generated tokens reproduce (-1, never correct, when they reproduce none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rmt_cli.engine import EngineOutput
from rmt_cli.errors import UsageError

IGNORE = -100  # target padding, skipped by the loss


class NoAnswerEnd(UsageError):
    """Answers generated as text end with an end token; the tokenizer has neither EOS nor [SEP]."""

    def __init__(self):
        super().__init__("answers generated as text need an end-of-answer token, and this tokenizer has neither EOS "
                         "nor [SEP]")


class SameAnswerTokens(UsageError):
    """Two answers (`answers`, a pair of labels) are the same tokens under the tokenizer: generated text cannot tell
    them apart."""

    def __init__(self, answers: tuple[str, str]):
        self.answers = answers
        super().__init__(f"the answers {answers[0]!r} and {answers[1]!r} have the same tokens under this tokenizer")


class ClassifyHead:
    """A label from the engine's classifier: a linear layer (`classify`) or the backbone's pooler then one
    (`pooler`)."""

    answer_positions = 0  # positions the last segment reads after its content

    def __init__(self, kind: str = "classify"):
        self.kind = kind

    def loss(self, model, steps, labels: Tensor, **loop) -> tuple[Tensor, EngineOutput]:
        """The mean loss over the batch's rows whose label is not IGNORE, and the engine's output."""
        out = model(steps, **loop)
        return F.cross_entropy(out.logits.float(), labels, ignore_index=IGNORE), out

    def predict(self, model, steps, **loop) -> Tensor:
        return model(steps, **loop).logits.argmax(-1)


class GenerateHead:
    kind = "generate"

    def __init__(self, tokenizer, labels: tuple[str, ...]):
        end = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.sep_token_id
        if end is None:
            raise NoAnswerEnd()
        targets = [tokenizer(" " + label, add_special_tokens=False)["input_ids"] + [end] for label in labels]
        label_of: dict[tuple[int, ...], str] = {}  # the first answer with these target tokens
        for label, target in zip(labels, targets, strict=True):
            if tuple(target) in label_of:
                raise SameAnswerTokens((label_of[tuple(target)], label))
            label_of[tuple(target)] = label
        self.end = end
        self.answer_length = max(len(t) for t in targets)  # tokens generated per answer
        self.answer_positions = self.answer_length - 1  # all but the last are read back while generating
        self.targets = torch.full((len(labels), self.answer_length), IGNORE, dtype=torch.long)
        for row, target in enumerate(targets):
            self.targets[row, :len(target)] = torch.tensor(target)

    def loss(self, model, steps, labels: Tensor, **loop) -> tuple[Tensor, EngineOutput]:
        """The batch's mean loss over answer tokens and the engine's output."""
        targets = self.targets.to(labels.device)[labels]  # [batch, answer_length]
        # Teacher forcing: the segment reads every target token but the last; padding after an answer's end token
        # is read as more end tokens, which causal attention hides from the answer's own predictions.
        answer = targets[:, :-1].masked_fill(targets[:, :-1] == IGNORE, self.end)
        out = model(steps, answer=answer, **loop)
        return F.cross_entropy(out.logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE), out

    def predict(self, model, steps, **loop) -> Tensor:
        return self.match(model.generate(steps, self.answer_length, **loop))

    def match(self, generated: Tensor) -> Tensor:
        """[batch] label whose target tokens equal the generated ones up to the target's end token, else -1."""
        targets = self.targets.to(generated.device)
        same = (generated[:, None, :] == targets[None]) | (targets[None] == IGNORE)
        hits = same.all(-1)  # [batch, labels]; end tokens make at most one label match
        return torch.where(hits.any(-1), hits.int().argmax(-1), -1)


def build_head(kind: str, tokenizer, labels: tuple[str, ...]):
    return GenerateHead(tokenizer, labels) if kind == "generate" else ClassifyHead(kind)
