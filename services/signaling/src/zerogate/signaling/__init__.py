"""Zerogate signaling service."""
