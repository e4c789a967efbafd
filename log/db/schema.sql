-- Log tables for SQLite / Turso (libSQL). Column order matches log/core/rows.py (the contract).
-- ids are assigned by the app (Snowflake, log/core/ids.py), so CSV and DB rows share ids; no AUTOINCREMENT.
-- user_id is TEXT (the seed had INTEGER): Supabase user ids are UUIDs.
-- route is not in the seed's table: the matched route's template (or "(unmatched)"), the last
-- column; a database made before it gets it at start (log/db/schema.py: ADDED_COLUMNS).
-- Idempotent: safe to run on every start.

CREATE TABLE IF NOT EXISTS api_logs (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    method TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    request_header TEXT,
    request_body TEXT,
    response_status INTEGER,
    response_body TEXT,
    duration_ms INTEGER,
    ip_address TEXT,
    user_id TEXT,
    created_at DATETIME DEFAULT (STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW')),
    route TEXT
);

CREATE INDEX IF NOT EXISTS idx_api_logs_trace_id ON api_logs (trace_id);
CREATE INDEX IF NOT EXISTS idx_api_logs_created_at ON api_logs (created_at);
CREATE INDEX IF NOT EXISTS idx_api_logs_status ON api_logs (response_status);

CREATE TABLE IF NOT EXISTS task_progress_logs (
    id INTEGER PRIMARY KEY,
    trace_id TEXT NOT NULL,
    task_name TEXT NOT NULL,
    step_name TEXT NOT NULL,
    status TEXT NOT NULL,
    input_data TEXT,
    output_data TEXT,
    error_message TEXT,
    stack_trace TEXT,
    execution_order INTEGER DEFAULT 0,
    created_at DATETIME DEFAULT (STRFTIME('%Y-%m-%d %H:%M:%f', 'NOW'))
);

CREATE INDEX IF NOT EXISTS idx_task_progress_trace_id ON task_progress_logs (trace_id);
CREATE INDEX IF NOT EXISTS idx_task_progress_created_at ON task_progress_logs (created_at);
