def test_server_starts_and_stores_an_event(server):
    source = server.create_source("web")
    import httpx

    r = httpx.post(f"{server.url}/v1/track", auth=(source["write_key"], ""),
                   json={"userId": "u1", "event": "Hello", "messageId": "smoke-1"})
    assert r.status_code == 200, r.text
    events = server.events()
    assert [(e["messageId"], e["event"], e["source_id"]) for e in events] == [
        ("smoke-1", "Hello", source["id"])]
