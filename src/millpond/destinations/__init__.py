"""The destination catalog: one module per integration, one interface, a registry.

Importing this package registers every built-in type:
`get_type("mixpanel")`, `all_types()`, `catalog()`.
"""

# Built-in types register themselves on import (catalog order = import order).
from millpond.destinations import (  # noqa: F401
    amplitude,
    customerio,
    mixpanel,
    posthog,
    segment,
    webhook,
)
from millpond.destinations.base import (
    BatchLimits,
    DestinationType,
    Item,
    OutboundRequest,
    Outcome,
    Partial,
    RateLimit,
    Reject,
    Retry,
    Sent,
    estimate_size,
)
from millpond.destinations.errors import DestinationError, SettingsError, UnknownDestinationType
from millpond.destinations.registry import all_types, catalog, get_type, register

__all__ = [
    "BatchLimits",
    "DestinationError",
    "DestinationType",
    "Item",
    "OutboundRequest",
    "Outcome",
    "Partial",
    "RateLimit",
    "Reject",
    "Retry",
    "Sent",
    "SettingsError",
    "UnknownDestinationType",
    "all_types",
    "catalog",
    "estimate_size",
    "get_type",
    "register",
]

# Last (catalog order, and they import millpond.warehouses, which imports the modules above):
# the warehouse and storage types.
from millpond.destinations import loaders  # noqa: E402, F401
