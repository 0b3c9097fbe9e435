"""What a people search matches: one definition for every profile store.

A person is found by the *terms* of their profile: each user id and anonymous id, each
profile trait's scalar value, and each tail of a text value that starts at a word (so
``ada@ps-example.com`` has the terms ``ada@ps-example.com``, ``ps-example.com``,
``example.com`` and ``com``), all case-folded. A query matches when a term starts with
it (case-folded too): ``lovelace`` finds ``Ada Lovelace``, ``ada@ps`` and
``example.com`` find ``ada@ps-example.com``; ``velace`` finds nothing.

Why terms and prefixes rather than substrings: a store can keep the terms in an ordered
index (the embedded store: a table with (term, cluster) as its key) and answer any query
with one range scan, however many people there are; a substring search would read them
all.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import lru_cache

import msgspec

from millpond.profiles.merge import NULL_JSON, PROFILE_SCOPE

#: A backend answers a people search matching up to this many terms from its term range
#: (sorting what it found); above it, by walking the clusters in order.
NARROW = 5000

#: Terms longer than this are cut: an id or a value is found by its start anyway.
MAX_TERM = 200
#: Tails kept per value: a long text is found by its first words (bounds the index).
MAX_TAILS = 32
#: Where a word starts: a letter or digit after anything else.
_WORD_START = re.compile(r"(?<![^\W_])[^\W_]")
_decode = msgspec.json.decode


def normalize(query: str) -> str:
    """The form a query is matched in (what :func:`terms` does to values)."""
    return query.strip().casefold()[:MAX_TERM]


@lru_cache(maxsize=65536)  # values repeat (plans, countries, booleans): decode them once
def value_terms(value_json: str) -> frozenset[str]:
    """The terms of one trait value (JSON text as stored): a string, number or boolean,
    and each tail of a string from a word's start; nothing for null, objects and
    arrays."""
    if value_json == NULL_JSON:
        return frozenset()
    value = _decode(value_json)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float):
        text = value_json
    elif isinstance(value, str):
        text = value
    else:
        return frozenset()
    folded = text.strip().casefold()
    out = {folded[:MAX_TERM]} if folded else set()
    for i, m in enumerate(_WORD_START.finditer(folded)):
        if i == MAX_TAILS:
            break
        out.add(folded[m.start():m.start() + MAX_TERM])
    return frozenset(out)


def terms(ids: Iterable[str], traits: Iterable[tuple[str, str, str]]) -> set[str]:
    """The terms of a profile: its ``ids`` and its profile traits, given as
    (scope, name, value JSON) rows (group traits, scope other than ``""``, are not the
    person's)."""
    out = {i.casefold()[:MAX_TERM] for i in ids if i}
    for gid, _name, value in traits:
        if gid == PROFILE_SCOPE:
            out |= value_terms(value)
    return out


def term_changes(ids: Mapping[int, list[str]],
                 traits: Mapping[int, list[tuple[str, str, str]]],
                 old: set[tuple[str, int]]) -> tuple[list[tuple[str, int]],
                                                     list[tuple[str, int]]]:
    """The (term, cluster) rows to delete and to insert so that the terms of the clusters
    whose ``ids`` and profile ``traits`` are given (``old``: their rows now) are theirs:
    what every backend's ``search_terms`` table writes after an apply."""
    new = {(term, cid) for cid, own in ids.items() for term in terms(own, traits.get(cid, ()))}
    return sorted(old - new), sorted(new - old)


def matches(query: str, profile_terms: Iterable[str]) -> bool:
    """Whether a normalized ``query`` finds a profile with these terms."""
    return not query or any(t.startswith(query) for t in profile_terms)


def prefix_range(query: str) -> tuple[str, str]:
    """The [low, high) range of terms that start with a normalized ``query``, in the
    binary (UTF-8) order an index keeps text in."""
    return query, query + "\U0010ffff"
