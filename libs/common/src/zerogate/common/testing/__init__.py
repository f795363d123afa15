"""Helpers for Zerogate's own tests and benchmarks (never imported by services)."""
