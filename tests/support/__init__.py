"""Plain helpers shared by test packages: no fixtures here, only things to import.

- :mod:`.server`: :class:`~.server.ServerProcess`, a real ``millpond serve`` subprocess;
- :mod:`.cli`: run the ``millpond`` command against one (``millpond``, ``ok``, ``fails``,
  ``invoke``);
- :mod:`.delivery`: SDK-shaped traffic and destination helpers for end-to-end tests;
- :mod:`.errors`: ``assert_error_shape``, the ``{"error": {...}}`` contract;
- :mod:`.wait`: ``wait_until``.

The fixtures built on them (``server``, ``server_factory``, ``shared_server``, ``admin``,
``vendor``) are in ``tests/conftest.py``, so every test package gets them without imports.
"""
