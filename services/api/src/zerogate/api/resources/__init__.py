"""Resources of an account."""
