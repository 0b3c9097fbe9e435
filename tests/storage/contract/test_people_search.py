"""The profile store's people search, over every backend: what a query finds (ids, any
trait value, words, any case), what it no longer finds after a change, and paging."""

from __future__ import annotations

import pytest

from millpond.errors import BadRequest
from tests.profiles.profile_events import alias, group, identify


def found(storage, query: str, **kwargs) -> list[str | None]:
    return [p["user_id"] or p["anonymous_ids"][0]
            for p in storage.profiles.search(query, **kwargs).people]


@pytest.fixture
def people(storage):
    storage.profiles.apply_many([
        identify("m1", "ada", "anon-1", traits={"email": "Ada@Example.com",
                                                "name": "Ada Lovelace", "age": 36,
                                                "vip": True, "address": {"city": "London"}}),
        identify("m2", "alan", traits={"email": "alan@turing.org", "name": "Alan Turing"}),
        identify("m3", None, "anon-3", traits={"name": "Grace Hopper"}),
        group("m4", "acme-corp", "alan", traits={"name": "Acme"}),
    ])
    return storage


def test_ids_and_trait_values_find_people_in_any_case(people):
    assert found(people, "ada") == ["ada"]                  # a user id (and a word)
    assert found(people, "ANON-3") == ["anon-3"]            # an anonymous id, any case
    assert found(people, "ada@example.com") == ["ada"]      # an email, whole
    assert found(people, "lovelace") == ["ada"]             # a word of a value
    assert found(people, "turing") == ["alan"]              # a word of an email
    assert found(people, "example.com") == ["ada"]          # a tail of an email
    assert found(people, "36") == ["ada"] and found(people, "true") == ["ada"]
    assert found(people, "a") == ["ada", "alan", "anon-3"]  # a prefix of many terms
    assert found(people, "  Grace  ") == ["anon-3"]


def test_what_is_not_a_persons_term_finds_nothing(people):
    assert found(people, "london") == []      # inside an object: not a value
    assert found(people, "acme") == []        # a group's trait, not the person's
    assert found(people, "velace") == []      # the middle of a word
    assert found(people, "zzz") == []


def test_changed_cleared_and_merged_profiles_are_found_as_they_are_now(people):
    people.profiles.apply_many([
        identify("m5", "ada", traits={"email": "countess@example.com"},
                 timestamp="2024-06-01T00:00:00Z"),
        identify("m6", "alan", traits={"name": None}, timestamp="2024-06-01T00:00:00Z"),
        alias("m7", "anon-3", "ada", timestamp="2024-06-01T00:00:00Z"),
    ])
    assert found(people, "ada@") == []                     # the old email went
    assert found(people, "countess") == ["ada"]
    assert found(people, "alan turing") == []               # cleared
    assert found(people, "hopper") == ["ada"]               # merged into ada's profile
    assert found(people, "anon") == ["ada"]                 # one person, two ids


def test_empty_query_lists_everyone_a_page_at_a_time(storage):
    storage.profiles.apply_many([identify(f"m{i}", f"user-{i:03}") for i in range(23)])
    seen, cursor, pages = [], None, 0
    while True:
        page = storage.profiles.search("", after=cursor, limit=10)
        pages += 1
        seen += [p["user_id"] for p in page.people]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert pages == 3 and sorted(seen) == [f"user-{i:03}" for i in range(23)]
    assert len(set(seen)) == 23
    assert storage.profiles.search("user-01", limit=5).people[0]["user_id"].startswith(
        "user-01")
    with pytest.raises(BadRequest):
        storage.profiles.search("", after="not-a-cursor")


def test_a_page_shows_each_person_as_get_does(people):
    (ada,) = people.profiles.search("lovelace").people
    assert ada == people.profiles.get("ada")
