"""Regulations: suppressing and deleting a person everywhere millpond keeps or sends data.

- ``blocklist.py``: who is screened now (the collector, imports and every delivery ask it);
- ``service.py``: accepting a regulation, resolving it to whole profiles, listing;
- ``job.py``: a deletion as a durable job, store by store, resumed after a restart;
- ``forward.py``: asking each destination to delete too (vendor APIs, warehouse rows).
"""
