"""Captions for shapes-world scenes, and the parser that reads them back.

Lesson 01 explains it. A caption is written from a scene graph with templates
and paraphrases ("a red circle above a blue square", "there is a small white
cross next to a green diamond", "three purple triangles"). The parser turns
any such caption into a `Query` — object descriptions, counts and relations —
that `minidalle.oracle` checks against the scene graph it reads off an image.
The grammar is small on purpose: every caption the templates write parses, and
anything else is refused with a message that lists the words it knows.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass

from minidalle.config import InputError
from minidalle.world.scenes import COLOUR_NAMES, INVERSE, SHAPES, SIZE_NAMES, Scene


# relation -> its phrasings (the first is the canonical one)
PHRASES = {
    "left of": ("to the left of", "left of"),
    "right of": ("to the right of", "right of"),
    "above": ("above", "over"),
    "below": ("below", "beneath"),
    "on": ("on top of", "on"),
    "under": ("under", "underneath"),
    "inside": ("inside", "in"),
    "in front of": ("in front of", "covering"),
    "behind": ("behind",),
    "near": ("near", "close to"),
    "next to": ("next to", "beside"),
}
NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}
PLURAL = {s: s + ("es" if s.endswith(("s", "x", "ss")) else "s") for s in SHAPES}
SINGLE = ("{0}", "a picture of {0}", "an image of {0}", "there is {0}")
PAIR = ("{0} {r} {1}", "{0} is {r} {1}", "there is {0} {r} {1}")
# more specific relations are stated in preference to vaguer ones


# more specific relations are stated in preference to vaguer ones
PREFERENCE = ("on", "under", "inside", "in front of", "behind", "next to",
              "left of", "right of", "above", "below", "near")
MAX_CAPTION_WORDS = 32


@dataclass(frozen=True)
class Desc:
    """An object description: `count` objects of this shape (colour, size optional)."""

    shape: str
    colour: str | None = None
    size: str | None = None
    count: int = 1

    def matches(self, obj) -> bool:
        return (obj.shape == self.shape and self.colour in (None, obj.colour)
                and self.size in (None, obj.size))

    def phrase(self) -> str:
        words = [w for w in (self.size, self.colour) if w]
        if self.count == 1:
            head = "an" if (words or [self.shape])[0][0] in "aeiou" else "a"
            return " ".join([head, *words, self.shape])
        return " ".join([COUNT_WORDS[self.count], *words, PLURAL[self.shape]])


@dataclass(frozen=True)
class Query:
    """What a caption asserts: descriptions, and relations (i, relation, j) between them."""

    objects: tuple[Desc, ...]
    relations: tuple[tuple[int, str, int], ...] = ()

    @property
    def n_objects(self) -> int:
        return sum(d.count for d in self.objects)

    def text(self) -> str:
        """The canonical caption for this query."""
        phrases = [d.phrase() for d in self.objects]
        if self.relations:
            i, rel, j = self.relations[0]
            head = f"{phrases[i]} {PHRASES[rel][0]} {phrases[j]}"
            rest = [p for k, p in enumerate(phrases) if k not in (i, j)]
            return head + (", and " + _join(rest) if rest else "")
        return _join(phrases)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe(scene: Scene, rng: random.Random | None = None, size_prob: float = 0.5, held=None) -> Query:
    """The query a caption of `scene` states. rng picks sizes shown and the relation named.

    held: the scene's relations, if already computed (`SceneArrays.relations`).
    """
    rng = rng or random.Random(0)
    objs = scene.objects
    if not objs:
        raise ValueError("an empty scene has no caption")
    if len(objs) > 1 and len({(o.shape, o.colour) for o in objs}) == 1:   # "three red circles"
        return Query((Desc(objs[0].shape, objs[0].colour, None, len(objs)),))
    descs = tuple(Desc(o.shape, o.colour, o.size if rng.random() < size_prob else None) for o in objs)
    if len(objs) == 1:
        return Query(descs)
    held = scene.relations() if held is None else held
    rank = {r: PREFERENCE.index(r) for r in PREFERENCE}
    # a contact relation is always stated; "next to" half the time it holds
    cut = rank["next to"] if rng.random() < 0.5 else rank["behind"]
    specific = [(rank[r], i, r, j) for (i, r, j) in held if rank[r] <= cut]
    if specific:
        best = min(t[0] for t in specific)
        _, i, rel, j = rng.choice([t for t in specific if t[0] == best])
    else:  # else a direction between a random pair, or "near" when no direction holds
        pairs = sorted({(i, j) for (i, _, j) in held})
        if not pairs:
            return Query(descs)
        i, j = rng.choice(pairs)
        rels = [r for (a, r, b) in held if (a, b) == (i, j)]
        rel = rng.choice([r for r in rels if r != "near" or rng.random() < 0.3] or rels)
    if rng.random() < 0.5 and INVERSE[rel]:
        i, j, rel = j, i, INVERSE[rel]
    return Query(descs, ((i, rel, j),))


def caption(scene: Scene, rng: random.Random | None = None, size_prob: float = 0.5, held=None) -> str:
    """A caption for `scene`, with a paraphrase picked by `rng`."""
    rng = rng or random.Random(0)
    q = describe(scene, rng, size_prob, held)
    phrases = [d.phrase() for d in q.objects]
    if not q.relations:
        text = rng.choice(SINGLE).format(_join(phrases))
        plural = q.objects[0].count > 1 or len(q.objects) > 1
        return text.replace("there is ", "there are ", 1) if plural else text
    i, rel, j = q.relations[0]
    text = rng.choice(PAIR).format(phrases[i], phrases[j], r=rng.choice(PHRASES[rel]))
    rest = [p for k, p in enumerate(phrases) if k not in (i, j)]
    return text + (", and " + _join(rest) if rest else "")


_REL_PATTERNS = sorted(((p, r) for r, ps in PHRASES.items() for p in ps), key=lambda t: -len(t[0]))
_FILLER = ("a picture of ", "an image of ", "there is ", "there are ")
VOCABULARY = sorted(set(NUMBERS) | set(SHAPES) | set(PLURAL.values()) | set(COLOUR_NAMES) | set(SIZE_NAMES)
                    | {w for p in _FILLER for w in p.split()} | {"is", "and"}
                    | {w for ps in PHRASES.values() for p in ps for w in p.split()})


def parse(text: str) -> Query:
    """Read a caption back into a Query. Raises InputError, saying why, on anything else."""
    if not isinstance(text, str):
        raise TypeError(f"a caption is a string, got {type(text).__name__}")
    t = " ".join(re.sub(r"[.,!]", " , ", text.lower()).split()).replace(" ,", ",").strip(", ")
    if not t:
        raise InputError("empty caption: describe one to four shapes, e.g. 'a red circle above a blue square'")
    if len(t.split()) > MAX_CAPTION_WORDS:
        raise InputError(f"caption too long ({len(t.split())} words; at most {MAX_CAPTION_WORDS})")
    unknown = [w for w in t.replace(",", " ").split() if w not in VOCABULARY]
    if unknown:
        raise InputError(f"unknown word {unknown[0]!r} in {text!r}; the shapes world knows: {', '.join(VOCABULARY)}")
    for f in _FILLER:
        if t.startswith(f):
            t = t[len(f):]
    # the first clause may hold one relation: "A [is] REL B"
    head, _, tail = t.partition(", and ")
    parts = [p for p in re.split(r", | and ", tail) if p] if tail else []
    relation = None
    for phrase, rel in _REL_PATTERNS:
        m = re.fullmatch(rf"(.+?) (?:is )?{phrase} (.+)", head)
        if m:
            relation, parts = rel, [m.group(1), m.group(2)] + parts
            break
    else:
        parts = [p for p in re.split(r", | and ", head) if p] + parts
    descs = tuple(_desc(p, text) for p in parts)
    if sum(d.count for d in descs) > 4:
        raise InputError(f"{text!r} asks for more than 4 objects; the shapes world holds 1 to 4")
    if relation and (descs[0].count > 1 or descs[1].count > 1):
        raise InputError(f"{text!r}: a relation links two single objects, e.g. 'a red circle above a blue square'")
    return Query(descs, ((0, relation, 1),) if relation else ())


def _desc(phrase: str, text: str) -> Desc:
    words = phrase.split()
    count = NUMBERS.get(words[0]) if words else None
    if count is None or len(words) < 2:
        raise InputError(f"in {text!r}: {phrase!r} is not an object; write e.g. 'a red circle' or 'two blue squares'")
    *attrs, noun = words[1:]
    if count == 1 and noun in SHAPES:
        shape = noun
    elif count > 1 and noun in PLURAL.values():
        shape = SHAPES[list(PLURAL.values()).index(noun)]
    else:
        want = "a singular shape (circle, ...)" if count == 1 else "a plural shape (circles, ...)"
        raise InputError(f"in {text!r}: {phrase!r} should end in {want}")
    size = colour = None
    for w in attrs:
        if w in SIZE_NAMES and size is None and colour is None:
            size = w
        elif w in COLOUR_NAMES and colour is None:
            colour = w
        else:
            raise InputError(f"in {text!r}: {phrase!r} should read '[size] [colour] shape', e.g. 'a small red circle'")
    return Desc(shape, colour, size, count)
