"""Which relays the registry would hand an agent (a diagnostic for admins)."""
