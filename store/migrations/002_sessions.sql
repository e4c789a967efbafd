-- Server-side sessions for the embedded default. The signed cookie carries a random session id;
-- only its SHA-256 is stored, so a copy of the database cannot be turned into cookies. Deleting
-- a row ends that session at once (POST /logout), deleting a user's rows ends all of them
-- ("Log out of all devices"). Cookies from before this migration carry no id: signed out.
CREATE TABLE sessions (
    id_hash BLOB PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    expires_at INTEGER NOT NULL,  -- unix seconds: created + SESSION_MAX_AGE
    created_at TEXT NOT NULL DEFAULT (STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW'))
) WITHOUT ROWID;

CREATE INDEX idx_sessions_user_id ON sessions(user_id);
CREATE INDEX idx_sessions_expires_at ON sessions(expires_at);
