"""Zerogate gateway service."""
