-- Zerogate control plane, first schema.
--
-- Every table but accounts carries account_id, and references between
-- account-owned rows are composite foreign keys on (account_id, id): a row can
-- never point at another account's row, whatever the application does.
-- Tokens are stored only as HMAC-SHA256(salt, secret); see tokens/repository.py.

CREATE TABLE accounts (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9_-]{1,62}$'),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE actors (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type        text NOT NULL CHECK (type IN
                    ('account_user', 'account_admin_user', 'service_account', 'api_client')),
    name        text NOT NULL,
    email       text,
    disabled_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id)
);
CREATE UNIQUE INDEX actors_account_email ON actors (account_id, lower(email))
    WHERE email IS NOT NULL;
CREATE INDEX actors_page ON actors (account_id, created_at, id);

CREATE TABLE groups (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    -- 'everyone' holds every actor of the account implicitly (no membership rows).
    kind        text NOT NULL DEFAULT 'static' CHECK (kind IN ('static', 'everyone')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id),
    UNIQUE (account_id, name)
);
CREATE UNIQUE INDEX groups_one_everyone ON groups (account_id) WHERE kind = 'everyone';
CREATE INDEX groups_page ON groups (account_id, created_at, id);

CREATE TABLE memberships (
    account_id  uuid NOT NULL,
    group_id    uuid NOT NULL,
    actor_id    uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, actor_id),
    FOREIGN KEY (account_id, group_id) REFERENCES groups (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, actor_id) REFERENCES actors (account_id, id) ON DELETE CASCADE
);
-- Hot path: the groups of an actor (policy decisions).
CREATE INDEX memberships_by_actor ON memberships (actor_id, group_id);

CREATE TABLE sites (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id  uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id),
    UNIQUE (account_id, name)
);
CREATE INDEX sites_page ON sites (account_id, created_at, id);

-- Clients and gateways share one table so that their tunnel addresses are
-- unique in the account with two plain unique indexes.
CREATE TABLE devices (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id           uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type                 text NOT NULL CHECK (type IN ('client', 'gateway')),
    actor_id             uuid,
    site_id              uuid,
    external_id          text NOT NULL,
    name                 text NOT NULL,
    public_key           text NOT NULL,
    ipv4                 inet NOT NULL CHECK (family(ipv4) = 4 AND ipv4 << inet '100.64.0.0/11'),
    ipv6                 inet NOT NULL
                         CHECK (family(ipv6) = 6 AND ipv6 << inet 'fd00:2021:1111::/107'),
    verified_at          timestamptz,
    last_seen_at         timestamptz,
    last_seen_remote_ip  inet,
    last_seen_version    text,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((type = 'client' AND actor_id IS NOT NULL AND site_id IS NULL)
        OR (type = 'gateway' AND site_id IS NOT NULL AND actor_id IS NULL)),
    UNIQUE (account_id, id),
    FOREIGN KEY (account_id, actor_id) REFERENCES actors (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, site_id) REFERENCES sites (account_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX devices_ipv4 ON devices (account_id, ipv4);
CREATE UNIQUE INDEX devices_ipv6 ON devices (account_id, ipv6);
CREATE UNIQUE INDEX devices_client_external ON devices (account_id, actor_id, external_id)
    WHERE type = 'client';
CREATE UNIQUE INDEX devices_gateway_external ON devices (site_id, external_id)
    WHERE type = 'gateway';
CREATE INDEX devices_page ON devices (account_id, type, created_at, id);

CREATE TABLE resources (
    id                   uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id           uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    site_id              uuid NOT NULL,
    type                 text NOT NULL CHECK (type IN ('cidr', 'ip', 'dns', 'internet')),
    address              text,
    address_description  text,
    name                 text NOT NULL,
    filters              jsonb NOT NULL DEFAULT '[]'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((type = 'internet') = (address IS NULL)),
    UNIQUE (account_id, id),
    FOREIGN KEY (account_id, site_id) REFERENCES sites (account_id, id)
);
CREATE UNIQUE INDEX resources_one_internet ON resources (account_id) WHERE type = 'internet';
CREATE INDEX resources_page ON resources (account_id, created_at, id);
CREATE INDEX resources_by_site ON resources (site_id);

CREATE TABLE policies (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id   uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    group_id     uuid NOT NULL,
    resource_id  uuid NOT NULL,
    description  text,
    conditions   jsonb NOT NULL DEFAULT '[]'::jsonb,
    disabled_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (account_id, id),
    UNIQUE (group_id, resource_id),
    FOREIGN KEY (account_id, group_id) REFERENCES groups (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, resource_id) REFERENCES resources (account_id, id) ON DELETE CASCADE
);
-- Hot path: the policies of a resource (policy decisions).
CREATE INDEX policies_by_resource ON policies (resource_id, group_id);
CREATE INDEX policies_page ON policies (account_id, created_at, id);

CREATE TABLE tokens (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    account_id     uuid NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    type           text NOT NULL CHECK (type IN ('api', 'client', 'gateway')),
    actor_id       uuid,
    site_id        uuid,
    name           text,
    secret_salt    bytea NOT NULL,
    secret_hash    bytea NOT NULL,
    expires_at     timestamptz,
    revoked_at     timestamptz,
    created_by     uuid,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CHECK ((type = 'gateway' AND site_id IS NOT NULL AND actor_id IS NULL)
        OR (type <> 'gateway' AND actor_id IS NOT NULL AND site_id IS NULL)),
    UNIQUE (account_id, id),
    FOREIGN KEY (account_id, actor_id) REFERENCES actors (account_id, id) ON DELETE CASCADE,
    FOREIGN KEY (account_id, site_id) REFERENCES sites (account_id, id) ON DELETE CASCADE
);
CREATE INDEX tokens_page ON tokens (account_id, created_at, id) WHERE revoked_at IS NULL;
CREATE INDEX tokens_by_actor ON tokens (actor_id) WHERE actor_id IS NOT NULL;
CREATE INDEX tokens_by_site ON tokens (site_id) WHERE site_id IS NOT NULL;
