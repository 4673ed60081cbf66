import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minidalle.world.sampler import sample_scenes
from minidalle.world.scenes import (COLOUR_NAMES, MARGIN, SAME_GAP, SHAPES, SIZES, Obj, Scene, SceneSpec, Skew,
                                    relation_margins, relations_between)


def rels(*objs):
    return set(relations_between(objs))


def test_same_seed_same_scenes_other_seed_other_scenes():
    a, b, c = sample_scenes(300, seed=7), sample_scenes(300, seed=7), sample_scenes(300, seed=8)
    assert torch.equal(a.xy, b.xy) and torch.equal(a.shape, b.shape) and torch.equal(a.colour, b.colour)
    assert not torch.equal(a.xy, c.xy)


def test_object_counts_follow_the_spec():
    sa = sample_scenes(4000, SceneSpec(n_objects=(0.1, 0.2, 0.3, 0.4)), seed=1)
    freq = torch.bincount(sa.n, minlength=5)[1:].float() / 4000
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.03)


def test_every_sampled_scene_is_clear_and_in_bounds():
    sa = sample_scenes(1500, seed=2)
    for sc in sa.to_scenes():
        for o in sc.objects:
            x0, y0, x1, y1 = o.box
            assert 0.02 - 1e-4 <= min(x0, y0) and max(x1, y1) <= 0.98 + 1e-4
        for i, a in enumerate(sc.objects):
            for j, b in enumerate(sc.objects):
                if i == j:
                    continue
                pa = torch.tensor([a.x, a.y, SIZES[a.size]], dtype=torch.float64)
                pb = torch.tensor([b.x, b.y, SIZES[b.size]], dtype=torch.float64)
                m = relation_margins(pa, pb, torch.tensor(a.z > b.z))
                assert min(abs(float(v)) for v in m.values()) >= MARGIN - 1e-3
                if a.colour == b.colour:
                    assert float(m["near"]) <= 0.15 - SAME_GAP + 1e-3


def test_relations_mean_what_they_say():
    a = Obj("circle", "red", "small", 0.2, 0.5)
    b = Obj("square", "blue", "small", 0.8, 0.5, 1)
    assert {(0, "left of", 1), (1, "right of", 0)} <= rels(a, b)
    assert not {(0, "near", 1), (0, "above", 1), (0, "next to", 1)} & rels(a, b)
    c = Obj("square", "blue", "small", 0.2 + 0.26 + 0.05, 0.5, 1)       # gap 0.05: near, beside
    assert {(0, "next to", 1), (0, "near", 1), (0, "left of", 1)} <= rels(a, c)
    top = Obj("circle", "red", "small", 0.5, 0.5 - 0.13 - 0.2, 1)        # resting on a large square
    base = Obj("square", "blue", "large", 0.5, 0.5)
    assert {(1, "on", 0), (0, "under", 1), (1, "above", 0)} <= rels(base, top)
    inner = Obj("circle", "red", "small", 0.5, 0.5, 1)
    assert {(1, "inside", 0), (1, "near", 0)} <= rels(base, inner)
    assert (1, "in front of", 0) not in rels(base, inner)              # nested is not "in front of"
    over = Obj("circle", "red", "large", 0.75, 0.55, 1)                  # overlaps, drawn later
    assert {(1, "in front of", 0), (0, "behind", 1)} <= rels(base, over)


def test_generated_data_contains_every_contact_relation():
    found = set()
    for sc in sample_scenes(2000, seed=3).to_scenes():
        found |= {r for _, r, _ in sc.relations()}
    assert {"on", "under", "inside", "in front of", "behind", "next to", "near",
            "left of", "right of", "above", "below"} <= found


@pytest.mark.parametrize("bad", [dict(shapes=("circle", "hexagon")), dict(colours={"mauve": 1}),
                                 dict(sizes=("huge",)), dict(n_objects=(1, 0, 0)),
                                 dict(forbidden=(("colour", "teal"),)), dict(contact=1.5)])
def test_bad_specs_say_what_is_allowed(bad):
    with pytest.raises(ValueError) as e:
        SceneSpec(**bad)
    assert any(w in str(e.value) for w in ("expected one of", "probabilit", "n_objects"))


def test_unknown_object_attributes_are_refused():
    with pytest.raises(ValueError, match="expected one of circle"):
        Obj("hexagon", "red", "small", 0.5, 0.5)
    with pytest.raises(ValueError, match="unknown colour"):
        Skew("shape", "circle", "colour", {"mauve": 1.0})


def test_skew_sets_an_unstated_attribute():
    spec = SceneSpec(skews=(Skew("shape", "circle", "colour", {"red": 1.0}),))
    sa = sample_scenes(2000, spec, seed=4)
    circles = [o for sc in sa.to_scenes() for o in sc.objects if o.shape == "circle"]
    assert len(circles) > 100 and all(o.colour == "red" for o in circles)


def test_forbidden_scenes_are_flagged_and_can_be_dropped():
    spec = SceneSpec(forbidden=(("colour", "purple"),))
    sa = sample_scenes(1000, spec, seed=5)
    flagged = [sc for sc in sa.to_scenes() if sc.forbidden]
    assert flagged and all(any(o.colour == "purple" for o in sc.objects) for sc in flagged)
    clean = sample_scenes(1000, SceneSpec(forbidden=(("colour", "purple"),), drop_forbidden=True), seed=5)
    assert not any(o.colour == "purple" for sc in clean.to_scenes() for o in sc.objects)


def test_duplicates_repeat_scenes():
    sa = sample_scenes(1000, SceneSpec(duplicates=0.5, n_duplicated=5), seed=6)
    keys = [tuple(sa.xy[i].flatten().tolist()) for i in range(1000)]
    top = max(keys.count(k) for k in set(keys[:5]))
    assert 0.5 * 1000 / 5 * 0.6 < top                        # each duplicated scene appears ~100 times


def test_scene_dict_round_trip():
    sc = sample_scenes(5, seed=9).scene(4)
    assert Scene.from_dict(sc.to_dict()) == sc


@settings(max_examples=40, deadline=None)
@given(shapes=st.sets(st.sampled_from(SHAPES), min_size=1), colours=st.sets(st.sampled_from(COLOUR_NAMES), min_size=1),
       n=st.lists(st.floats(0, 1), min_size=4, max_size=4).filter(lambda v: sum(v) > 0.01),
       contact=st.floats(0, 1), seed=st.integers(0, 10**6))
def test_any_valid_spec_gives_scenes_within_it(shapes, colours, n, contact, seed):
    spec = SceneSpec(n_objects=tuple(n), shapes=tuple(shapes), colours=tuple(colours), contact=contact)
    try:  # e.g. four objects of one colour must keep apart: the sampler manages or says so
        sa = sample_scenes(20, spec, seed=seed)
    except RuntimeError as e:
        assert "could not place" in str(e)
        return
    for sc in sa.to_scenes():
        assert 1 <= len(sc.objects) <= 4 and n[len(sc.objects) - 1] > 0
        assert all(o.shape in shapes and o.colour in colours for o in sc.objects)


def test_sizes_are_distinct_enough():
    assert math.isclose(min(SIZES.values()) / max(SIZES.values()), 0.65, abs_tol=0.05)
