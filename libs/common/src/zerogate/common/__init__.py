"""Zerogate common."""
