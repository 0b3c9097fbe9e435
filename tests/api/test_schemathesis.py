"""The admin API against its own OpenAPI document, with schemathesis, on a live server.

For every operation schemathesis generates requests from the document (a bounded number
per operation, deterministic, so a failure reproduces) and checks each answer: no 5xx,
no status code the document does not list for that operation, no schema-valid request
refused with a 400, and no answer that violates its documented schema. The server has a
source, a destination and stored events, so the generated requests reach real answers,
not only 404s.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import httpx
import hypothesis
import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.delivery import create_destination, send_batch
from tests.support.server import ADMIN_TOKEN, ServerProcess

pytestmark = pytest.mark.slow

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

#: The only schema-valid requests that may still be refused with a 400: values checked
#: beyond what JSON Schema can say (a trigger or filter is FQL that must compile, a
#: mapping must produce the action's required fields, a vendor's settings go together, a
#: replay's window must hold events and its rate stay under the destination's, an
#: uploaded file must parse). Each is keyed by operation and matched on the error's
#: `field`, so any other 400 for a schema-valid request still fails the run.
_DESTINATION = (r"settings\.\w+|actions\[\d+\]\.(trigger|mapping|max_event_age|name)"
                r"|rate_limit\.max_retry_age")  # a duration's range, written as text
SEMANTIC = {
    ("POST", "/api/destinations"): _DESTINATION,
    ("PATCH", "/api/destinations/{ref}"): _DESTINATION,
    ("POST", "/api/destinations/{ref}/test"): r"event",
    ("POST", "/api/replays"): r"filter|from|to|rate|sources",
    ("POST", "/api/imports"): r"",
    # a retention is "forever" or a duration with units, of at least an hour
    ("POST", "/api/sources"): r"retention",
    ("PATCH", "/api/sources/{ref}"): r"retention",
    # a definition's conditions (ops, FQL `where`, durations, references) are checked by
    # millpond.segments.definition, which names the condition at fault
    ("POST", "/api/segments"): r"definition(\..*|\[.*)?",
    ("PATCH", "/api/segments/{ref}"): r"definition(\..*|\[.*)?",
    ("POST", "/api/segments/preview"): r"definition(\..*|\[.*)?",
    # at least one id, in either list (JSON Schema here cannot say "one of the two")
    ("POST", "/api/regulations"): r"user_ids",
}


def accepts_schema_valid_data(ctx, response, case):
    """schemathesis's positive_data_acceptance, less the refusals listed in SEMANTIC."""
    allowed = SEMANTIC.get((case.method.upper(), case.operation.path))
    if allowed is not None and response.status_code == 400:
        field = response.json()["error"].get("field") or ""
        if re.fullmatch(allowed, field):
            return None
    return positive_data_acceptance(ctx, response, case)


CHECKS = {
    GenerationMode.POSITIVE: [not_a_server_error, status_code_conformance,
                              response_schema_conformance, accepts_schema_valid_data],
    # Requests that break the document: refused with a documented status, never a 5xx.
    GenerationMode.NEGATIVE: [not_a_server_error, status_code_conformance,
                              response_schema_conformance],
}
#: Examples per operation: about a minute for the whole API on a shared machine.
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path_factory.mktemp("schemathesis") / "data").start()
    try:
        source = server.create_source("web")
        send_batch(server.url, source["write_key"], [
            {"type": "track", "userId": f"u{i}", "event": "Order Completed",
             "messageId": f"m{i}", "timestamp": "2024-05-01T00:00:00Z"} for i in range(5)])
        with httpx.Client(base_url=server.url, headers=AUTH, timeout=30) as admin:
            create_destination(admin, name="hook", type="webhook",
                               settings={"url": "http://127.0.0.1:9/hook"})
        yield server
    finally:
        server.stop()


def run_operation(operation, url: str, mode: GenerationMode) -> list[str]:
    """Up to MAX_EXAMPLES generated requests to ``operation``; the failures, as text."""
    failures: list[str] = []

    @hypothesis.settings(max_examples=MAX_EXAMPLES, derandomize=True, database=None,
                         deadline=None, suppress_health_check=list(hypothesis.HealthCheck),
                         phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate])
    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        if case.operation.path == "/api/events" and "wait" in (case.query or {}):
            # A long poll that finds nothing waits up to `wait` seconds by design; the
            # answer is the same after 0.05 s, and the run stays bounded.
            with contextlib.suppress(TypeError, ValueError):  # not a number: refused anyway
                case.query["wait"] = min(float(case.query["wait"]), 0.05)
        try:
            case.call_and_validate(base_url=url, headers=AUTH, checks=CHECKS[mode])
        except BaseExceptionGroup as exc:  # schemathesis: one group of every failed check
            if len(failures) < 2:
                failures.append(f"{mode.value} {operation.label}: {str(exc)[:1500]}")

    run()
    return failures


def test_admin_api_keeps_to_its_openapi_document(live_server: ServerProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30  # every admin route is in the document
    failures = [f for mode in CHECKS for op in operations
                for f in run_operation(op, live_server.url, mode)]
    assert not failures, "\n\n".join(failures)
