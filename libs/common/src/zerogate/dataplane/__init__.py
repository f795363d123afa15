"""Zerogate dataplane."""
