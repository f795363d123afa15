"""Sign-in schemas: what a client (the CLI) sends and gets back."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: RFC 7636 §4.1: a verifier is 43-128 characters of [A-Z a-z 0-9 - . _ ~].
CodeVerifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._~-]{43,128}$")]
#: RFC 7636 §4.2: an S256 challenge is BASE64URL(SHA256(verifier)), 43 characters.
CodeChallenge = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{43}$")]
#: Our one-time codes: 32 random bytes, URL-safe base64 (43 characters).
OneTimeCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{20,128}$")]
#: The client's own state, echoed back to its loopback redirect.
ClientState = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7E]{1,512}$")]
MAX_REDIRECT_URI: Final = 2048
SignInKind = Literal["client", "admin"]


class SignInStarted(BaseModel):
    """``GET /v1/sign_in/{account_slug}`` with ``Accept: application/json``."""

    authorization_url: str = Field(description="Open this in the user's browser.")
    expires_at: datetime = Field(description="The sign-in must come back before this.")


class SignInTokenRequest(BaseModel):
    """``POST /v1/sign_in/token``: the one-time code, with the PKCE verifier of the
    ``code_challenge`` the sign-in was started with and the same ``redirect_uri``."""

    model_config = ConfigDict(extra="forbid")

    code: OneTimeCode
    code_verifier: CodeVerifier
    redirect_uri: Annotated[str, StringConstraints(min_length=1, max_length=MAX_REDIRECT_URI)]


class SignInTokenCreated(BaseModel):
    token: str = Field(
        description="Shown only in this response. Bearer for the api (admin) "
        "or for signaling (client); revoke with DELETE /v1/sign_in/token."
    )
    token_id: uuid.UUID
    type: Literal["client", "api"] = Field(
        description="client for kind=client, api for an admin session (kind=admin)"
    )
    kind: SignInKind
    expires_at: datetime = Field(description="Now plus the provider's session lifetime.")
    account_id: uuid.UUID
    actor_id: uuid.UUID
    auth_provider_id: uuid.UUID
