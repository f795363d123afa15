"""Zerogate proto."""
