"""The browser-facing collector paths against a real server, byte for byte as SDKs call them.

What the three browser SDKs need (docs/architecture.md, "Browser SDKs"): settings and
source-config answers, the one-letter event paths, ``/v1/b`` batches, usage counters,
RudderStack's beacon, and CORS on every answer including errors. The real SDKs run in
Chromium in ``tests/sdk/browser``; this module pins each rule down on its own.
"""

from __future__ import annotations

import base64
import json
import uuid

import httpx
import pytest

from tests.support.errors import assert_error_shape
from tests.support.server import ADMIN_TOKEN

ORIGIN = "http://127.0.0.1:5173"
SHORT = {"i": "identify", "t": "track", "p": "page", "s": "screen", "g": "group", "a": "alias"}
# Fields of a settings answer that make analytics.js load code (spec, 2.3).
LOADS_CODE = ("middlewareSettings", "enabledMiddleware", "legacyVideoPluginsEnabled",
              "remotePlugins")


@pytest.fixture(scope="module")
def ctx(shared_server):
    source = shared_server.create_source("browser-web")
    track = shared_server.create_source("browser-track", kind="track")
    return shared_server, source, track


def _basic(key: str) -> str:
    return "Basic " + base64.b64encode(f"{key}:".encode()).decode()


def _stored(srv, message_id: str) -> list[dict]:
    return [e for e in srv.events() if e.get("messageId") == message_id]


def _assert_cors(response: httpx.Response, origin: str = ORIGIN) -> None:
    assert response.headers.get("access-control-allow-origin") == origin, response.headers
    assert "Origin" in response.headers.get("vary", "")


@pytest.mark.parametrize(("prefix", "integration"), [
    ("", "Segment.io"), ("/customerio", "Customer.io Data Pipelines")])
def test_settings_name_only_the_sdks_own_integration(ctx, prefix, integration) -> None:
    srv, source, _ = ctx
    r = httpx.get(f"{srv.url}{prefix}/v1/projects/{source['write_key']}/settings",
                  headers={"Origin": ORIGIN})
    assert r.status_code == 200, r.text
    _assert_cors(r)
    body = r.json()
    assert list(body["integrations"]) == [integration]
    settings = body["integrations"][integration]
    assert settings == {"apiKey": source["write_key"], "apiHost": f"127.0.0.1:{srv.port}/v1",
                        "protocol": "http"}
    assert body["metrics"] == {"sampleRate": 0}
    assert not set(LOADS_CODE) & set(body)


@pytest.mark.parametrize("path", [
    "/v1/projects/{key}/settings", "/customerio/v1/projects/{key}/settings",
    "/sourceConfig/?writeKey={key}"])
def test_unknown_disabled_or_track_keys_answer_404_with_cors(ctx, path) -> None:
    srv, _, track = ctx
    disabled = srv.create_source(f"browser-off-{uuid.uuid4().hex[:6]}", enabled=False)
    for key in ("no-such-key", disabled["write_key"], track["write_key"]):
        r = httpx.get(srv.url + path.format(key=key), headers={"Origin": ORIGIN})
        assert r.status_code == 404, (key, r.text)
        _assert_cors(r)
        assert assert_error_shape(r)["code"] == "not_found"


def test_source_config_by_basic_auth_or_query(ctx) -> None:
    srv, source, _ = ctx
    expected = {"source": {"id": source["id"], "name": source["name"], "workspaceId": "millpond",
                           "enabled": True, "config": {}, "destinations": []}}
    for path in ("/sourceConfig/", "/sourceConfig"):
        r = httpx.get(f"{srv.url}{path}?p=npm&v=3.34.1&build=modern&writeKey="
                      f"{source['write_key']}&lockIntegrationsVersion=true",
                      headers={"Origin": ORIGIN})
        assert r.status_code == 200 and r.json() == expected, r.text
        _assert_cors(r)
    r = httpx.get(f"{srv.url}/sourceConfig/?p=npm",
                  headers={"Authorization": _basic(source["write_key"]), "Origin": ORIGIN})
    assert r.json() == expected


@pytest.mark.parametrize("auth", ["Basic !!!notbase64", "Basic " + base64.b64encode(
    b"\xff\xfe").decode(), "Digest abc", None])
def test_source_config_with_bad_or_missing_auth_is_a_readable_401(ctx, auth) -> None:
    srv, _, _ = ctx
    headers = {"Origin": ORIGIN, **({"Authorization": auth} if auth else {})}
    r = httpx.get(f"{srv.url}/sourceConfig/", headers=headers)
    assert r.status_code == 401, r.text
    _assert_cors(r)
    assert_error_shape(r)


def test_preflight_names_every_sdk_header(ctx) -> None:
    srv, _, _ = ctx
    for path in ("/v1/t", "/v1/track", "/v1/b", "/v1/batch", "/sourceConfig/",
                 "/v1/projects/x/settings", "/beacon/v1/batch"):
        r = httpx.options(srv.url + path, headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-retry-count,"
                                              "anonymousid,sentat,rsa-retry-attempt"})
        assert r.status_code == 204, (path, r.text)
        _assert_cors(r)
        allowed = {h.strip().lower() for h in
                   r.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "x-retry-count", "anonymousid", "sentat",
                "rsa-retry-attempt", "rsa-since-last-attempt", "rsa-since-first-attempt",
                "rsa-retry-reason", "rsa-recovered"} <= allowed
        assert int(r.headers["access-control-max-age"]) > 0


def test_preflight_of_an_unknown_path_is_a_404(ctx) -> None:
    srv, _, _ = ctx
    for path in ("/v1/nope", "/v1/projects/settings", "/customerio/v2/x", "/beacon/v2/batch"):
        r = httpx.options(srv.url + path, headers={"Origin": ORIGIN,
                                                   "Access-Control-Request-Method": "POST"})
        assert r.status_code == 404, (path, r.text)
        _assert_cors(r)
        assert_error_shape(r)


@pytest.mark.parametrize(("short", "kind"), list(SHORT.items()))
def test_one_letter_paths_store_their_type(ctx, short, kind) -> None:
    srv, source, _ = ctx
    message_id = f"short-{short}-{uuid.uuid4()}"
    body = {"messageId": message_id, "userId": "u-short", "writeKey": source["write_key"],
            "event": "Clicked", "groupId": "g1", "previousId": "anon-1"}
    if kind != "track":
        body.pop("event")
    r = httpx.post(f"{srv.url}/v1/{short}", content=json.dumps(body),
                   headers={"Content-Type": "text/plain", "Origin": ORIGIN,
                            "Authorization": _basic(source["write_key"])})
    assert r.status_code == 200, r.text
    _assert_cors(r)
    stored = _stored(srv, message_id)
    assert len(stored) == 1 and stored[0]["type"] == kind
    assert "writeKey" not in stored[0]


def test_batch_alias_with_the_key_only_in_the_messages(ctx) -> None:
    """Customer.io's batching dispatcher sends ``{batch, writeKey}``; some SDK versions put
    the key only on each message. Messages keep their own sentAt; others take the top one."""
    srv, source, _ = ctx
    ids = [f"b-{uuid.uuid4()}" for _ in range(2)]
    batch = [{"type": "track", "event": "A", "userId": "u-b", "messageId": ids[0],
              "writeKey": source["write_key"], "sentAt": "2024-01-01T00:00:05Z",
              "originalTimestamp": "2024-01-01T00:00:00Z"},
             {"type": "page", "name": "Home", "anonymousId": "a-b", "messageId": ids[1],
              "writeKey": source["write_key"]}]
    r = httpx.post(f"{srv.url}/v1/b", content=json.dumps({"batch": batch,
                                                          "sentAt": "2030-01-01T00:00:00Z"}),
                   headers={"Content-Type": "text/plain", "Origin": ORIGIN})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 2
    first, second = _stored(srv, ids[0])[0], _stored(srv, ids[1])[0]
    assert first["sentAt"] == "2024-01-01T00:00:05Z"
    assert second["sentAt"] == "2030-01-01T00:00:00Z"


def test_batch_with_mixed_messages_rejects_each_bad_one_by_index(ctx) -> None:
    srv, source, _ = ctx
    other = srv.create_source(f"browser-other-{uuid.uuid4().hex[:6]}")
    good = f"mix-{uuid.uuid4()}"
    batch = [{"type": "track", "event": "Ok", "userId": "u", "messageId": good},
             {"type": "track", "userId": "u"},                       # no event name
             {"type": "identify", "userId": "u", "writeKey": other["write_key"]},
             "not an object"]
    r = httpx.post(f"{srv.url}/v1/b", json={"writeKey": source["write_key"], "batch": batch},
                   headers={"Origin": ORIGIN})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 1
    assert [(x["index"], x["code"]) for x in body["rejected"]] == [
        (1, "missing_field"), (2, "write_key_mismatch"), (3, "not_an_object")]
    assert len(_stored(srv, good)) == 1


def test_usage_metrics_are_acknowledged_and_not_stored(ctx) -> None:
    srv, _, _ = ctx
    before = len(srv.events())
    counters = {"series": [{"type": "Counter", "metric": "analytics_js.invoke", "value": 1,
                            "tags": {"method": "track"}}] * 3}
    r = httpx.post(f"{srv.url}/v1/m", content=json.dumps(counters),
                   headers={"Content-Type": "text/plain", "Origin": ORIGIN})
    assert r.status_code == 200, r.text
    _assert_cors(r)
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert "millpond_sdk_usage_series_total 3.0" in metrics or \
        any(line.startswith("millpond_sdk_usage_series_total ") and float(line.split()[1]) >= 3
            for line in metrics.splitlines())
    assert len(srv.events()) == before
    r = httpx.post(f"{srv.url}/v1/m", content=b"x" * (65 * 1024), headers={"Origin": ORIGIN})
    assert r.status_code == 413
    _assert_cors(r)


def test_beacon_batch_takes_the_key_from_the_query(ctx) -> None:
    srv, source, _ = ctx
    message_id = f"beacon-{uuid.uuid4()}"
    body = {"batch": [{"type": "track", "event": "Left", "anonymousId": "a-1",
                       "messageId": message_id, "originalTimestamp": "2024-05-01T10:00:00Z"}],
            "sentAt": "2024-05-01T10:00:01Z"}
    r = httpx.post(f"{srv.url}/beacon/v1/batch?writeKey={source['write_key']}",
                   content=json.dumps(body), headers={"Content-Type": "text/plain",
                                                      "Origin": ORIGIN})
    assert r.status_code == 200, r.text
    assert len(_stored(srv, message_id)) == 1
    r = httpx.post(f"{srv.url}/beacon/v1/batch?writeKey=wrong", content=json.dumps(body),
                   headers={"Origin": ORIGIN})
    assert r.status_code == 401
    _assert_cors(r)


def test_allowed_origins_refuse_other_pages_readably(ctx) -> None:
    srv, _, _ = ctx
    source = srv.create_source(f"browser-shop-{uuid.uuid4().hex[:6]}",
                               allowed_origins=["https://shop.example.com",
                                                "https://*.example.org"])
    key = source["write_key"]
    body = json.dumps({"writeKey": key, "userId": "u", "event": "E"})

    def post(origin: str | None) -> httpx.Response:
        headers = {"Content-Type": "text/plain", **({"Origin": origin} if origin else {})}
        return httpx.post(f"{srv.url}/v1/t", content=body, headers=headers)

    refused = post("https://evil.example.net")
    assert refused.status_code == 403
    _assert_cors(refused, "https://evil.example.net")
    assert assert_error_shape(refused)["code"] == "origin_not_allowed"
    assert refused.json()["code"] == "origin_not_allowed"  # the top-level copy SDKs read
    for origin in ("https://shop.example.com", "https://a.b.example.org", None):
        assert post(origin).status_code == 200, origin
    assert post("https://example.org").status_code == 403
    settings = httpx.get(f"{srv.url}/v1/projects/{key}/settings",
                         headers={"Origin": "https://evil.example.net"})
    assert settings.status_code == 403


def test_allowed_origins_are_validated_and_resettable(ctx) -> None:
    srv, _, _ = ctx
    with srv.admin as admin:
        for bad in (["example.com"], ["https://example.com/path"], ["ftp://x.com"],
                    ["https://*"], "https://x.com"):
            r = admin.post("/api/sources", json={"name": f"o-{uuid.uuid4().hex[:6]}",
                                                 "allowed_origins": bad})
            assert r.status_code == 400, (bad, r.text)
            # the field names the entry at fault
            field = "allowed_origins" if isinstance(bad, str) else "allowed_origins[0]"
            assert r.json()["error"]["field"] == field, r.text
        created = admin.post("/api/sources", json={
            "name": f"o-{uuid.uuid4().hex[:6]}",
            "allowed_origins": ["HTTPS://Shop.Example.com:443/"]}).json()
        assert created["allowed_origins"] == ["https://shop.example.com"]
        reset = admin.patch(f"/api/sources/{created['id']}", json={"allowed_origins": None})
        assert reset.json()["allowed_origins"] is None


def test_admin_api_sends_no_cors_headers(ctx) -> None:
    srv, _, _ = ctx
    r = httpx.get(f"{srv.url}/api/sources", headers={
        "Origin": ORIGIN, "Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200
    assert not any(k.lower().startswith("access-control-") for k in r.headers)
    r = httpx.options(f"{srv.url}/api/sources", headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    assert not any(k.lower().startswith("access-control-") for k in r.headers)


def test_server_side_traffic_gets_no_cors_headers(ctx) -> None:
    srv, source, _ = ctx
    r = httpx.post(f"{srv.url}/v1/track", json={"userId": "u", "event": "E"},
                   auth=(source["write_key"], ""))
    assert r.status_code == 200
    assert not any(k.lower().startswith("access-control-") for k in r.headers)


def test_settings_address_from_public_url_or_trusted_proxy(server_factory) -> None:
    public = server_factory("public", args=["--public-url", "https://events.example.com/mp/"])
    key = public.create_source("web")["write_key"]
    body = httpx.get(f"{public.url}/v1/projects/{key}/settings").json()
    assert body["integrations"]["Segment.io"]["apiHost"] == "events.example.com/mp/v1"
    assert body["integrations"]["Segment.io"]["protocol"] == "https"

    forwarded = {"X-Forwarded-Host": "collector.example.com", "X-Forwarded-Proto": "https"}
    proxied = server_factory("proxied", args=["--trust-proxy"])
    key = proxied.create_source("web")["write_key"]
    body = httpx.get(f"{proxied.url}/v1/projects/{key}/settings", headers=forwarded).json()
    assert body["integrations"]["Segment.io"] == {
        "apiKey": key, "apiHost": "collector.example.com/v1", "protocol": "https"}

    plain = server_factory("plain")
    key = plain.create_source("web")["write_key"]
    body = httpx.get(f"{plain.url}/v1/projects/{key}/settings", headers=forwarded).json()
    assert body["integrations"]["Segment.io"]["apiHost"] == f"127.0.0.1:{plain.port}/v1"


def test_a_bad_public_url_is_one_line_and_exit_2(tmp_path) -> None:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "millpond.cli.main", "serve", "--data",
                           str(tmp_path / "d"), "--public-url", "events.example.com"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: public_url: expected an http(s)://host[:port][/path] URL without query, "
        "fragment or credentials; got events.example.com from flag --public-url; "
        "e.g. --public-url https://events.example.com"]
