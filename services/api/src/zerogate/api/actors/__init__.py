"""Actors of an account."""
