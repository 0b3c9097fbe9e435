"""The postgres loader against a real PostgreSQL: counts, idempotence, schema growth, discards."""

from __future__ import annotations

from millpond.warehouses.batch import Loaded, StoredEvent
from tests.warehouses.events import every_type, expected_rows, make_event

TABLES_SQL = """
SELECT table_name FROM information_schema.tables
WHERE table_schema = %s AND table_name NOT LIKE 'millpond_%%' ORDER BY 1
"""


def loaded(outcome) -> Loaded:
    assert isinstance(outcome, Loaded), outcome
    return outcome


def counts(sql, schema: str = "millpond") -> dict[str, int]:
    tables = [r[0] for r in sql(TABLES_SQL, schema)]
    return {t: sql(f'SELECT count(*) FROM "{schema}"."{t}"')[0][0] for t in tables}


def snapshot(sql, schema: str = "millpond") -> dict[str, list]:
    """Every row of every table (bookkeeping included), in a stable order."""
    tables = [r[0] for r in sql(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", schema)]
    return {t: sorted(map(repr, sql(f'SELECT * FROM "{schema}"."{t}"'))) for t in tables}


def test_ten_thousand_events_of_every_type(make_loader, sql):
    events = every_type(10_000)
    loader = make_loader()
    rows_reported: dict[str, int] = {}
    for start in range(0, len(events), 2_500):
        result = loaded(loader.load(events[start:start + 2_500]))
        assert result.clean, result.discards[:3]
        assert result.rows == result.inserted
        for table, n in result.rows.items():
            rows_reported[table] = rows_reported.get(table, 0) + n
    want = expected_rows(events)
    got = counts(sql)
    assert got == dict(want)
    assert set(got) >= {"tracks", "identifies", "pages", "screens", "groups", "aliases",
                        "users", "accounts", "order_completed", "product_viewed", "signed_up",
                        "checkout_started"}
    # Every stored event is one row of its main table, exactly once.
    for table in ("tracks", "identifies", "pages", "screens", "groups", "aliases"):
        assert sql(f"SELECT count(*) - count(DISTINCT id) FROM millpond.{table}")[0][0] == 0
    assert rows_reported["tracks"] == want["tracks"]


def test_columns_follow_segment_names_and_types(make_loader, sql):
    loaded(make_loader().load(every_type(60)))
    cols = dict(sql("SELECT column_name, data_type FROM information_schema.columns "
                    "WHERE table_schema = 'millpond' AND table_name = 'order_completed'"))
    assert cols["id"] == "text"
    assert cols["received_at"] == "timestamp with time zone"
    assert cols["original_timestamp"] == "timestamp with time zone"
    assert cols["uuid_ts"] == "timestamp with time zone"
    assert cols["event"] == "text" and cols["event_text"] == "text"
    assert cols["revenue"] == "double precision"
    assert cols["quantity"] == "bigint"
    assert cols["in_stock"] == "boolean"
    assert cols["product_sku"] == "text"          # nested object flattened with _
    assert cols["tags"] == "text"                  # arrays kept as JSON text
    assert cols["delivered_at"] == "timestamp with time zone"
    assert cols["context_library_name"] == "text"
    assert cols["context_page_path"] == "text"
    assert cols["context_campaign_tags"] == "text"
    tracks = dict(sql("SELECT column_name, data_type FROM information_schema.columns "
                      "WHERE table_schema = 'millpond' AND table_name = 'tracks'"))
    assert "revenue" not in tracks and "context_ip" in tracks  # no properties in tracks
    row = sql("SELECT event, event_text, tags, product_sku FROM millpond.order_completed "
              "ORDER BY millpond_seq LIMIT 1")[0]
    assert row == ("order_completed", "Order Completed", '["x","y"]', row[3])
    assert sql("SELECT DISTINCT event FROM millpond.tracks ORDER BY 1") == [
        ("checkout_started",), ("order_completed",), ("product_viewed",), ("signed_up",)]
    ident = dict(sql("SELECT column_name, data_type FROM information_schema.columns "
                     "WHERE table_schema = 'millpond' AND table_name = 'identifies'"))
    assert ident["address_city"] == "text" and ident["logins"] == "bigint"
    assert "_timestamp" not in ident


def test_running_a_batch_twice_changes_nothing(make_loader, sql):
    events = every_type(1_500)
    loader = make_loader()
    first = loaded(loader.load(events))
    before = snapshot(sql)
    again = loaded(loader.load(events))
    assert again.rows == first.rows
    assert set(again.inserted.values()) == {0}
    assert snapshot(sql) == before
    # Cut differently (overlapping halves) and by a new loader (a restarted process): still
    # nothing new.
    other = make_loader()
    for part in (events[:1000], events[500:]):
        assert set(loaded(other.load(part)).inserted.values()) == {0}
    assert snapshot(sql) == before


def test_a_new_property_adds_a_column(make_loader, sql):
    loader = make_loader()
    first = make_event(0, "track")
    loaded(loader.load([first]))
    cols = {r[0] for r in sql("SELECT column_name FROM information_schema.columns WHERE "
                              "table_schema = 'millpond' AND table_name = 'order_completed'")}
    assert "coupon_code" not in cols
    second = make_event(4, "track")
    second.event["properties"]["couponCode"] = "SPRING"
    second.event["context"]["locale"] = "fr-FR"
    result = loaded(loader.load([second]))
    assert result.clean
    assert sql("SELECT coupon_code, context_locale FROM millpond.order_completed "
               "WHERE id = %s", second.event["messageId"]) == [("SPRING", "fr-FR")]
    assert sql("SELECT context_locale FROM millpond.tracks WHERE id = %s",
               second.event["messageId"]) == [("fr-FR",)]
    assert sql("SELECT coupon_code FROM millpond.order_completed WHERE id = %s",
               first.event["messageId"]) == [(None,)]
    assert sql("SELECT type FROM millpond.millpond_columns WHERE table_name = 'order_completed' "
               "AND column_name = 'coupon_code'") == [("text",)]


def test_a_type_conflict_is_a_counted_discard(make_loader, sql):
    loader = make_loader()
    a = make_event(0, "track")
    a.event["properties"]["size"] = 42
    loaded(loader.load([a]))
    b, c = make_event(4, "track"), make_event(8, "track")
    b.event["properties"]["size"] = "large"
    c.event["properties"]["size"] = 2.5
    result = loaded(loader.load([b, c]))
    assert not result.clean
    assert result.rows["order_completed"] == 2 and result.inserted["order_completed"] == 2
    by_seq = {d.seq: d for d in result.discards}
    assert set(by_seq) == {b.seq, c.seq}
    assert by_seq[b.seq].table == "order_completed" and by_seq[b.seq].column == "size"
    assert "text value does not fit type bigint" in by_seq[b.seq].reason
    assert by_seq[b.seq].value == '"large"'
    rows = sql("SELECT message_id, table_name, column_name, value, reason "
               "FROM millpond.millpond_discards ORDER BY seq")
    assert [r[:4] for r in rows] == [
        (b.event["messageId"], "order_completed", "size", '"large"'),
        (c.event["messageId"], "order_completed", "size", "2.5")]
    assert all("does not fit type bigint" in r[4] for r in rows)
    # The rows themselves are loaded, with the column empty.
    assert sql("SELECT size FROM millpond.order_completed WHERE id = %s",
               b.event["messageId"]) == [(None,)]
    # Re-running reports the same discards and stores nothing twice.
    again = loaded(loader.load([b, c]))
    assert len(again.discards) == 2
    assert sql("SELECT count(*) FROM millpond.millpond_discards")[0][0] == 2


def test_mixed_types_in_one_batch_widen_the_new_column(make_loader, sql):
    events = [make_event(i * 4, "track") for i in range(3)]
    for stored, value in zip(events, [1, 2.5, 3], strict=True):
        stored.event["properties"]["weight"] = value
    result = loaded(make_loader().load(list(reversed(events))))
    assert result.clean
    assert sql("SELECT data_type FROM information_schema.columns WHERE table_schema = "
               "'millpond' AND table_name = 'order_completed' AND column_name = 'weight'") == [
        ("double precision",)]


def test_reserved_and_colliding_names_are_discarded_with_reasons(make_loader, sql):
    stored = make_event(0, "track")
    stored.event["properties"].update({"user_id": "spoof", "context_ip": "1.2.3.4",
                                       "productSku": "dup", "★": 1})
    result = loaded(make_loader().load([stored]))
    reasons = {(d.column, d.reason.split(" ")[0]) for d in result.discards}
    assert ("user_id", "properties.user_id") in reasons
    assert ("context_ip", "properties.context_ip") in reasons
    assert ("product_sku", "properties.productSku") in reasons
    assert any(d.column is None and "no letter or digit" in d.reason for d in result.discards)
    assert sql("SELECT user_id, product_sku FROM millpond.order_completed") == [
        ("user-0", "SKU-0")]
    assert sql("SELECT count(*) FROM millpond.millpond_discards")[0][0] == 4


def test_a_message_id_reused_by_another_source_is_not_dropped_silently(make_loader, sql):
    loader = make_loader()
    web = make_event(1, "page", source_id="src_web")
    app = make_event(1, "page", source_id="src_app", seq=50)
    app.event["messageId"] = web.event["messageId"]
    loaded(loader.load([web]))
    result = loaded(loader.load([app]))
    assert result.inserted["pages"] == 0
    assert len(result.discards) == 1
    assert "already in pages, loaded from seq 2 (source src_web)" in result.discards[0].reason
    # In one batch: the lower seq loads, the other is discarded.
    both = loaded(make_loader(schema="other").load([app, web]))
    assert both.inserted["pages"] == 1 and len(both.discards) == 1
    assert sql("SELECT millpond_source_id FROM other.pages") == [("src_web",)]


def test_table_prefix_and_schema(make_loader, sql):
    result = loaded(make_loader(schema="analytics", table_prefix="web_").load(every_type(30)))
    assert "web_tracks" in result.rows and "web_users" in result.rows
    tables = {r[0] for r in sql("SELECT table_name FROM information_schema.tables "
                                "WHERE table_schema = 'analytics'")}
    assert {"web_tracks", "web_identifies", "web_millpond_discards", "web_millpond_columns",
            "web_order_completed"} <= tables
    assert "web_millpond_trait_times" not in tables  # trait times live on the rows now
    assert sql("SELECT bool_and(millpond_trait_times ? 'plan'), count(*) > 0 "
               "FROM analytics.web_users") == [(True, True)]


def test_events_that_are_not_segment_calls_are_discarded(make_loader):
    bad = StoredEvent(1, "s", {"type": "bogus", "messageId": "m1"})
    nameless = StoredEvent(2, "s", {"type": "page"})
    result = loaded(make_loader().load([bad, nameless]))
    assert [d.reason for d in result.discards] == [
        "not a Segment call (type must be track, identify, page, screen, group or alias)",
        "no messageId"]
    assert result.rows == {}


def test_a_misfit_in_a_context_column_is_reported_for_both_tables(make_loader, sql):
    loader = make_loader()
    assert isinstance(loader.load([make_event(0, "track")]), Loaded)  # context_ip is text
    for steady in (True, False):
        stored = make_event(4 if steady else 8, "track")
        stored.event["context"]["ip"] = "a\x00b"  # text PostgreSQL cannot store
        if not steady:
            stored.event["context"]["newField"] = 1  # tracks gets a new column: merged last
        result = loaded(loader.load([stored]))
        assert sorted((d.table, d.column) for d in result.discards) == [
            ("order_completed", "context_ip"), ("tracks", "context_ip")]
        assert sql("SELECT context_ip FROM millpond.tracks WHERE id = %s",
                   stored.event["messageId"]) == [(None,)]


def test_the_garbage_collector_is_left_as_it_was(make_loader):
    import gc

    loader = make_loader()
    assert gc.isenabled()
    loaded(loader.load(every_type(30)))
    assert gc.isenabled()
    gc.disable()
    try:
        loaded(loader.load(every_type(60)[30:]))
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_the_merge_path_makes_the_same_tables_as_the_direct_copy(make_loader, sql,
                                                                 monkeypatch):
    """Rows normally go straight in by COPY; the merge (stage, INSERT ... ON CONFLICT) is
    for re-runs and hand-altered columns. Both must leave the very same tables."""
    import millpond.warehouses.postgres.run as run

    events = every_type(800)
    direct = loaded(make_loader(schema="direct").load(events))
    monkeypatch.setattr(run, "_copyable", lambda catalog, load: False)
    merged = loaded(make_loader(schema="merged").load(events))
    assert merged.rows == direct.rows and merged.inserted == direct.inserted
    tables = counts(sql, "direct")
    assert tables == counts(sql, "merged") and len(tables) > 8
    for table in tables:
        cols = [r[0] for r in sql("SELECT column_name FROM information_schema.columns WHERE "
                                  "table_schema = 'direct' AND table_name = %s "
                                  "AND column_name <> 'uuid_ts' ORDER BY 1", table)]
        select = ", ".join(f'"{c}"' for c in cols)
        assert sql(f'SELECT {select} FROM direct."{table}" ORDER BY 1') == sql(
            f'SELECT {select} FROM merged."{table}" ORDER BY 1'), table
