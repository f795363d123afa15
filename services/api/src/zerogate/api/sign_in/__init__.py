"""Sign-in through an account's OpenID provider (the api is the relying party)."""
