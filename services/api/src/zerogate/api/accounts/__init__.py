"""Accounts of an account."""
