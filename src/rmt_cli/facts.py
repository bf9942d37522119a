"""bAbI-style stories: the facts to hide in noise, the question asked at the end, and its answer.

The tasks of the RMT paper use bAbI qa1 (single supporting fact) and qa4 (two-argument relations); every answer is
one of six locations, so all tasks share one 6-way classification head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOCATIONS = ("bathroom", "bedroom", "garden", "hallway", "kitchen", "office")
PEOPLE = ("Mary", "John", "Daniel", "Sandra")
MOVES = ("moved", "went", "went back", "journeyed", "travelled")
OPPOSITE = {"north": "south", "south": "north", "east": "west", "west": "east"}


@dataclass(frozen=True)
class Story:
    facts: tuple[str, ...]
    question: str
    answer: str


def single_supporting_fact(rng: np.random.Generator) -> Story:
    """qa1: "Daniel went back to the hallway." ... "Where is Daniel?" -> hallway."""
    person = PEOPLE[rng.integers(len(PEOPLE))]
    move = MOVES[rng.integers(len(MOVES))]
    place = LOCATIONS[rng.integers(len(LOCATIONS))]
    return Story(facts=(f"{person} {move} to the {place}.",), question=f"Where is {person}?", answer=place)


def two_argument_relations(rng: np.random.Generator) -> Story:
    """qa4: two relations over three places, one question that exactly one place answers.

    "The hallway is east of the bathroom." "The bedroom is west of the bathroom."
    "What is the bathroom east of?" -> bedroom.
    Questions take bAbI's two forms, "What is D of P?" and "What is P D of?", and count inverse relations: a
    question is only kept if its answer is unique given both facts.
    """
    while True:
        a, b, c = rng.choice(len(LOCATIONS), size=3, replace=False)
        hub, left, right = LOCATIONS[a], LOCATIONS[b], LOCATIONS[c]
        directions = list(OPPOSITE)
        d1 = directions[rng.integers(4)]
        d2 = directions[rng.integers(4)]
        relations = [(left, d1, hub), (right, d2, hub)]  # (x, d, y): x is d of y
        facts = tuple(f"The {x} is {d} of the {y}." for x, d, y in relations)
        known = set(relations) | {(y, OPPOSITE[d], x) for x, d, y in relations}
        x, d, y = relations[rng.integers(2)]
        if rng.integers(2):
            question, answers = f"What is {d} of the {y}?", {s for s, dd, o in known if dd == d and o == y}
            answer = x
        else:
            # "What is the Y <opposite d> of?": Y is OPPOSITE[d] of X.
            question = f"What is the {y} {OPPOSITE[d]} of?"
            answers = {o for s, dd, o in known if s == y and dd == OPPOSITE[d]}
            answer = x
        if answers == {answer}:
            order = rng.permutation(2)
            return Story(facts=tuple(facts[i] for i in order), question=question, answer=answer)


GENERATORS = {"qa1": single_supporting_fact, "qa4": two_argument_relations}
