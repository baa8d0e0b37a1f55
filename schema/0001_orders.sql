-- +goose Up
CREATE TABLE instruments (
    id           bigint PRIMARY KEY,
    symbol       text    NOT NULL UNIQUE,
    tick_size    numeric NOT NULL CHECK (tick_size > 0),
    lot_size     bigint  NOT NULL DEFAULT 1 CHECK (lot_size > 0),
    min_quantity bigint  NOT NULL DEFAULT 1 CHECK (min_quantity > 0),
    max_quantity bigint  NOT NULL DEFAULT 1000000 CHECK (max_quantity >= min_quantity),
    status       text    NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'HALTED'))
);

-- A fresh install can trade at once, as the seed's web client expects.
INSERT INTO instruments (id, symbol, tick_size, lot_size, min_quantity, max_quantity) VALUES
    (101, 'INST101', 0.01, 1, 1, 1000000),
    (102, 'INST102', 0.01, 1, 1, 1000000),
    (103, 'INST103', 0.01, 1, 1, 1000000);

CREATE TABLE orders (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id            bigint  NOT NULL,
    -- No foreign key: an unknown instrument is a business rejection recorded on the
    -- order by the validation step, not an insert error.
    instrument_id      bigint  NOT NULL,
    side               text    NOT NULL CHECK (side IN ('BUY', 'SELL')),
    kind               text    NOT NULL CHECK (kind IN ('MARKET', 'LIMIT')),
    price              numeric CHECK (price > 0),
    quantity           bigint  NOT NULL CHECK (quantity > 0),
    remaining_quantity bigint  NOT NULL,
    status             text    NOT NULL CHECK (status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR',
                           'EXECUTING', 'PARTIALLY_FILLED', 'EXECUTED', 'REJECTED', 'CANCELLED',
                           'PARTIALLY_CANCELLED', 'FAILED')),
    time_in_force      text    NOT NULL CHECK (time_in_force IN ('GTC', 'IOC')),
    version            bigint  NOT NULL DEFAULT 0,
    idempotency_key    text    NOT NULL,
    request_hash       text    NOT NULL,
    reason             text    NOT NULL DEFAULT '',
    cancel_requested   boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_remaining_in_range CHECK (remaining_quantity BETWEEN 0 AND quantity),
    CONSTRAINT orders_price_iff_limit CHECK ((kind = 'MARKET') = (price IS NULL)),
    CONSTRAINT orders_market_is_ioc CHECK (kind = 'LIMIT' OR time_in_force = 'IOC'),
    CONSTRAINT orders_executed_means_filled CHECK (status <> 'EXECUTED' OR remaining_quantity = 0),
    CONSTRAINT orders_idempotency UNIQUE (user_id, idempotency_key)
);

CREATE INDEX orders_user_idx ON orders (user_id, id);
CREATE INDEX orders_status_idx ON orders (status, updated_at);
-- The book: resting orders of one instrument and side, in price-time priority.
CREATE INDEX orders_book_idx ON orders (instrument_id, side, price, id)
    WHERE status IN ('EXECUTING', 'PARTIALLY_FILLED') AND kind = 'LIMIT' AND remaining_quantity > 0;

CREATE TABLE order_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    bigint NOT NULL REFERENCES orders (id),
    seq         integer NOT NULL CHECK (seq > 0),
    event_type  text   NOT NULL,
    from_status text,
    to_status   text   NOT NULL,
    details     jsonb  NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT order_events_seq UNIQUE (order_id, seq)
);

-- +goose StatementBegin
CREATE FUNCTION order_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'order_events is append-only';
END;
$$;
-- +goose StatementEnd

CREATE TRIGGER order_events_append_only BEFORE UPDATE OR DELETE ON order_events
    FOR EACH ROW EXECUTE FUNCTION order_events_append_only();

CREATE TABLE trades (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instrument_id  bigint  NOT NULL REFERENCES instruments (id),
    buy_order_id   bigint  NOT NULL REFERENCES orders (id),
    sell_order_id  bigint  NOT NULL REFERENCES orders (id),
    -- Which side's order arrived and took liquidity; the other one was resting.
    aggressor_side text    NOT NULL CHECK (aggressor_side IN ('BUY', 'SELL')),
    price          numeric NOT NULL CHECK (price > 0),
    quantity       bigint  NOT NULL CHECK (quantity > 0),
    executed_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (buy_order_id <> sell_order_id)
);

CREATE INDEX trades_buy_idx ON trades (buy_order_id);
CREATE INDEX trades_sell_idx ON trades (sell_order_id);

CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    topic      text  NOT NULL,
    key        text  NOT NULL,
    payload    jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The relay sleeps on LISTEN outbox; every insert wakes it, within the same commit.
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

-- +goose Down
DROP TABLE outbox;
DROP FUNCTION outbox_notify();
DROP TABLE trades;
DROP TABLE order_events;
DROP FUNCTION order_events_append_only();
DROP TABLE orders;
DROP TABLE instruments;
