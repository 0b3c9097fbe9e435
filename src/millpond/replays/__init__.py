"""Replays: plan a window, preview it, run it through a destination, report on it."""
