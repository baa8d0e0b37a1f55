-- +goose Up
-- The relay claims outbox rows with a lease instead of holding a transaction open across
-- the produce: during a Kafka outage an idle-in-transaction session would pin the vacuum
-- horizon of the whole cluster. A claimed row is the relay's until claimed_until; if the
-- relay dies, another takes it once the lease runs out.
ALTER TABLE outbox ADD COLUMN claimed_until timestamptz NOT NULL DEFAULT '-infinity';

-- +goose Down
ALTER TABLE outbox DROP COLUMN claimed_until;
