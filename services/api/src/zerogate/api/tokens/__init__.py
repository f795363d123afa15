"""Tokens of an account."""
