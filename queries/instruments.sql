-- name: ListInstruments :many
SELECT * FROM instruments ORDER BY id;

-- name: GetInstrument :one
SELECT * FROM instruments WHERE id = @id;

-- name: UpsertInstrument :one
INSERT INTO instruments (id, symbol, tick_size, lot_size, min_quantity, max_quantity, status)
VALUES (@id, @symbol, @tick_size, @lot_size, @min_quantity, @max_quantity, @status)
ON CONFLICT (id) DO UPDATE SET symbol = excluded.symbol, tick_size = excluded.tick_size,
    lot_size = excluded.lot_size, min_quantity = excluded.min_quantity,
    max_quantity = excluded.max_quantity, status = excluded.status
RETURNING *;
