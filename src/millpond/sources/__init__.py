"""Sources: where data comes in, each with its own write key, kind and replayable flag."""
