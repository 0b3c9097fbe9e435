"""The HTTP front door: Segment-compatible and classic Track API endpoints into the log."""
