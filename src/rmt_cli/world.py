"""bAbI's world, simulated: people move between places, pick up, put down and pass objects; a question is asked of
the state the facts leave behind, so every answer is right by construction.

The generators follow the shapes of the real bAbI v1.2 tasks (docs/tasks.md gives the numbers each produces):
- qa1 (single supporting fact): 2, 4, ..., 10 moves of four people; "Where is Mary?" -> the place of her latest move.
- qa2 (two supporting facts): "Where is the football?" -> where its holder went last, or where it was put down.
- qa3 (three supporting facts): "Where was the football before the bathroom?" -> the place the football was in
  before it last came to the bathroom, its current place.
- qa5 (three argument relations): "Who gave the football?", "What did Fred give to Jeff?", ... about the latest
  transfer; earlier transfers the question also matches do not count.

A bAbI story is a running text with a question after every few facts; a question sees all the facts before it.
The number of facts a generated story has before its question is drawn the same way: k of the story's questions
(k uniform in 1..5) each come after a gap of facts (`Pace`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rmt_cli.facts import LOCATIONS, MOVES, PEOPLE, Story

OBJECTS = ("football", "apple", "milk")
GETS = ("picked up", "got", "grabbed", "took")
DROPS = ("dropped", "discarded", "put down", "left")
GIVES = ("gave", "handed", "passed")
GIVERS = ("Mary", "Jeff", "Fred", "Bill")  # qa5's cast
THERE = 0.3  # share of pick-ups and drops that end in "there" (real bAbI mostly leaves it out)
QUESTIONS_PER_STORY = 5


@dataclass(frozen=True)
class Pace:
    """Facts between two questions of a story: `least` plus a geometric count whose mean is `extra` times a
    per-story factor (gamma, mean 1, shape `steady`): some stories are much busier, as in bAbI."""

    least: int
    extra: float = 0.0
    steady: float = 1.0

    def facts(self, rng: np.random.Generator) -> int:
        questions = int(rng.integers(1, QUESTIONS_PER_STORY + 1))
        if self.extra == 0:
            return questions * self.least
        mean = self.extra * rng.gamma(self.steady, 1 / self.steady)
        return int(questions * self.least + (rng.geometric(1 / (1 + mean), size=questions) - 1).sum())


class World:
    """Where people are, who holds what, where objects lie; facts are actions that are possible in that state."""

    def __init__(self, people: tuple[str, ...], rng: np.random.Generator, blind: float = 0.0):
        self.people, self.rng, self.blind = people, rng, blind
        self.place: dict[str, str] = {}  # person -> location, once a fact has said it
        self.holder: dict[str, str] = {}  # object -> person carrying it
        self.lying: dict[str, str] = {}  # object -> location where it was put down
        self.trail: dict[str, list[str]] = {o: [] for o in OBJECTS}  # successive known locations of each object
        self.gifts: list[tuple[str, str, str]] = []  # (giver, object, receiver), in story order
        self.moves: dict[str, int] = {}  # person -> moves told
        self.facts: list[str] = []

    def pick(self, options):
        return options[self.rng.integers(len(options))]

    def where(self, obj: str) -> str | None:
        return self.place.get(self.holder[obj]) if obj in self.holder else self.lying.get(obj)

    def carried(self, person: str) -> list[str]:
        return [o for o in OBJECTS if self.holder.get(o) == person]

    def can_get(self) -> list[tuple[str, str]]:
        """(person, object): someone takes a free object lying where they are, or one whose place nobody knows;
        people whose place is not told yet only with probability `blind`."""
        told = [p for p in self.people if p in self.place or self.rng.random() < self.blind]
        return [(p, o) for p in told for o in OBJECTS if o not in self.holder
                and (o not in self.lying and not self.trail[o]
                     or p in self.place and self.lying.get(o) == self.place[p])]

    def can_drop(self) -> list[str]:
        return [o for o, p in self.holder.items() if p in self.place]

    def can_give(self) -> list[tuple[str, str, str]]:
        return [(g, o, r) for o, g in self.holder.items() for r in self.people
                if r != g and g in self.place and self.place.get(r) == self.place[g]]

    def arrive(self, obj: str, place: str) -> None:
        if self.trail[obj][-1:] != [place]:
            self.trail[obj].append(place)

    def move(self, toward_people: bool = False) -> None:
        person = self.pick(self.people)
        occupied = sorted({self.place[p] for p in self.place if p != person} - {self.place.get(person)})
        if toward_people and occupied and self.rng.integers(2):
            place = self.pick(occupied)
        else:
            place = self.pick([p for p in LOCATIONS if p != self.place.get(person)])
        self.place[person] = place
        self.moves[person] = self.moves.get(person, 0) + 1
        for obj in self.carried(person):
            self.arrive(obj, place)
        self.facts.append(f"{person} {self.pick(MOVES)} to the {place}.")

    def there(self, person: str) -> str:
        return " there" if person in self.place and self.rng.random() < THERE else ""

    def get(self, person: str, obj: str) -> None:
        self.holder[obj] = person
        self.lying.pop(obj, None)
        if person in self.place:
            self.arrive(obj, self.place[person])
        self.facts.append(f"{person} {self.pick(GETS)} the {obj}{self.there(person)}.")

    def drop(self, obj: str) -> None:
        person = self.holder.pop(obj)
        self.lying[obj] = self.place[person]
        self.facts.append(f"{person} {self.pick(DROPS)} the {obj}{self.there(person)}.")

    def give(self, giver: str, obj: str, receiver: str) -> None:
        self.holder[obj] = receiver
        self.gifts.append((giver, obj, receiver))
        self.facts.append(f"{giver} {self.pick(GIVES)} the {obj} to {receiver}.")

    def act(self, weights: dict[str, float]) -> None:
        """One random possible action; `weights` (move, get, drop, give) set how often each kind is chosen."""
        possible = {"move": lambda: [()], "get": self.can_get, "drop": lambda: [(o,) for o in self.can_drop()],
                    "give": self.can_give}
        options = {k: possible[k]() for k, w in weights.items() if w > 0}
        kinds = [k for k in options if options[k]]
        left = self.rng.random() * sum(weights[k] for k in kinds)
        kind = next((k for k in kinds if (left := left - weights[k]) < 0), kinds[-1])
        if kind == "move":
            self.move(toward_people=weights.get("give", 0) > 0)
        else:
            getattr(self, kind)(*self.pick(options[kind]))


def simulate(rng: np.random.Generator, people: tuple[str, ...], weights: dict[str, float], pace: Pace,
             questions, blind: float = 0.0) -> Story:
    """Act for the story's number of facts, then on until `questions(world)` offers one; ask it."""
    world = World(people, rng, blind)
    for _ in range(pace.facts(rng)):
        world.act(weights)
    while not (candidates := questions(world)):
        world.act(weights)
    question, answer = candidates[rng.integers(len(candidates))]
    return Story(facts=tuple(world.facts), question=question, answer=answer)


def single_supporting_fact(rng: np.random.Generator) -> Story:
    """qa1: people move; "Where is Daniel?" -> the place of Daniel's latest move.

    The person asked about is the mover of a random fact, so people who moved more are asked about more often.
    """
    def questions(world: World):
        return [(f"Where is {p}?", world.place[p]) for p in world.people for _ in range(world.moves.get(p, 0))]

    return simulate(rng, PEOPLE, {"move": 1.0}, Pace(2, 0), questions)


def two_supporting_facts(rng: np.random.Generator) -> Story:
    """qa2: "Mary got the milk." "Mary travelled to the hallway." "Where is the milk?" -> hallway.

    An object is where its holder last went, or where it was put down; objects whose place the facts do not tell
    are never asked about.
    """
    def questions(world: World):
        return [(f"Where is the {o}?", world.where(o)) for o in OBJECTS if world.where(o) is not None]

    return simulate(rng, PEOPLE, {"move": 0.6, "get": 0.25, "drop": 0.15}, Pace(1, 5, 5), questions, blind=0.2)


def three_supporting_facts(rng: np.random.Generator) -> Story:
    """qa3: "John took the apple." (in the office) "John went to the garden." "John moved to the kitchen."
    "Where was the apple before the kitchen?" -> garden.

    Asked of an object's current place, which it may have visited before: the answer is where it was just before
    it last came there.
    """
    def questions(world: World):
        return [(f"Where was the {o} before the {trail[-1]}?", trail[-2])
                for o, trail in world.trail.items() if len(trail) > 1 and world.where(o) == trail[-1]]

    return simulate(rng, PEOPLE, {"move": 0.6, "get": 0.25, "drop": 0.15}, Pace(4, 12.5, 5), questions, blind=0.2)


QA5_FORMS = (  # (question, what it asks: g(iver), o(bject) or r(eceiver), share of questions)
    ("What did {g} give to {r}?", "o", 0.35),
    ("Who gave the {o} to {r}?", "g", 0.1625),
    ("Who gave the {o}?", "g", 0.1625),
    ("Who received the {o}?", "r", 0.1625),
    ("Who did {g} give the {o} to?", "r", 0.1625),
)


def three_argument_relations(rng: np.random.Generator) -> Story:
    """qa5: "Fred gave the football to Jeff." ... "Who received the football?" -> Jeff.

    People pass what they carry to someone in the same place. The question is asked of the latest transfer, in
    one of five forms (QA5_FORMS); when earlier transfers match it too, the latest one answers.
    """
    form, asked, _ = QA5_FORMS[rng.choice(len(QA5_FORMS), p=[share for *_, share in QA5_FORMS])]

    def questions(world: World):
        if not world.gifts:
            return []
        gift = dict(zip("gor", world.gifts[-1], strict=True))
        return [(form.format(**gift), gift[asked])]

    return simulate(rng, GIVERS, {"move": 0.35, "get": 0.2, "drop": 0.1, "give": 0.35}, Pace(2, 3.3, 4), questions,
                    blind=0.2)
