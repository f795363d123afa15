"""Zerogate api service."""
