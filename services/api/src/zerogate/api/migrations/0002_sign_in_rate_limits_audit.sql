-- Issue 12: OpenID Connect sign-in, rate limits, the audit log.

-- An account's OpenID providers. The client secret is stored only encrypted
-- (AES-256-GCM under ZG_SECRET_KEY, the provider id as associated data; see
-- auth_providers/secrets.py) and is never returned.
CREATE TABLE auth_providers (
    id                           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id                   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name                         text NOT NULL,
    issuer                       text NOT NULL,
    client_id                    text NOT NULL,
    client_secret_sealed         bytea,
    scopes                       text[] NOT NULL DEFAULT ARRAY['openid', 'email', 'profile'],
    email_claim                  text NOT NULL DEFAULT 'email',
    client_session_lifetime_secs integer NOT NULL DEFAULT 604800
                                 CHECK (client_session_lifetime_secs > 0),
    admin_session_lifetime_secs  integer NOT NULL DEFAULT 28800
                                 CHECK (admin_session_lifetime_secs > 0),
    allow_jit_users              boolean NOT NULL DEFAULT false,
    created_at                   timestamptz NOT NULL DEFAULT now(),
    updated_at                   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id),
    UNIQUE (account_id, name)
);
CREATE INDEX auth_providers_page ON auth_providers (account_id, created_at, id);

-- The session a token was signed in with; deleting the provider revokes its
-- tokens first (auth_providers/service.py), then this forgets the link.
ALTER TABLE tokens ADD COLUMN auth_provider_id uuid;
ALTER TABLE tokens ADD FOREIGN KEY (account_id, auth_provider_id)
    REFERENCES auth_providers (account_id, id) ON DELETE SET NULL (auth_provider_id);
CREATE INDEX tokens_by_auth_provider ON tokens (auth_provider_id)
    WHERE auth_provider_id IS NOT NULL;

-- A sign-in under way, between the redirect to the provider and its callback.
-- Found by SHA-256 of its state (32 random bytes), used once, short-lived.
CREATE TABLE sign_in_requests (
    state_hash             bytea PRIMARY KEY,
    account_id             uuid NOT NULL,
    auth_provider_id       uuid NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('client', 'admin')),
    nonce                  text NOT NULL,
    -- our PKCE verifier toward the provider (RFC 7636)
    provider_verifier      text NOT NULL,
    -- the client's loopback redirect (RFC 8252), its PKCE challenge and state
    redirect_uri           text NOT NULL,
    client_code_challenge  text NOT NULL,
    client_state           text,
    expires_at             timestamptz NOT NULL,
    created_at             timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (account_id, auth_provider_id)
        REFERENCES auth_providers (account_id, id) ON DELETE CASCADE
);
CREATE INDEX sign_in_requests_expiry ON sign_in_requests (expires_at);

-- The one-time code the client exchanges, with its PKCE verifier, for a token.
-- Found by SHA-256 of the code; kept after use (used_at) so that a replay is
-- recognised and revokes the token the first use issued (RFC 6749 §4.1.2).
CREATE TABLE sign_in_codes (
    code_hash              bytea PRIMARY KEY,
    account_id             uuid NOT NULL,
    auth_provider_id       uuid NOT NULL,
    actor_id               uuid NOT NULL,
    kind                   text NOT NULL CHECK (kind IN ('client', 'admin')),
    redirect_uri           text NOT NULL,
    client_code_challenge  text NOT NULL,
    expires_at             timestamptz NOT NULL,
    used_at                timestamptz,
    token_id               uuid,
    created_at             timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (account_id, auth_provider_id)
        REFERENCES auth_providers (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, actor_id) REFERENCES actors (account_id, id) ON DELETE CASCADE
);
CREATE INDEX sign_in_codes_expiry ON sign_in_codes (expires_at);

-- Token buckets of the rate limiter, shared by every api replica. UNLOGGED:
-- no WAL on the hot path; a crash forgets them, which only refills them.
CREATE UNLOGGED TABLE rate_buckets (
    key         text PRIMARY KEY,
    tokens      double precision NOT NULL,
    allowed     boolean NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX rate_buckets_age ON rate_buckets (updated_at);

-- Every change made through the REST API, written in the change's transaction.
-- No values are kept, only what was done to what: no secret can land here.
CREATE TABLE audit_log (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    actor_id     uuid,
    token_id     uuid,
    action       text NOT NULL,
    method       text NOT NULL,
    route        text NOT NULL,
    target_ids   jsonb NOT NULL DEFAULT '{}'::jsonb,
    remote_ip    inet,
    request_id   text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_page ON audit_log (account_id, created_at, id);
