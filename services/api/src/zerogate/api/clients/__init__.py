"""Clients of an account."""
