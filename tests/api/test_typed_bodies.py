"""The admin API's typed bodies and its OpenAPI document (issue 12, item 5).

Bodies are msgspec types decoded by the shared converter; the document is generated from
the same types, so it has a real schema for every body and answer, every error status a
route can answer, and the admin token as a bearer scheme.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_a_body_that_is_not_json_is_415_and_bad_json_is_400(shared_server):
    with shared_server.admin as admin:
        r = admin.post("/api/sources", content=b"name=web",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415, r.text
        assert r.json()["error"]["code"] == "unsupported_media_type"
        r = admin.post("/api/sources", content=b'{"name": ',
                       headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and "not valid JSON" in r.json()["error"]["message"]
        assert all(s["name"] != "web" for s in admin.get("/api/sources").json()["sources"])


def test_a_misspelt_field_is_named_with_a_suggestion(shared_server):
    with shared_server.admin as admin:
        r = admin.post("/api/sources", json={"name": "typo-src", "replayabel": True})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["field"] == "replayabel"
    assert "did you mean `replayable`?" in error["message"]


def test_a_wrong_type_names_the_field_the_value_and_what_fits(shared_server):
    with shared_server.admin as admin:
        r = admin.post("/api/sources", json={"name": "kind-src", "kind": "webhook"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["field"] == "kind"
    assert error["message"] == ('field `kind`: expected one of "pipelines", "track", '
                                '"import"; got "webhook"; e.g. "kind": "pipelines"')


def test_an_integral_decimal_is_an_integer(shared_server):
    """JSON Schema counts 2.0 as an integer, so the API must accept it where one is due."""
    shared_server.create_source("dec-src")
    with shared_server.admin as admin:
        r = admin.post("/api/destinations", json={
            "name": "dec-hook", "type": "webhook",
            "settings": {"url": "http://127.0.0.1:9/h"}})
        assert r.status_code == 201, r.text
        r = admin.post("/api/destinations/dec-hook/test", json={"seq": 2.0})
        # read as seq 2 (no such event here), not refused as a non-integer
        assert r.status_code == 404 and r.json()["error"]["field"] == "seq", r.text
        r = admin.post("/api/destinations/dec-hook/test", json={"seq": 2.5})
        assert r.status_code == 400 and r.json()["error"]["field"] == "seq"


def test_the_document_types_every_body_and_answer_and_documents_errors(shared_server):
    import httpx

    document = httpx.get(f"{shared_server.url}/api/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["adminToken"] == {"type": "http", "scheme": "bearer",
                                     "description": schemes["adminToken"]["description"]}
    schemas = document["components"]["schemas"]
    operations = [(path, method, op) for path, item in document["paths"].items()
                  for method, op in item.items()]
    assert len(operations) >= 32
    for path, method, op in operations:
        where = f"{method.upper()} {path}"
        assert op["security"] == [{"adminToken": []}], where
        ok = [code for code in op["responses"] if code.startswith("2")]
        assert ok, where
        for code in ok:
            content = op["responses"][code]["content"]
            ref = next(iter(content.values()))["schema"]["$ref"]
            assert ref.rsplit("/", 1)[-1] in schemas, where
        for code in ("400", "401"):
            error = op["responses"][code]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ErrorBody"}, where
        if "{" in path:
            assert "404" in op["responses"], where
        if method in ("post", "patch") and "requestBody" in op:
            body = op["requestBody"]["content"]
            assert "application/json" in body or "text/csv" in body, where
    bodies = {op["operationId"]: op["requestBody"]["content"]["application/json"]["schema"]
              for _, _, op in operations
              if "application/json" in op.get("requestBody", {}).get("content", {})}
    assert len(bodies) >= 7  # sources x2, destinations x3, redrive, replays
    variants = schemas["DestinationCreate"]["oneOf"]
    assert {"$ref": "#/components/schemas/DestinationCreate_webhook"} in variants
    assert schemas["DestinationCreate_webhook"]["properties"]["settings"] == {
        "$ref": "#/components/schemas/WebhookSettings"}
