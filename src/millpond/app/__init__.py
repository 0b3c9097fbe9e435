"""The millpond application as a whole: its configuration, and how it is put together.

:mod:`.config` declares every setting of ``millpond serve`` (types, defaults,
descriptions); :mod:`.loading` builds one from defaults, ``millpond.toml``, the
environment and flags; :mod:`.render` shows it (``--print-config``, the docs table).
:mod:`.services` builds a server's parts from a :class:`ServerConfig` (each gets the
values it needs, so no other module reads the environment), :mod:`.lifecycle` starts
and stops their background work, and :mod:`.asgi` is the one ASGI app that serves them
and answers the lifespan; ``millpond.server`` runs that under uvicorn.
"""

from millpond.app.config import ConfigError, ServerConfig
from millpond.app.loading import Origin, Resolved, load_config, resolve

__all__ = ["ConfigError", "Origin", "Resolved", "ServerConfig", "load_config", "resolve"]
