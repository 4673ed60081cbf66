import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minidalle.world.captions import MAX_CAPTION_WORDS, PHRASES, Desc, Query, caption, describe, parse
from minidalle.world.oracle import check
from minidalle.world.sampler import sample_scenes
from minidalle.world.scenes import COLOUR_NAMES, SHAPES, SIZE_NAMES, Obj, Scene


def test_every_generated_caption_parses_and_is_true_of_its_scene():
    rng = random.Random(0)
    for sc in sample_scenes(1500, seed=11).to_scenes():
        text = caption(sc, rng)
        result = check(sc, parse(text))
        assert result["exact"], (text, sc, result)


def test_swapped_attributes_are_caught():
    a = Obj("circle", "red", "small", 0.25, 0.5)
    b = Obj("square", "blue", "small", 0.75, 0.5, 1)
    sc = Scene((a, b))
    assert check(sc, "a red circle to the left of a blue square")["exact"]
    assert not check(sc, "a blue circle to the left of a red square")["exact"]
    assert not check(sc, "a red circle to the right of a blue square")["relation: right of"]
    assert not check(sc, "two red circles")["exact"]
    assert not check(sc, "a red circle")["count"]          # an extra object in the scene


def test_canonical_text_round_trips():
    q = Query((Desc("circle", "red", "small"), Desc("square", "blue")), ((0, "on", 1),))
    assert parse(q.text()) == q
    assert parse("three purple triangles") == Query((Desc("triangle", "purple", None, 3),))
    assert parse("An image of an orange cross.") == Query((Desc("cross", "orange"),))


@pytest.mark.parametrize("text, says", [
    ("", "empty caption"), ("   ", "empty caption"),
    ("a red circle " * 12, "too long"),
    ("a red hexagon", "unknown word 'hexagon'"),
    ("a circle red", "should end in a singular shape"),
    ("a red small circle", "should read"),
    ("two red circle", "plural shape"),
    ("four red circles and a blue square", "more than 4"),
    ("two red circles above a blue square", "two single objects"),
])
def test_bad_captions_get_clear_errors(text, says):
    with pytest.raises(ValueError, match=says):
        parse(text)


def test_non_string_caption():
    with pytest.raises(TypeError):
        parse(3)


descs = st.builds(Desc, st.sampled_from(SHAPES), st.one_of(st.none(), st.sampled_from(COLOUR_NAMES)),
                  st.one_of(st.none(), st.sampled_from(SIZE_NAMES)), st.just(1))


@settings(max_examples=200, deadline=None)
@given(objs=st.lists(descs, min_size=1, max_size=4), rel=st.one_of(st.none(), st.sampled_from(sorted(PHRASES))))
def test_any_query_survives_text_and_back(objs, rel):
    q = Query(tuple(objs), ((0, rel, 1),) if rel and len(objs) >= 2 else ())
    assert parse(q.text()) == q


words = st.sampled_from(["a", "an", "red", "circle", "circles", "two", "above", "on", "top", "of", "in",
                         "front", "and", ",", "is", "there", "xyzzy", "large", "behind", "next", "to", ""])


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.lists(words, max_size=14).map(" ".join)))
def test_parser_never_crashes_on_anything(text):
    try:
        q = parse(text)
    except ValueError as e:
        assert str(e)
    else:
        assert 1 <= q.n_objects <= 4


def test_describe_states_the_planned_contact_relation():
    base = Obj("square", "blue", "large", 0.5, 0.5)
    inner = Obj("circle", "red", "small", 0.5, 0.5, 1)
    q = describe(Scene((base, inner)), random.Random(1))
    assert q.relations and q.relations[0][1] == "inside"


def test_caption_length_is_bounded():
    rng = random.Random(3)
    assert max(len(caption(sc, rng).split()) for sc in sample_scenes(500, seed=2).to_scenes()) <= MAX_CAPTION_WORDS
