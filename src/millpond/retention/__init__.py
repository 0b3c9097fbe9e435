"""Per-source retention: how long a source's events are kept (``policy``) and the
background job that removes the expired ones (``expiry``)."""
