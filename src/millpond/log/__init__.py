"""The append-only event log: the one place every event is kept, in arrival order."""
