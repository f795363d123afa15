"""Zerogate client service. Not built yet: the package exists so the layout and the
installation are in place; its entry point arrives with the service."""
