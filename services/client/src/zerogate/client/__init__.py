"""Zerogate client service."""
