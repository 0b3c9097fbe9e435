"""The admin API: JSON under ``/api/``, bearer-token auth, OpenAPI at ``/api/openapi.json``."""
