"""Retention: how long a source's events are kept (``policy``) and the background job
that removes the expired ones (``expiry``); how long the events behind delivery counts
stay listed (``outcomes``)."""
