"""bAbI-style stories: the facts to hide in noise, the question asked at the end, and its answer; the stories of
the RMT paper's tasks: one qa1 fact (memorize, detect) and two qa4 relations (reasoning).

bAbI's other shapes are simulated in world.py; stories.py names every generator; stories can also come from bAbI
text files (babi.py) or from BABILong (babilong.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

LOCATIONS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
PEOPLE = ("Mary", "John", "Daniel", "Sandra")
MOVES = ("moved", "went", "went back", "journeyed", "travelled")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}
NAMES = frozenset(LOCATIONS + PEOPLE)


@dataclass(frozen=True)
class Story:
    facts: tuple[str, ...]
    question: str
    answer: str
    source: str = field(default="", compare=False)  # where a story read from data comes from, for messages


def facts_naming_the_question(story: Story) -> int:
    """How many facts name a person or place that the question names. "What is west of the kitchen?" after "The
    bedroom is west of the kitchen." and "The kitchen is west of the garden." gives 2: finding the fact that names
    the kitchen is not enough, its relation answers (qa1: "Where is Mary?" after two of Mary's moves, their order)."""
    asked = NAMES.intersection(re.findall(r"\w+", story.question))
    return sum(bool(asked.intersection(re.findall(r"\w+", fact))) for fact in story.facts)


def facts_name(story: Story, word: str) -> bool:
    """Whether a fact of the story names `word` (a person or place): a wrong answer that no fact names was not
    confused with the story's other place, it was not read from the story at all."""
    return any(word in re.findall(r"\w+", fact) for fact in story.facts)


def single_supporting_fact(rng: np.random.Generator) -> Story:
    """The paper's qa1, one fact: "Daniel went back to the hallway." ... "Where is Daniel?" -> hallway."""
    person = PEOPLE[rng.integers(len(PEOPLE))]
    move = MOVES[rng.integers(len(MOVES))]
    place = LOCATIONS[rng.integers(len(LOCATIONS))]
    return Story(facts=(f"{person} {move} to the {place}.",), question=f"Where is {person}?", answer=place)


# qa4's story shapes over three places in a line on one axis, P0 -d- P1 -d- P2 (P0 is d of P1, P1 is d of P2), with
# bAbI's proportions: both facts relate a shared place (P0 is d of P1, P2 is opposite-d of P1), chain (P0 is d of
# P1, P1 is d of P2), or share their subject (P1 is opposite-d of P0, P1 is d of P2).
QA4_SHAPES = {"shared place": 0.44, "chain": 0.45, "shared subject": 0.11}
AXES = (("north", "south"), ("east", "west"))


def two_argument_relations(rng: np.random.Generator) -> Story:
    """qa4 as bAbI writes it: two relations between three places on one axis, one question about one of them.

    "The bedroom is west of the kitchen." "The hallway is west of the bedroom." "What is west of the kitchen?"
    -> bedroom. The question reads one relation in one of four ways: forward ("What is west of the kitchen?",
    "What is the bedroom west of?") or inverted ("What is east of the bedroom?" -> kitchen, "What is the kitchen
    east of?" -> bedroom); only direct relations count (the hallway is west of the kitchen too, but no fact says so),
    so every question has exactly one answer. The facts come in random order (qa4 is order-free).
    """
    p0, p1, p2 = (LOCATIONS[i] for i in rng.choice(len(LOCATIONS), size=3, replace=False))
    d = AXES[rng.integers(2)][rng.integers(2)]
    back = OPPOSITE[d]
    shapes = list(QA4_SHAPES)
    shape = shapes[rng.choice(len(shapes), p=list(QA4_SHAPES.values()))]
    if shape == "shared place":
        relations = [(p0, d, p1), (p2, back, p1)]
    elif shape == "chain":
        relations = [(p0, d, p1), (p1, d, p2)] if rng.integers(2) else [(p2, back, p1), (p1, back, p0)]
    else:
        relations = [(p1, back, p0), (p1, d, p2)]
    x, r, y = relations[rng.integers(2)]  # the relation asked about: x is r of y
    if rng.integers(2):  # inverted: y is OPPOSITE[r] of x
        x, r, y = y, OPPOSITE[r], x
    question, answer = (f"What is {r} of the {y}?", x) if rng.integers(2) else (f"What is the {x} {r} of?", y)
    order = rng.permutation(2)
    return Story(facts=tuple(f"The {a} is {b} of the {c}." for a, b, c in (relations[i] for i in order)),
                 question=question, answer=answer)
