import numpy as np
import pytest

from rmt_cli.batches import BatchPlan, step_tokens
from rmt_cli.facts import LOCATIONS, OPPOSITE, Story, single_supporting_fact, two_argument_relations
from rmt_cli.samples import SampleFactory, TrainingMix
from rmt_cli.task_spec import TaskSpec

TASKS = {
    "memorize": TaskSpec("memorize", "qa1", "start"),
    "detect": TaskSpec("detect", "qa1", "random"),
    "reasoning": TaskSpec("reasoning", "qa4", "random"),
}


def factory(task, noise, tokenizer, content=115):
    return SampleFactory(TASKS[task], noise.eval, tokenizer, content)


def all_segments(f, sample):
    return [f.segment(sample, i) for i in range(sample.n_segments)]


@pytest.mark.parametrize("task", TASKS)
def test_same_seed_gives_identical_samples_byte_for_byte(task, synthetic_noise, tokenizer):
    f = factory(task, synthetic_noise, tokenizer)
    a, b = f.sample_set("test", 3, 4, 10), f.sample_set("test", 3, 4, 10)
    for x, y in zip(a, b, strict=True):
        assert x.label == y.label
        assert all(np.array_equal(s, t) for s, t in zip(all_segments(f, x), all_segments(f, y), strict=True))
    other = f.sample_set("test", 4, 4, 10)
    assert any(not np.array_equal(x.noise_starts, y.noise_starts) for x, y in zip(a, other, strict=True))
    validation = f.sample_set("validation", 3, 4, 10)
    assert any(not np.array_equal(x.noise_starts, y.noise_starts) for x, y in zip(a, validation, strict=True))


def test_qa1_answer_is_the_place_the_person_went():
    for seed in range(200):
        story = single_supporting_fact(np.random.default_rng(seed))
        person = story.question.removeprefix("Where is ").removesuffix("?")
        assert story.facts[0].startswith(person) and story.facts[0].endswith(f"the {story.answer}.")


def solve_relations(facts, question):
    """An independent solver: every place the question can denote, given the facts and their inverses."""
    relations = set()
    for fact in facts:
        words = fact.rstrip(".").split()  # The X is D of the Y
        x, d, y = words[1], words[3], words[6]
        relations |= {(x, d, y), (y, OPPOSITE[d], x)}
    words = question.rstrip("?").split()
    if words[2] == "the":  # What is the Y D of -> Y is D of X
        y, d = words[3], words[4]
        return {o for s, dd, o in relations if s == y and dd == d}
    d, y = words[2], words[5]  # What is D of the Y -> X is D of Y
    return {s for s, dd, o in relations if dd == d and o == y}


def test_qa4_answers_are_unique_and_correct():
    forms = set()
    for seed in range(300):
        story = two_argument_relations(np.random.default_rng(seed))
        assert len(story.facts) == 2 and story.answer in LOCATIONS
        assert solve_relations(story.facts, story.question) == {story.answer}
        forms.add(story.question.split()[2] == "the")
    assert forms == {True, False}


def qa4_shape(facts) -> str:
    (a, _, b), (c, _, e) = ((f.split()[1], f.split()[3], f.split()[6].rstrip(".")) for f in facts)
    if b == e:
        return "shared place"
    return "shared subject" if a == c else "chain"


def test_qa4_keeps_one_axis_and_bAbIs_shapes_in_their_proportions():
    from rmt_cli.facts import QA4_SHAPES

    stories = [two_argument_relations(np.random.default_rng(seed)) for seed in range(3000)]
    shapes = [qa4_shape(story.facts) for story in stories]
    for shape, share in QA4_SHAPES.items():
        assert abs(shapes.count(shape) / len(stories) - share) < 0.03, shape
    for story in stories:
        axis = {f.split()[3] for f in story.facts} | {w for w in story.question.split() if w in OPPOSITE}
        assert axis <= {"north", "south"} or axis <= {"east", "west"}
    # A forward question restates a fact; an inverse one reads it the other way round ("What is east of X?").
    def restated(story):
        words = story.question.rstrip("?").split()
        if words[2] == "the":  # What is the X R of -> The X is R of the <answer>.
            return f"The {words[3]} is {words[4]} of the {story.answer}." in story.facts
        return f"The {story.answer} is {words[2]} of the {words[5]}." in story.facts  # What is R of the Y

    inverse = sum(not restated(story) for story in stories)
    assert 0.4 < inverse / len(stories) < 0.6


@pytest.mark.parametrize("task", TASKS)
def test_facts_and_question_sit_where_requested(task, synthetic_noise, tokenizer):
    f = factory(task, synthetic_noise, tokenizer)
    starts = set(synthetic_noise.eval.sentence_starts.tolist())
    for sample in f.sample_set("test", 0, 5, 20):
        segments = all_segments(f, sample)
        assert all(len(s) == f.content_length for s in segments)
        assert np.array_equal(segments[-1][-len(sample.question):], sample.question)
        for k, fact in enumerate(sample.facts):
            if TASKS[task].fact_position == "start":
                assert fact.segment == 0 and fact.offset == 0
            # the fact begins at a sentence start of the noise window it was placed into
            assert sample.noise_starts[fact.segment] + fact.offset in starts
            shift = sum(len(g.tokens) for g in sample.facts[:k] if g.segment == fact.segment)
            where = fact.offset + shift
            assert np.array_equal(segments[fact.segment][where:where + len(fact.tokens)], fact.tokens)
        question = tokenizer.decode(sample.question)
        answer = LOCATIONS[sample.label]
        text = " ".join(tokenizer.decode(f_.tokens) for f_ in sample.facts)
        assert answer in text and question.endswith("?")


def test_detect_spreads_facts_over_segments(synthetic_noise, tokenizer):
    f = factory("detect", synthetic_noise, tokenizer)
    segments = {s.facts[0].segment for s in f.sample_set("test", 0, 6, 60)}
    assert len(segments) >= 5


def test_train_and_test_noise_come_from_different_documents(tokenizer):
    from omegaconf import OmegaConf

    from rmt_cli.corpus import load_noise

    noise = load_noise(OmegaConf.create({"source": "synthetic", "tokens": 20000, "seed": 0}), tokenizer)
    assert not set(noise.train.documents) & set(noise.eval.documents)


def test_right_aligned_plan_puts_every_last_segment_on_the_final_step(synthetic_noise, tokenizer):
    f = factory("memorize", synthetic_noise, tokenizer)
    samples = [f.draw(np.random.default_rng(i), n) for i, n in enumerate([2, 5, 1, 3])]
    plan = BatchPlan.right_aligned(samples)
    assert [s.n_segments for s in plan.samples] == [5, 3, 2, 1]
    assert [plan.active_rows(t) for t in range(5)] == [1, 1, 2, 3, 4]
    final = step_tokens(f, plan, 4)
    for row, sample in enumerate(plan.samples):
        np.testing.assert_array_equal(final[row], f.segment(sample, sample.n_segments - 1))
    first = step_tokens(f, plan, 0)
    np.testing.assert_array_equal(first[0], f.segment(plan.samples[0], 0))
    assert [samples[i] for i in plan.order] == list(plan.samples)


def test_whole_sample_gather_equals_segment_by_segment(synthetic_noise, tokenizer):
    f = factory("reasoning", synthetic_noise, tokenizer)
    for sample in f.sample_set("test", 1, 7, 5):
        np.testing.assert_array_equal(f.all_segments(sample), np.stack(all_segments(f, sample)))


def test_facts_in_last_places_training_facts_in_the_last_segments(synthetic_noise, tokenizer):
    f = factory("detect", synthetic_noise, tokenizer)
    samples = [f.training_sample(0, i, (20, 20), TrainingMix(facts_in_last=3)) for i in range(50)]
    assert {fact.segment for s in samples for fact in s.facts} == {17, 18, 19}
    anywhere = [f.training_sample(0, i, (20, 20)) for i in range(50)]
    assert min(fact.segment for s in anywhere for fact in s.facts) < 17


def test_facts_before_question_leaves_the_question_segment_to_the_memory(synthetic_noise, tokenizer):
    f = factory("reasoning", synthetic_noise, tokenizer)
    mix = TrainingMix(facts_before_question=True)
    for n in (2, 3, 6):
        samples = [f.training_sample(0, i, (n, n), mix) for i in range(60)]
        assert {fact.segment for s in samples for fact in s.facts} == set(range(n - 1))  # every earlier segment
    alone = [f.training_sample(0, i, (1, 1), mix) for i in range(10)]  # one segment: the facts stay with it
    assert {fact.segment for s in alone for fact in s.facts} == {0}
    with_last = [f.training_sample(0, i, (8, 8), TrainingMix(facts_in_last=2, facts_before_question=True))
                 for i in range(30)]
    assert {fact.segment for s in with_last for fact in s.facts} == {6}  # the last 2 but the question's
    anywhere = [f.training_sample(0, i, (2, 2)) for i in range(60)]
    assert 1 in {fact.segment for s in anywhere for fact in s.facts}
    for i in range(20):  # left off, samples are drawn as before the setting existed
        off = f.training_sample(0, i, (4, 4), TrainingMix(facts_before_question=False))
        plain = f.training_sample(0, i, (4, 4))
        assert [(x.segment, x.offset) for x in off.facts] == [(x.segment, x.offset) for x in plain.facts]


def test_facts_before_question_on_one_segment_is_named_before_training():
    from rmt_cli.curriculum import curriculum_cautions, curriculum_stages
    from rmt_cli.schema import TrainConfig, typed_node

    stages = [{"segments": 1, "steps": 5, "facts_before_question": True},
              {"segments": [1, 4], "steps": 5, "facts_before_question": True}, {"segments": 1, "steps": 5}]
    cfg = typed_node(TrainConfig, {"curriculum": {"stages": stages}})
    (caution,) = curriculum_cautions(curriculum_stages(cfg))
    assert caution.startswith("stage 1: facts_before_question with inputs of one segment")


def test_a_stage_may_set_its_own_window_and_a_zero_warmup():
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.schema import TrainConfig, typed_node

    cfg = typed_node(TrainConfig, {"trainer": {"lr": 1e-4, "warmup_ratio": 0.1, "bptt_segments": None,
                                               "val_samples": 64, "eval_every": 25, "checkpoint_segments": False},
                            "curriculum": {"stages": [{"segments": 1, "steps": 5, "warmup_ratio": 0},
                                                      {"segments": 64, "steps": 5, "bptt_segments": 8,
                                                       "checkpoint_segments": True, "ema_decay": 0.99,
                                                       "facts_in_last": 8, "lr": 2e-5, "val_segments": 256,
                                                       "val_samples": 128, "eval_every": 100,
                                                       "advance_at": 0.97, "confuser_share": 0.25,
                                                       "confuser_answers": "even",
                                                       "multi_fact_share": 0.5, "carry_memory": 0.5,
                                                       "facts_before_question": True}]}})
    first, last = curriculum_stages(cfg)
    assert (first.mix.facts_before_question, last.mix.facts_before_question) == (False, True)
    assert (first.val_samples, first.eval_every, last.val_samples, last.eval_every) == (64, 25, 128, 100)
    assert (first.warmup_ratio, first.bptt_segments, first.mix.facts_in_last, first.lr) == (0.0, None, None, 1e-4)
    assert (last.bptt_segments, last.mix.facts_in_last, last.lr) == (8, 8, 2e-5)
    assert (first.checkpoint_segments, last.checkpoint_segments) == (False, True)
    assert (first.ema_decay, last.ema_decay) == (None, 0.99)
    assert (first.validation_segments, last.validation_segments) == (1, 256)
    assert (first.advance_at, last.advance_at) == (None, 0.97)
    assert (first.mix.confuser_share, last.mix.confuser_share) == (0.0, 0.25)
    assert (first.mix, last.mix) == (TrainingMix(), TrainingMix(8, 0.25, 0.5, facts_before_question=True,
                                                                confuser_answers="even"))
    assert (first.carry_memory, last.carry_memory) == (0.0, 0.5)


def test_a_stage_takes_the_curriculum_share_of_generated_noise_unless_it_sets_its_own():
    from rmt_cli.curriculum import curriculum_stages
    from rmt_cli.schema import TrainConfig, typed_node

    stages = [{"segments": 1, "steps": 5}, {"segments": 2, "steps": 5, "generated_share": 0.75},
              {"segments": 4, "steps": 5, "generated_share": 0}]

    def shares(curriculum: dict) -> list:
        cfg = typed_node(TrainConfig, {"curriculum": {"stages": stages, **curriculum}})
        return [stage.mix.generated_share for stage in curriculum_stages(cfg)]

    assert shares({}) == [None, 0.75, 0.0]
    assert shares({"generated_share": 0.0}) == [0.0, 0.75, 0.0]


def test_extrapolation_splits_accuracy_by_the_quarter_holding_the_first_fact():
    from rmt_cli.extrapolate import accuracy_by_fact_quarter
    from rmt_cli.samples import PlacedFact, Sample

    def sample(n_segments, *fact_segments):
        facts = tuple(PlacedFact(segment, 0, np.zeros(2, dtype=np.int64)) for segment in fact_segments)
        return Sample(np.zeros(n_segments, dtype=np.int64), facts, np.zeros(2, dtype=np.int64), 0)

    # 8 segments: quarters are segments 0-1, 2-3, 4-5, 6-7; a sample counts where its earliest fact lies
    samples = [sample(8, 0), sample(8, 1, 7), sample(8, 6, 3), sample(8, 7), sample(8, 7, 6)]
    correct = np.array([True, False, True, False, True])
    assert accuracy_by_fact_quarter(correct, samples) == {
        "accuracy_fact_in_q1": 0.5, "accuracy_fact_in_q2": 1.0, "accuracy_fact_in_q3": None,
        "accuracy_fact_in_q4": 0.5}


def test_extrapolation_splits_accuracy_by_the_right_answer():
    from rmt_cli.extrapolate import accuracy_by_answer, weakest_answer
    from rmt_cli.samples import Sample

    def sample(label):
        return Sample(np.zeros(2, dtype=np.int64), (), np.zeros(2, dtype=np.int64), label)

    samples = [sample(0), sample(2), sample(2), sample(0), sample(2)]
    correct = np.array([True, False, True, True, False])
    row = {"accuracy": 0.6, **accuracy_by_answer(correct, samples, ["kitchen", "hallway", "garden"])}
    assert row == {"accuracy": 0.6, "accuracy_answer_kitchen": 1.0, "accuracy_answer_hallway": None,
                   "accuracy_answer_garden": 1 / 3}
    assert weakest_answer(row) == ", weakest answer garden 33.3%"
    assert weakest_answer({"accuracy": 1.0, "accuracy_answer_kitchen": 1.0}) == ""  # none below the whole


# qa4 stories whose question both facts name (the kitchen) and one fact names (the bedroom)
KITCHEN_STORY = Story(("The kitchen is west of the garden.", "The bedroom is west of the kitchen."),
                      "What is west of the kitchen?", "bedroom")
BEDROOM_STORY = Story(KITCHEN_STORY.facts, "What is the bedroom west of?", "kitchen")


def test_extrapolation_splits_accuracy_by_how_many_facts_name_the_question():
    from rmt_cli.extrapolate import accuracy_by_question_kind
    from rmt_cli.samples import Sample

    def sample(facts_naming_question):
        return Sample(np.zeros(2, dtype=np.int64), (), np.zeros(2, dtype=np.int64), 0,
                      KITCHEN_STORY if facts_naming_question == 2 else BEDROOM_STORY)

    samples = [sample(1), sample(2), sample(2), sample(1), sample(2)]
    correct = np.array([True, False, True, True, False])
    assert accuracy_by_question_kind(correct, samples) == {
        "accuracy_one_fact_names_question": 1.0, "accuracy_several_facts_name_question": 1 / 3}
    assert accuracy_by_question_kind(correct[[0, 3]], [samples[0], samples[3]]) == {
        "accuracy_one_fact_names_question": 1.0, "accuracy_several_facts_name_question": None}


def test_extrapolation_splits_out_the_answers_only_the_memory_could_bring():
    from rmt_cli.extrapolate import accuracy_from_memory
    from rmt_cli.samples import PlacedFact, Sample

    def sample(story, fact_segments, n_segments=4):
        facts = tuple(PlacedFact(segment, 0, np.zeros(1, dtype=np.int64)) for segment in fact_segments)
        return Sample(np.zeros(n_segments, dtype=np.int64), facts, np.zeros(2, dtype=np.int64), 0, story)

    samples = [sample(KITCHEN_STORY, (0, 2)),  # both facts name the question, both before it: from memory
               sample(KITCHEN_STORY, (1, 3)),  # one fact beside the question
               sample(BEDROOM_STORY, (0, 1)),  # from memory, one fact names the question
               sample(KITCHEN_STORY, (0, 0), n_segments=1),  # one segment: nothing comes from memory
               sample(KITCHEN_STORY, (2, 2))]
    correct = np.array([False, True, True, True, True])
    assert accuracy_from_memory(correct, samples) == {"accuracy_facts_before_question": 2 / 3,
                                                       "accuracy_several_facts_before_question": 0.5}
    assert accuracy_from_memory(correct[[1, 3]], [samples[1], samples[3]]) == {
        "accuracy_facts_before_question": None, "accuracy_several_facts_before_question": None}


def test_predictions_count_how_often_the_noise_names_each_answer():
    from types import SimpleNamespace

    from rmt_cli.predictions import MentionCounter, occurrences, prediction_rows
    from rmt_cli.samples import PlacedFact, Sample

    # "garden" is one token (7), "hallway" two (8, 9), "office" one (5)
    labels = ("garden", "hallway", "office")
    spellings = [[np.array([7])], [np.array([8, 9])], [np.array([5])]]
    factory = SimpleNamespace(answer_spellings=lambda: spellings, task=SimpleNamespace(labels=labels),
                              content_length=4,
                              corpus=SimpleNamespace(tokens=np.array([7, 1, 8, 9, 7, 7, 2, 8, 9, 8], dtype=np.int32)))
    count = MentionCounter(factory)
    # windows at 0 and 4: [7 1 8 9] and [7 7 2 8] -> garden 3 times, hallway once (the 8 9 split over windows 4-8
    # is not in one window), office never; window 6 [2 8 9 8] -> hallway once
    assert count(Sample(np.array([0, 4]), (), np.zeros(1), 0)).tolist() == [3, 1, 0]
    assert count(Sample(np.array([6, 6, 0]), (), np.zeros(1), 0)).tolist() == [1, 3, 0]
    assert occurrences(np.array([[8, 9, 8, 9], [9, 8, 1, 1]]), np.array([8, 9])) == 2

    fact, later = PlacedFact(1, 0, np.zeros(2, dtype=np.int64)), PlacedFact(2, 0, np.zeros(2, dtype=np.int64))
    samples = [Sample(np.array([0, 4, 0]), (later, fact), np.zeros(1), 1, KITCHEN_STORY),
               Sample(np.array([6, 6]), (), np.zeros(1), 0)]
    rows = prediction_rows(factory, samples, np.array([0, -1]))
    assert rows == [
        {"segments": 3, "sample": 0, "answer": "hallway", "predicted": "garden", "correct": False,
         "first_fact_segment": 1, "last_fact_segment": 2, "facts_naming_question": 2, "facts_name_predicted": True,
         "noise_mentions_of_answer": 2, "noise_mentions_of_predicted": 4},  # windows 0, 4, 0
        {"segments": 2, "sample": 1, "answer": "garden", "predicted": "", "correct": False,
         "first_fact_segment": None, "last_fact_segment": None, "facts_naming_question": 0,
         "facts_name_predicted": None, "noise_mentions_of_answer": 0, "noise_mentions_of_predicted": None}]


def test_answer_spellings_and_the_windows_that_name_an_answer(tokenizer):
    from rmt_cli.corpus import TokenCorpus
    from rmt_cli.samples import SampleFactory
    from rmt_cli.task_spec import TaskSpec

    task = TaskSpec("detect", "qa1", "random")
    plain = tokenizer("It was a fine day . They sat in the parlour .", add_special_tokens=False)["input_ids"]
    named = tokenizer("She walked in the garden .", add_special_tokens=False)["input_ids"]
    tokens = np.array((plain * 3 + named + plain * 3), dtype=np.int32)
    starts = np.arange(0, len(tokens), 4)
    factory = SampleFactory(task, TokenCorpus(tokens, starts, ("doc",)), tokenizer, content_length=8)
    garden = factory.answer_spellings()[task.labels.index("garden")]
    assert [s.tolist() for s in garden] == [tokenizer("garden", add_special_tokens=False)["input_ids"]]
    where = 3 * len(plain) + named.index(garden[0][0])
    windows = factory.confuser_windows
    assert len(windows) and all(start <= where < start + 8 for start in windows)
    assert set(windows) == {s for s in factory.window_starts if s <= where < s + 8}

    rng = np.random.default_rng(0)
    every = factory.draw(rng, 6, mix=TrainingMix(confuser_share=1.0))
    assert set(every.noise_starts) <= set(windows)
    none = factory.training_sample(0, 5, (6, 6))
    zero = factory.training_sample(0, 5, (6, 6), TrainingMix(confuser_share=0.0))
    assert none.noise_starts.tolist() == zero.noise_starts.tolist()


def test_even_confusers_name_each_answer_the_noise_names_about_as_often(tokenizer):
    from rmt_cli.corpus import TokenCorpus
    from rmt_cli.samples import SampleFactory
    from rmt_cli.task_spec import TaskSpec

    task = TaskSpec("detect", "qa1", "random")
    plain = tokenizer("It was a fine day . They sat in the parlour .", add_special_tokens=False)["input_ids"]
    garden = tokenizer("She walked in the garden .", add_special_tokens=False)["input_ids"]
    office = tokenizer("He went to his office .", add_special_tokens=False)["input_ids"]
    tokens = np.array(plain + (garden + plain) * 9 + office + plain, dtype=np.int32)  # garden 9 times, office once
    factory = SampleFactory(task, TokenCorpus(tokens, np.arange(0, len(tokens), 4), ("doc",)), tokenizer, 8)
    by_answer = factory.confuser_windows_by_answer
    assert np.array_equal(np.unique(np.concatenate(by_answer)), factory.confuser_windows)
    named = {task.labels[k] for k, windows in enumerate(by_answer) if len(windows)}
    assert named == {"garden", "office"}

    def share_naming_office(answers: str) -> float:
        rng = np.random.default_rng(0)
        drawn = np.concatenate([factory.draw(rng, 20, mix=TrainingMix(confuser_share=1.0, confuser_answers=answers))
                                .noise_starts for _ in range(50)])
        return float(np.isin(drawn, by_answer[task.labels.index("office")]).mean())

    assert share_naming_office("natural") < 0.25  # as often as the noise names it: about 1 window in 10
    assert 0.4 < share_naming_office("even") < 0.6  # half of the windows: one of the two answers the noise names


def test_a_stage_with_confuser_share_trains_on_noise_that_names_the_answers(tmp_path):
    from helpers.cli import rmt

    stages = "curriculum.stages=[{segments:2,steps:2,confuser_share:0.5}]"
    text = tmp_path / "plain.txt"  # noise that never names a place
    text.write_text("It was a fine day, and they sat in the parlour and talked of the weather.\n" * 7000)
    result = rmt("train", "experiment=smoke", stages, "noise=files", f"noise.paths=[{text}]",
                 f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "error: the training noise never names one of the answers" in result.stderr
    assert "leave confuser_share out of the curriculum stage" in result.stderr
    result = rmt("train", "experiment=smoke", stages, f"hydra.run.dir={tmp_path / 'austen'}")
    assert result.returncode == 0, result.stderr


def test_multi_fact_share_draws_stories_whose_question_several_facts_name(synthetic_noise, tokenizer):
    from rmt_cli.facts import facts_naming_the_question

    f = factory("reasoning", synthetic_noise, tokenizer)
    for i in range(40):  # a share of 0 draws nothing more: training samples stay as they were
        plain, zero = f.training_sample(0, i, (2, 2)), f.training_sample(0, i, (2, 2), TrainingMix(multi_fact_share=0))
        assert plain.question.tolist() == zero.question.tolist()
        assert plain.noise_starts.tolist() == zero.noise_starts.tolist()

    def named_twice(share: float) -> float:
        rng = np.random.default_rng(0)
        return np.mean([facts_naming_the_question(f.pick_story(rng, "train", 2, share)) > 1 for _ in range(400)])

    assert 0.3 < named_twice(0.0) < 0.8  # about half of qa4's questions, as bAbI draws them
    assert named_twice(1.0) == 1.0 and named_twice(0.0) < named_twice(0.5) < 1.0
    # each sample says which kind it is (predictions.csv splits accuracy by it)
    drawn = [f.training_sample(0, i, (2, 2), TrainingMix(multi_fact_share=1.0)) for i in range(20)]
    assert {sample.facts_naming_question for sample in drawn} == {2}
    assert {sample.facts_naming_question for sample in f.sample_set("test", 0, 2, 40)} == {1, 2}


def test_a_prediction_is_told_apart_by_whether_a_fact_names_it():
    from rmt_cli.facts import facts_name

    assert facts_name(KITCHEN_STORY, "garden") and facts_name(KITCHEN_STORY, "bedroom")
    assert not facts_name(KITCHEN_STORY, "office")
    assert not facts_name(KITCHEN_STORY, "gardens")  # whole words only


def test_a_question_named_by_several_facts_is_counted_as_such():
    from rmt_cli.facts import Story, facts_naming_the_question

    chain = ("The bedroom is west of the kitchen.", "The kitchen is west of the garden.")
    assert facts_naming_the_question(Story(chain, "What is west of the kitchen?", "bedroom")) == 2
    assert facts_naming_the_question(Story(chain, "What is the bedroom west of?", "kitchen")) == 1
    moves = ("Mary went to the garden.", "John moved to the office.", "Mary journeyed to the hallway.")
    assert facts_naming_the_question(Story(moves, "Where is Mary?", "hallway")) == 2
    assert facts_naming_the_question(Story(moves[:1], "Where is Mary?", "garden")) == 1


def test_multi_fact_share_on_a_one_fact_task_is_one_line(tmp_path):
    from helpers.cli import rmt

    stages = "curriculum.stages=[{segments:2,steps:2,multi_fact_share:0.5}]"
    result = rmt("train", "experiment=smoke", "task=detect", stages, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode == 2 and "error: no detect story asks about someone or somewhere" in result.stderr
    assert "leave multi_fact_share out of the curriculum stage" in result.stderr and "Traceback" not in result.stderr
