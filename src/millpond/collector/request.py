"""Raw-ASGI plumbing for the collector: bounded body reading, gzip, JSON, auth, answers.

Why raw ASGI instead of the admin API's framework: the collector is the hot path
(tens of thousands of events a second on two cores), and a framework's routing,
dependency injection and model validation cost more than the work itself.
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

import msgspec
import qs_codec

from millpond.errors import BadRequest, MillpondError, TooLarge, Unauthorized

MAX_REQUEST_BYTES = 4 * 1024 * 1024
_JSON_TYPES = (b"application/json", b"text/plain", b"")
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class UnsupportedMediaType(MillpondError):
    status = 415
    code = "unsupported_media_type"


def header(scope: dict, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def read_body(scope: dict, receive, limit: int = MAX_REQUEST_BYTES) -> bytes:
    """The request body, decompressed, refusing anything over ``limit`` bytes either way."""
    length = header(scope, b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise TooLarge(f"request body is {int(length):,} bytes; the limit is 4 MiB")
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BadRequest("client disconnected before sending the whole body")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise TooLarge("request body is larger than the 4 MiB limit")
        chunks.append(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    encoding = (header(scope, b"content-encoding") or b"").strip().lower()
    if encoding in (b"gzip", b"x-gzip"):
        body = gunzip(body, limit)
    elif encoding not in (b"", b"identity"):
        raise BadRequest(f"unsupported Content-Encoding {encoding.decode(errors='replace')!r};"
                         " send gzip or nothing", field="Content-Encoding")
    return body


def gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid gzip: {exc}", field="Content-Encoding") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise TooLarge("decompressed body is larger than the 4 MiB limit")
    if not inflater.eof:
        raise BadRequest("gzip body is truncated", field="Content-Encoding")
    return out


FORM_TYPE = b"application/x-www-form-urlencoded"
#: How deep ``a[b][c]`` form keys nest and how many pairs a form may have (Rails' and
#: Node qs' defaults): far beyond any attribute set, well short of a parser's worst case.
_FORM = qs_codec.DecodeOptions(depth=5, strict_depth=True, parameter_limit=1000,
                               raise_on_limit_exceeded=True, list_limit=100)


def content_type(scope: dict) -> bytes:
    """The request's media type, lower-cased, without parameters (b"" when absent)."""
    return (header(scope, b"content-type") or b"").split(b";")[0].strip().lower()


def check_content_type(scope: dict, *, form: bool = False) -> None:
    """JSON (``text/plain`` and a missing type are read as JSON, as SDKs send them), or
    with ``form`` also an HTML form."""
    ctype = content_type(scope)
    if ctype in _JSON_TYPES or (form and ctype == FORM_TYPE):
        return
    wanted = "application/json or application/x-www-form-urlencoded" if form \
        else "application/json"
    raise UnsupportedMediaType(
        f"Content-Type must be {wanted}; got {ctype.decode(errors='replace')!r}",
        field="Content-Type")


def decode_form(body: bytes) -> dict[str, Any]:
    """An ``application/x-www-form-urlencoded`` body with Rails-style nested keys
    (``data[price]=23.45``, ``attributes[tags][]=a``, ``data[items][0][sku]=x``) as the
    JSON object it spells. Values stay text: a form cannot tell a number from a string.

    Why a library (qs-codec, a port of Node's ``qs``): the bracket syntax has many corner
    cases (arrays by index or ``[]``, conflicting keys, depth and size limits against
    abuse) that are easy to get subtly wrong by hand."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("form body is not valid UTF-8") from None
    try:
        data = qs_codec.decode(text, _FORM)
    except (IndexError, ValueError) as exc:
        raise BadRequest(f"form body is not valid: {exc}") from None
    return data


def decode_json(body: bytes) -> Any:
    if not body.strip():
        raise BadRequest("request body is empty; send a JSON object")
    try:
        return _decode(body)
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid UTF-8") from None
    except RecursionError:
        raise BadRequest("JSON is nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise BadRequest(f"JSON value out of range: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"body is not valid JSON: {exc}") from None


def credentials(scope: dict) -> tuple[str | None, str | None, str | None]:
    """(basic user, basic password, bearer token) from the Authorization header."""
    auth = header(scope, b"authorization")
    if not auth:
        return None, None, None
    scheme, _, value = auth.partition(b" ")
    scheme = scheme.lower()
    if scheme == b"basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
            user, _, password = decoded.partition(":")
        except (ValueError, UnicodeDecodeError):
            raise Unauthorized("Authorization header is not valid Basic credentials") from None
        return user, password, None
    if scheme == b"bearer":
        return None, None, value.strip().decode(errors="replace")
    raise Unauthorized("Authorization must be Basic (write key as user name) or Bearer")


async def send_json(send, status: int, payload: Any, headers: list | None = None) -> None:
    body = _encode(payload)
    all_headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode())]
    if headers:
        all_headers.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


def error_body(code: str, message: str, field: str | None = None, **extra: Any) -> dict:
    """The error shape, plus top-level ``code``/``message`` copies for the SDKs.

    The RudderStack and Customer.io Python SDKs read ``payload['code']`` and
    ``payload['message']`` from a non-200 answer; without them they fail with a KeyError,
    take a permanent 4xx for a network error and retry it for minutes.
    """
    error: dict = {"code": code, "message": message}
    if field:
        error["field"] = field
    return {"error": error, "code": code, "message": message, **extra}


async def send_error(send, exc: MillpondError) -> None:
    headers = []
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers.append((b"retry-after", str(max(1, round(retry_after))).encode()))
    await send_json(send, exc.status, error_body(exc.code, exc.message, exc.field), headers)
