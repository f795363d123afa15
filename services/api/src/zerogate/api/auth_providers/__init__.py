"""An account's OpenID Connect identity providers."""
