"""The millpond application as a whole: its configuration, and how it is put together.

:mod:`.config` declares every setting of ``millpond serve`` (types, defaults,
descriptions); :mod:`.loading` builds one from defaults, ``millpond.toml``, the
environment and flags; :mod:`.render` shows it (``--print-config``, the docs table).
The composition root (``millpond.server``) takes a :class:`ServerConfig` and hands
each part the values it needs, so no other module reads the environment.
"""

from millpond.app.config import ConfigError, ServerConfig
from millpond.app.loading import Origin, Resolved, load_config, resolve

__all__ = ["ConfigError", "Origin", "Resolved", "ServerConfig", "load_config", "resolve"]
