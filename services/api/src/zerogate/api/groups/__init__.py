"""Groups of an account."""
