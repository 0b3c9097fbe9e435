"""Dependencies shared by every admin-API router: the admin token and the server object."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from fastapi import Request

from millpond.errors import Unauthorized

if TYPE_CHECKING:
    from millpond.server import Millpond


def require_admin(request: Request) -> None:
    """Admin token as ``Authorization: Bearer``; write keys are never admin credentials."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("admin API needs 'Authorization: Bearer <admin token>'")
    expected = request.app.state.millpond.admin_token
    if not secrets.compare_digest(token.strip().encode(), expected.encode()):
        raise Unauthorized("invalid admin token")


def server(request: Request) -> Millpond:
    return request.app.state.millpond
