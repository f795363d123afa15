"""DNS: name patterns shared by the api and the client, wire helpers, proxy addresses."""
