"""Policies of an account."""
