-- name: InsertAPIKey :one
INSERT INTO api_keys (id, user_id, name, scopes, secret_hash)
VALUES (@id, @user_id, @name, @scopes::text[], @secret_hash)
RETURNING *;

-- name: GetAPIKey :one
SELECT * FROM api_keys WHERE id = @id;

-- name: ListAPIKeys :many
-- A user's keys (all keys when @user_id is NULL), oldest first.
SELECT * FROM api_keys
WHERE sqlc.narg(user_id)::bigint IS NULL OR user_id = sqlc.narg(user_id)
ORDER BY created_at, id;

-- name: RevokeAPIKey :one
-- Revokes a key; a key already revoked keeps its first revocation time.
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = @id
RETURNING *;

-- name: TouchAPIKey :exec
-- Records a use of the key, at most once a minute, so that authenticating is not a
-- write per request.
UPDATE api_keys SET last_used_at = now()
WHERE id = @id AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute');
