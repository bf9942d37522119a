"""bAbI text files (task.facts_file): stories in the standard `qaN_*_train.txt` / `qaN_*_test.txt` format.

Lines are "ID text"; the ID restarts at 1 with each story and counts every line, questions included. A question
line is "ID question?<TAB>answer<TAB>supporting IDs"; it sees every statement of its story before it.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

from rmt_cli.errors import RuntimeFailure, UsageError
from rmt_cli.facts import Story

BABI_LINE = "'ID text' (a number, one space, the text)"
BABI_QUESTION = "'ID question?<TAB>answer<TAB>supporting IDs'"


class BabiFileUnreadable(RuntimeFailure):
    """bAbI file `path` does not exist (`reason` None) or cannot be read (`reason`: the system's account)."""

    def __init__(self, path: str, reason: str | None = None):
        self.path, self.reason = path, reason
        super().__init__(f"bAbI file {path} does not exist" if reason is None else
                         f"cannot read bAbI file {path}: {reason}")


class AnswerNotALabel(UsageError):
    """An answer of a bAbI file (`where`: file and line) is none of the task's `labels`."""

    def __init__(self, where: str, answer: str, labels: tuple[str, ...]):
        self.where, self.answer, self.labels = where, answer, labels
        super().__init__(f"{where}: answer {answer!r} is not one of the task's labels ({', '.join(labels)}); "
                         "is this a file of another bAbI task?")


@cache
def read_babi(path: str, labels: tuple[str, ...] | None = None) -> tuple[Story, ...]:
    """Stories of a bAbI text file (read once): each question with the statements of its story before it.

    labels: the task's answers; an answer outside them is refused. Without them, answers that differ only in case
    or that list several answers (qa8's "apple,milk") are refused, since each would become a class of its own.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except FileNotFoundError:
        raise BabiFileUnreadable(path) from None
    except OSError as err:
        raise BabiFileUnreadable(path, str(err.strerror or err)) from None
    except UnicodeDecodeError as err:
        raise UsageError(f"{path} is not UTF-8 text (bad byte at offset {err.start})") from None
    stories, last = [], 0
    statements: list[str] = []
    spellings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        where = f"{path} line {number}"
        head, _, rest = line.partition(" ")
        if not head.isdigit() or not rest.strip():
            raise UsageError(f"{where}: expected {BABI_LINE}, got {line[:40]!r}")
        ident = int(head)
        if ident == 1:
            statements = []
        elif ident != last + 1:
            raise UsageError(f"{where}: ID {ident} after ID {last}; IDs count up by one from 1 in each story")
        last = ident
        if "\t" not in rest:
            if "?" in rest:
                raise UsageError(f"{where}: a question without its answer; expected {BABI_QUESTION}")
            statements.append(rest.strip())
            continue
        parts = [part.strip() for part in rest.split("\t")]
        if not parts[0].endswith("?"):
            raise UsageError(f"{where}: a TAB inside a statement (only question lines hold TABs, as "
                             f"{BABI_QUESTION}); got {line[:60]!r}")
        question, answer, *support = parts
        if not answer or len(support) != 1 or not all(s.isdigit() and int(s) < ident for s in support[0].split()):
            raise UsageError(f"{where}: expected a question line {BABI_QUESTION} whose supporting IDs name earlier "
                             f"lines, got {line[:60]!r}")
        check_answer(answer, labels, where, spellings)
        stories.append(Story(facts=tuple(statements), question=question, answer=answer, source=where))
    if not stories:
        raise UsageError(f"{path} holds no question lines ({BABI_QUESTION}); is it a bAbI task file?")
    return tuple(stories)


def check_answer(answer: str, labels: tuple[str, ...] | None, where: str, spellings: dict[str, str]) -> None:
    """Refuse an answer that would become a class of its own: outside the task's labels, a second spelling of
    another answer, or several answers at once."""
    if labels is not None:
        if answer in labels:
            return
        same = [label for label in labels if label.lower() == answer.lower()]
        if same:
            raise UsageError(f"{where}: answer {answer!r} differs from the label {same[0]!r} only in case; "
                             f"write it {same[0]!r}")
        raise AnswerNotALabel(where, answer, labels)
    if "," in answer:
        raise UsageError(f"{where}: answer {answer!r} lists several answers; a task answers with one label "
                         "(bAbI qa8 and qa19 list several: they are not supported)")
    seen = spellings.setdefault(answer.lower(), answer)
    if seen != answer:
        raise UsageError(f"{where}: answer {answer!r} and {seen!r} differ only in case and would be two classes; "
                         "spell them the same")


def babi_split_files(path: str) -> tuple[str, str]:
    """(training file, validation/test file) for task.facts_file=path.

    bAbI ships each task as NAME_train.txt and NAME_test.txt: either one selects both when the other lies beside
    it. Without a partner (or for a file named otherwise), training, validation and test all draw from `path`.
    """
    file = Path(path)
    for own, other in (("_train.txt", "_test.txt"), ("_test.txt", "_train.txt")):
        if file.name.endswith(own):
            partner = file.with_name(file.name[: -len(own)] + other)
            if partner.is_file():
                return (str(file), str(partner)) if own == "_train.txt" else (str(partner), str(file))
    return str(file), str(file)


@cache
def note_single_file(path: str) -> None:
    """Say once per file when it has no partner, so that training, validation and test draw from it alone."""
    train, test = babi_split_files(path)
    if train == test:
        name = Path(path).name
        partner = next((name[: -len(own)] + other for own, other in (("_train.txt", "_test.txt"),
                                                                     ("_test.txt", "_train.txt"))
                        if name.endswith(own)), "NAME_train.txt / NAME_test.txt")
        print(f"note: {path} has no {partner} beside it; validation and test draw from the same file as training",
              file=sys.stderr)
