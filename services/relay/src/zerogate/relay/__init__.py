"""Zerogate relay service."""
