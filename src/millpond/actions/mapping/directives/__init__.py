"""Every mapping-kit directive, one module per kind; importing the package registers them all.

- :mod:`.values`: ``@path`` ``@template`` ``@literal`` ``@if`` ``@case`` ``@replace``
  ``@arrayPath`` ``@excludeWhenNull`` (a value from the event);
- :mod:`.structural`: ``@merge`` ``@transform`` ``@flatten`` ``@json`` (reshaping objects);
- :mod:`.liquid`: ``@liquid`` (Shopify Liquid templates, sandboxed);
- :mod:`.template`: the ``{{path}}`` renderer behind ``@template``.

Each directive registers itself with :func:`millpond.actions.mapping.compiler.directive`
where it is defined, so adding one means adding a function, not editing a table.
"""

from __future__ import annotations

from . import liquid, structural, values  # noqa: F401 - registration is the import

__all__: list[str] = []
