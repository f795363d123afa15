"""Sites of an account."""
