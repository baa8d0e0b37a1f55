-- +goose Up
-- API keys. The key itself is shown once, when created, and never stored: only the
-- SHA-256 of its secret part is (a random 256-bit secret needs no slow hash: there is
-- nothing to guess from it). id is the key's public part, in the key after its prefix,
-- so a key is looked up by id and its secret compared in constant time.
CREATE TABLE api_keys (
    id           text PRIMARY KEY,
    user_id      bigint NOT NULL CHECK (user_id > 0),
    name         text NOT NULL DEFAULT '',
    scopes       text[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'trade', 'admin']),
    secret_hash  bytea NOT NULL CHECK (length(secret_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX api_keys_user_idx ON api_keys (user_id, created_at);

-- +goose Down
DROP TABLE api_keys;
