-- +goose Up
-- A NOTIFY inside a transaction holds a database-wide lock from its commit's start to its
-- end, WAL flush included, so every order placed in a transaction that notified waited
-- for the commit (and fsync) of the one before it: placing orders was capped near one
-- per fsync (~800/s here) however many connections the API had. The API now commits the
-- order without notifying and wakes the relay afterwards with one NOTIFY for however
-- many orders committed meanwhile (kafka.OutboxWaker). A wake-up lost to a crash between
-- the two costs latency, not messages: the relay also sweeps the outbox periodically.
DROP TRIGGER outbox_notify ON outbox;
DROP FUNCTION outbox_notify();

-- +goose Down
-- +goose StatementBegin
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox', '');
    RETURN NULL;
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
