"""Profiles: people (identities, traits, groups) built from identify, group and alias events.

Out-of-order and re-applied updates end in the same state; see :mod:`millpond.profiles.store`
for the rules and :mod:`millpond.profiles.timestamps` for what ``_timestamp`` may hold.
"""

from .store import ProfileStore
from .timestamps import parse_trait_timestamp

__all__ = ["ProfileStore", "parse_trait_timestamp"]
