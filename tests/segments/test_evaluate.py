"""The pure evaluator: membership at an event time, since when, and the next change."""

from millpond.segments.definition import TraitCondition, parse_definition
from millpond.segments.evaluate import (
    CLEARED,
    Evaluator,
    Membership,
    PersonFacts,
    trait_matches,
    trait_of,
    trait_roots,
)
from millpond.timeutil import parse_iso_ms

DAY = 86_400_000
NOW = parse_iso_ms("2026-06-01T00:00:00Z")


def order(ts: int, seq: int, total: float = 10.0, source: str = "web") -> tuple:
    return (ts, seq, {"type": "track", "event": "Order Completed", "source_id": source,
                      "properties": {"total": total}})


def test_at_least_two_within_30_days_exits_when_the_older_one_leaves():
    cond = parse_definition({"event": "Order Completed", "at_least": 2, "within": "30d"})
    first, second = NOW - 40 * DAY, NOW - 29 * DAY
    third = NOW - 5 * DAY
    person = PersonFacts({}, [order(first, 1), order(second, 2), order(third, 3)])
    m = Evaluator().membership(cond, person, NOW)
    assert m.member
    # In at -29 d (with the one at -40 d), out at -10 d when that one left, in again at -5 d.
    assert m.since_ms == third
    # Counted now: the purchases 29 and 5 days ago; the one 29 days ago leaves the window
    # in a day, and then only one counts.
    assert m.next_change_ms == second + 30 * DAY
    later = Evaluator().membership(cond, person, second + 30 * DAY)
    assert not later.member
    assert later.since_ms == second + 30 * DAY
    assert later.next_change_ms is None
    just_before = Evaluator().membership(cond, person, second + 30 * DAY - 1)
    assert just_before.member


def test_backfilled_old_events_enter_in_the_past():
    cond = parse_definition({"event": "Order Completed"})
    two_years = NOW - 730 * DAY
    person = PersonFacts({}, [order(two_years + DAY, 7), order(two_years, 9)])
    m = Evaluator().membership(cond, person, NOW)
    assert (m.member, m.since_ms, m.next_change_ms) == (True, two_years, None)


def test_where_between_and_at_most():
    cond = parse_definition({"event": "Order Completed", "where": "properties.total > 50",
                             "at_most": 1, "between": ["2026-01-01T00:00:00Z",
                                                       "2026-02-01T00:00:00Z"]})
    jan = parse_iso_ms("2026-01-10T00:00:00Z")
    ev = Evaluator()
    assert ev.membership(cond, PersonFacts({}, [order(jan, 1, 60)]), NOW).member
    assert not ev.membership(cond, PersonFacts({}, [order(jan, 1, 40)]), NOW).member
    two = PersonFacts({}, [order(jan, 1, 60), order(jan + DAY, 2, 70)])
    m = ev.membership(cond, two, NOW)
    assert not m.member and m.since_ms == jan + DAY
    outside = PersonFacts({}, [order(parse_iso_ms("2026-03-01T00:00:00Z"), 1, 60)])
    assert not ev.membership(cond, outside, NOW).member


def test_computed_events_never_count():
    cond = parse_definition({"event": "Order Completed"})
    person = PersonFacts({}, [order(NOW - DAY, 1, source="computed")])
    assert not Evaluator().membership(cond, person, NOW).member


def test_traits_count_from_the_time_that_set_them():
    cond = parse_definition({"all": [{"trait": "plan", "op": "eq", "value": "pro"},
                                     {"event": "Order Completed"}]})
    set_at = NOW - 10 * DAY
    person = PersonFacts({"plan": ("pro", set_at)}, [order(NOW - 20 * DAY, 1)])
    m = Evaluator().membership(cond, person, NOW)
    assert m.member and m.since_ms == set_at
    assert not Evaluator().membership(cond, person, set_at - 1).member


def test_not_and_in_segment_resolve_at_the_same_time():
    buyers = parse_definition({"event": "Order Completed"})
    ev = Evaluator({"buyers": buyers})
    cond = parse_definition({"all": [{"trait": "email", "op": "exists"},
                                     {"not": {"in_segment": "buyers"}}]})
    person = PersonFacts({"email": ("a@b.c", NOW - 30 * DAY)}, [order(NOW - 10 * DAY, 1)])
    before = ev.membership(cond, person, NOW - 10 * DAY - 1)
    assert (before.member, before.since_ms) == (True, NOW - 30 * DAY)
    m = ev.membership(cond, person, NOW)
    assert (m.member, m.since_ms) == (False, NOW - 10 * DAY)


def test_why_explains_each_condition():
    cond = parse_definition({"all": [{"trait": "plan", "op": "in", "value": ["pro", "team"]},
                                     {"event": "Order Completed", "at_least": 2}]})
    person = PersonFacts({"plan": ("team", NOW - DAY)}, [order(NOW - 3 * DAY, 4)])
    why = Evaluator().why(cond, person, NOW)
    assert why["result"] is False
    trait, event = why["all"]
    assert trait["actual"] == "team" and trait["result"] is True
    assert trait["set_at"] == "2026-05-31T00:00:00.000Z"
    assert event["count"] == 1 and event["result"] is False
    assert event["events"] == [{"seq": 4, "timestamp": "2026-05-29T00:00:00.000Z"}]


def test_why_shows_the_window_and_the_matching_events_that_do_not_count():
    within = parse_definition({"event": "Order Completed", "within": "30d"})
    person = PersonFacts({}, [order(NOW - 40 * DAY, 1), order(NOW - 3 * DAY, 2),
                              order(NOW + DAY, 3)])
    why = Evaluator().why(within, person, NOW)
    assert (why["count"], why["not_counted"]) == (1, 2)
    assert why["window"] == {"after": "2026-05-02T00:00:00.000Z",
                             "until": "2026-06-01T00:00:00.000Z"}
    assert [e["seq"] for e in why["events"]] == [2]
    # Before the window, and later than the moment asked about.
    assert [e["seq"] for e in why["not_counted_events"]] == [1, 3]
    between = parse_definition({"event": "Order Completed",
                                "between": ["2026-04-01", "2026-05-01"]})
    why = Evaluator().why(between, person, NOW)
    assert why["window"] == {"from": "2026-04-01T00:00:00.000Z",
                             "before": "2026-05-01T00:00:00.000Z"}
    assert (why["count"], why["not_counted"], why["result"]) == (1, 2, True)
    ever = Evaluator().why(parse_definition({"event": "Order Completed"}), person, NOW)
    assert "window" not in ever and (ever["count"], ever["not_counted"]) == (2, 1)


def test_why_says_since_when_an_in_segment_answer_holds():
    """In or out of the other segment, and since when (event time)."""
    buyers = parse_definition({"event": "Order Completed", "within": "30d"})
    evaluator = Evaluator({"buyers": buyers})
    cond = parse_definition({"in_segment": "buyers"})
    recent = PersonFacts({}, [order(NOW - 40 * DAY, 1), order(NOW - 3 * DAY, 2)])
    why = evaluator.why(cond, recent, NOW)
    assert (why["result"], why["since"]) == (True, "2026-05-29T00:00:00.000Z")
    lapsed = PersonFacts({}, [order(NOW - 40 * DAY, 1)])
    why = evaluator.why(cond, lapsed, NOW)  # out since the purchase left the window
    assert (why["result"], why["since"]) == (False, "2026-05-22T00:00:00.000Z")


def test_a_trait_path_reads_into_objects_whole_names_first():
    traits = {"address": ({"city": "Oslo", "geo": {"lat": 59.9}, "none": None}, 7),
              "utm.source": ("ads", 8), "utm": ({"source": "mail"}, 9), "plan": ("pro", 1),
              "a.b": ({"c": 1}, 10), "a": ({"b": {"d": 2}}, 11)}
    assert trait_of(traits, "address.city") == ("Oslo", 7)
    assert trait_of(traits, "address.geo.lat") == (59.9, 7)
    assert trait_of(traits, "utm.source") == ("ads", 8)  # the whole name first
    assert trait_of(traits, "a.b.c") == (1, 10) and trait_of(traits, "a.b.d") == (2, 11)
    for absent in ("address.zip", "address.none", "plan.x", "address.city.x", "nope.x"):
        assert trait_of(traits, absent) is None, absent
    assert trait_roots("a.b.c") == {"a", "a.b", "a.b.c"} and trait_roots("plan") == {"plan"}
    cond = parse_definition({"trait": "address.geo.lat", "op": "gt", "value": 50})
    person = PersonFacts(traits, [])
    assert Evaluator().membership(cond, person, NOW).since_ms == 7
    why = Evaluator().why(cond, person, NOW)
    assert (why["actual"], why["result"]) == (59.9, True)


def test_trait_ops():
    def check(op, actual, value=None, present=True):
        return trait_matches(TraitCondition("t", op, value), actual, present)

    assert check("eq", 1, 1.0) and not check("eq", "1", 1) and not check("eq", True, 1)
    assert check("ne", "x", "y") and check("ne", None, "y", present=False)
    assert check("gt", 5, 3) and not check("gt", "5", 3) and check("lte", "2024", "2025")
    assert check("contains", "hello world", "lo w") and check("contains", ["a", 2], 2)
    assert not check("contains", 5, "5")
    assert check("in", "pro", ["pro", "team"]) and not check("in", 1, ["1"])
    assert check("exists", 0) and check("not_exists", None, present=False)
    assert not check("gt", None, 1, present=False)


# -- the step functions agree with the breakpoint walk -------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_times = st.integers(-60, 10).map(lambda d: NOW + d * DAY)
_leaves = st.one_of(
    st.builds(lambda op, v: {"trait": "plan", "op": op, "value": v},
              st.sampled_from(["eq", "ne"]), st.sampled_from(["pro", "free"])),
    st.just({"trait": "plan", "op": "exists"}),
    st.builds(lambda least, most, within, between: {
        "event": "Order Completed", "at_least": least,
        **({"at_most": least + most} if most is not None else {}),
        **({"within": f"{within}d"} if within else {}),
        **({"between": ["2026-05-01T00:00:00Z", "2026-05-20T00:00:00Z"]}
           if between and not within else {})},
        st.integers(0, 3), st.none() | st.integers(0, 2), st.sampled_from([0, 0, 3, 10]),
        st.booleans()),
)


def _trees(leaves):
    return st.recursive(leaves, lambda inner: st.one_of(
        st.builds(lambda cs: {"all": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda cs: {"any": cs}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, inner)), max_leaves=6)


#: Conditions of the segment "inner", and of one that may refer to it.
_inner = _trees(_leaves)
_conditions = _trees(st.one_of(_leaves, st.just({"in_segment": "inner"})))


@settings(max_examples=300, deadline=None)
@given(definition=_conditions, inner=_inner, orders=st.lists(_times, max_size=8),
       plan=st.none() | st.tuples(st.sampled_from(["pro", "free", CLEARED]), _times),
       now=_times)
def test_membership_equals_the_breakpoint_walk(definition, inner, orders, plan, now):
    cond = parse_definition(definition)
    traits = {"plan": plan} if plan else {}
    person = PersonFacts(traits, [order(t, i) for i, t in enumerate(orders)])
    ev = Evaluator({"inner": parse_definition(inner)})
    stepper = ev.stepper(person)  # shared, as among a person's segments
    assert ev.membership(parse_definition(inner), person, now, stepper) == \
        ev.membership_by_points(parse_definition(inner), person, now)
    assert ev.membership(cond, person, now, stepper) == \
        ev.membership_by_points(cond, person, now)


def test_a_trait_change_starts_the_new_state_at_its_own_time():
    """Only the current value of a trait is kept: before the update that set it, the
    trait's value is unknown. A non-member since that update (a plan now "free") left
    then, not at their first data; a member since it (a plan now "pro") entered then."""
    first, changed = NOW - 30 * DAY, NOW - DAY
    person = PersonFacts({"plan": ("free", changed)}, [order(first, 1)])
    is_pro = {"trait": "plan", "op": "eq", "value": "pro"}
    pro = parse_definition(is_pro)
    assert Evaluator().membership(pro, person, NOW) == Membership(False, changed, None)
    buyer_not_pro = parse_definition({"all": [{"event": "Order Completed"},
                                              {"not": {"trait": "plan", "op": "eq",
                                                       "value": "pro"}}]})
    assert Evaluator().membership(buyer_not_pro, person, NOW) == Membership(True, changed,
                                                                            None)
    # Decided whatever the plan was before: no lean is taken, the time stays the first.
    buyer_or_pro = parse_definition({"any": [{"event": "Order Completed"}, is_pro]})
    assert Evaluator().membership(buyer_or_pro, person, NOW) == Membership(True, first, None)
    # Set in the future: unknown now, so not a member, until then.
    later = PersonFacts({"plan": ("pro", NOW + DAY)}, [order(first, 1)])
    assert Evaluator().membership(pro, later, NOW) == Membership(False, first, NOW + DAY)
    # A non-member either way, whose state will be known from then: re-evaluated then.
    later_free = PersonFacts({"plan": ("free", NOW + DAY)}, [order(first, 1)])
    assert Evaluator().membership(pro, later_free, NOW) == Membership(False, first,
                                                                      NOW + DAY)
