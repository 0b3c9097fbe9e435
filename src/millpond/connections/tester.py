"""The event tester: what a destination would do with one event, without sending.

It runs the pump's own :class:`~millpond.delivery.evaluate.Evaluator` and the type's own
``build_request``, so the answer is exactly what delivery would do — trigger verdict,
skip or dead-letter reason, the mapped payload, and the request (method, URL, headers,
body) — except that secrets are masked wherever they appear: in headers known to carry
credentials, and by value in the URL, headers and body (Amplitude puts its API key in
the body, Mixpanel its token in each record).
"""

from __future__ import annotations

import contextlib
import json
import re
from typing import Any

from millpond.connections.config import Runtime
from millpond.delivery.evaluate import Evaluator, no_action_reason
from millpond.destinations.base import Item, OutboundRequest
from millpond.destinations.settings import mask_secret

_SENSITIVE_HEADER = re.compile(r"auth|token|key|secret|cookie|signature", re.IGNORECASE)


def secret_values(rt: Runtime, settings: dict) -> list[str]:
    """Every secret string in ``settings``: the type's secret fields and credential-like
    header values; longest first so a secret containing another is masked whole."""
    values = [settings.get(name) for name in type(rt.dtype).secret_fields]
    headers = settings.get("headers")
    if isinstance(headers, dict):
        values += [v for k, v in headers.items() if _SENSITIVE_HEADER.search(str(k))]
    return sorted({v for v in values if isinstance(v, str) and len(v) >= 4}, key=len,
                  reverse=True)


def _mask_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, str(mask_secret(secret)))
    return text


def describe_request(request: OutboundRequest, secrets: list[str]) -> dict:
    """The request as JSON, secrets masked; a JSON body is shown decoded."""
    headers = {k: mask_secret(v) if _SENSITIVE_HEADER.search(k) else _mask_text(v, secrets)
               for k, v in request.headers.items()}
    text = _mask_text(request.body.decode("utf-8", errors="replace"), secrets)
    body: Any = text
    with contextlib.suppress(ValueError):
        body = json.loads(text)
    return {"method": request.method, "url": _mask_text(request.url, secrets),
            "headers": headers, "body": body, "item_count": request.item_count}


def try_event(rt: Runtime, settings: dict, event: dict) -> dict:
    """Per action: ``matched``, ``outcome`` (send / skipped / dead_lettered), ``reason``,
    ``payload`` and ``request``; plus the event-level outcome."""
    evaluator = Evaluator(rt.dtype, rt.actions)
    secrets = secret_values(rt, settings)
    results = evaluator.explain(event, rt.all_actions)
    for entry in results:
        entry["request"] = None
        if entry["outcome"] == "send":
            request = rt.dtype.build_request(entry["action"], [Item(entry["payload"], event)])
            entry["request"] = describe_request(request, secrets)
            entry["payload"] = json.loads(_mask_text(json.dumps(entry["payload"]), secrets))
    active = [e for e in results if e["enabled"] and e["matched"]]
    if not active:
        summary = {"outcome": "skipped", "reason": no_action_reason(event)}
    else:
        summary = {"outcome": "handled", "reason": None}
    return {**summary, "event": event, "actions": results}
