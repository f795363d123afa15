"""What the agents' connections need from the database (the bus side of the api)."""
