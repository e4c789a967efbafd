-- Per-minute, per-hour and per-day rollups of api_logs, for the explorer's overview, kept by
-- each write batch (log/db/rollup_batch.sql) for the rows it actually inserted, so a replayed
-- batch (INSERT ... ON CONFLICT(id) DO NOTHING) never counts a row twice.
-- Apply after schema.sql, all statements in ONE transaction (the backfill below must see the
-- rollup tables empty or not at all). Rows deleted from api_logs (retention) stay counted:
-- rollups describe what happened. Statements are split with sqlite3.complete_statement
-- (log/db/schema.py split_statements); works on SQLite and Turso (libSQL).

-- The triggers that keep api_status_hour and api_latency_total (below) go first and come back
-- after every backfill, so no backfill is counted twice.
DROP TRIGGER IF EXISTS api_status_minute_counted;
DROP TRIGGER IF EXISTS api_status_minute_recounted;
DROP TRIGGER IF EXISTS api_status_minute_pruned;
DROP TRIGGER IF EXISTS api_latency_day_counted;
DROP TRIGGER IF EXISTS api_latency_day_recounted;
DROP TRIGGER IF EXISTS api_latency_day_pruned;

-- Requests per minute by status class (0 = no status): the overview's time series.
-- minute = unix time / 60.
CREATE TABLE IF NOT EXISTS api_status_minute (
    minute INTEGER NOT NULL,
    status_class INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (minute, status_class)
) WITHOUT ROWID;

-- Latency histogram per hour, route and status class. The `endpoint` key is the route template
-- (api_logs.route: "/items/{item_id:int}", "(unmatched)"), or the path without its query string
-- for rows with no template (rows logged before the route column, apps without a router).
-- Rows counted before the route column keep their path keys: old raw rows carry no template to
-- rebuild them from, so the overview shows them as they are, next to the template keys.
-- bucket: 0..15 = exact ms; then 8 buckets per power of two; -1 = no duration
-- (log/explorer/queries.py bucket_of / bucket_bounds; a test keeps this CASE identical to bucket_sql).
CREATE TABLE IF NOT EXISTS api_latency_hour (
    hour INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    status_class INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, endpoint, status_class, bucket)
) WITHOUT ROWID;

-- The same per day (day = unix time / 86400): long ranges read days, then hours at the edges.
CREATE TABLE IF NOT EXISTS api_latency_day (
    day INTEGER NOT NULL,
    endpoint TEXT NOT NULL,
    status_class INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (day, endpoint, status_class, bucket)
) WITHOUT ROWID;

-- Backfill rows that existed before the rollups (runs only while a rollup is still empty). The
-- emptiness test comes first: SQLite evaluates AND left to right per row, so on every later
-- start each row fails it before strftime runs (1M rows: 0.04 s instead of 0.8-2.2 s each).
INSERT INTO api_status_minute (minute, status_class, n)
SELECT CAST(strftime('%s', created_at) AS INTEGER) / 60, COALESCE(response_status / 100, 0), COUNT(*)
FROM api_logs
WHERE NOT EXISTS (SELECT 1 FROM api_status_minute)
  AND created_at IS NOT NULL AND strftime('%s', created_at) IS NOT NULL
GROUP BY 1, 2;

INSERT INTO api_latency_hour (hour, endpoint, status_class, bucket, n)
SELECT CAST(strftime('%s', created_at) AS INTEGER) / 3600, COALESCE(route, CASE WHEN instr(endpoint, '?') > 0 THEN substr(endpoint, 1, instr(endpoint, '?') - 1) ELSE endpoint END),
       COALESCE(response_status / 100, 0), CASE WHEN duration_ms IS NULL OR duration_ms < 0 THEN -1 WHEN duration_ms < 16 THEN duration_ms WHEN duration_ms < 32 THEN (duration_ms >> 1) + 8 WHEN duration_ms < 64 THEN (duration_ms >> 2) + 16 WHEN duration_ms < 128 THEN (duration_ms >> 3) + 24 WHEN duration_ms < 256 THEN (duration_ms >> 4) + 32 WHEN duration_ms < 512 THEN (duration_ms >> 5) + 40 WHEN duration_ms < 1024 THEN (duration_ms >> 6) + 48 WHEN duration_ms < 2048 THEN (duration_ms >> 7) + 56 WHEN duration_ms < 4096 THEN (duration_ms >> 8) + 64 WHEN duration_ms < 8192 THEN (duration_ms >> 9) + 72 WHEN duration_ms < 16384 THEN (duration_ms >> 10) + 80 WHEN duration_ms < 32768 THEN (duration_ms >> 11) + 88 WHEN duration_ms < 65536 THEN (duration_ms >> 12) + 96 WHEN duration_ms < 131072 THEN (duration_ms >> 13) + 104 WHEN duration_ms < 262144 THEN (duration_ms >> 14) + 112 WHEN duration_ms < 524288 THEN (duration_ms >> 15) + 120 WHEN duration_ms < 1048576 THEN (duration_ms >> 16) + 128 WHEN duration_ms < 2097152 THEN (duration_ms >> 17) + 136 WHEN duration_ms < 4194304 THEN (duration_ms >> 18) + 144 WHEN duration_ms < 8388608 THEN (duration_ms >> 19) + 152 WHEN duration_ms < 16777216 THEN (duration_ms >> 20) + 160 WHEN duration_ms < 33554432 THEN (duration_ms >> 21) + 168 WHEN duration_ms < 67108864 THEN (duration_ms >> 22) + 176 WHEN duration_ms < 134217728 THEN (duration_ms >> 23) + 184 WHEN duration_ms < 268435456 THEN (duration_ms >> 24) + 192 WHEN duration_ms < 536870912 THEN (duration_ms >> 25) + 200 WHEN duration_ms < 1073741824 THEN (duration_ms >> 26) + 208 WHEN duration_ms < 2147483648 THEN (duration_ms >> 27) + 216 WHEN duration_ms < 4294967296 THEN (duration_ms >> 28) + 224 ELSE 240 END, COUNT(*)
FROM api_logs
WHERE NOT EXISTS (SELECT 1 FROM api_latency_hour)
  AND created_at IS NOT NULL AND strftime('%s', created_at) IS NOT NULL
GROUP BY 1, 2, 3, 4;

INSERT INTO api_latency_day (day, endpoint, status_class, bucket, n)
SELECT CAST(strftime('%s', created_at) AS INTEGER) / 86400, COALESCE(route, CASE WHEN instr(endpoint, '?') > 0 THEN substr(endpoint, 1, instr(endpoint, '?') - 1) ELSE endpoint END),
       COALESCE(response_status / 100, 0), CASE WHEN duration_ms IS NULL OR duration_ms < 0 THEN -1 WHEN duration_ms < 16 THEN duration_ms WHEN duration_ms < 32 THEN (duration_ms >> 1) + 8 WHEN duration_ms < 64 THEN (duration_ms >> 2) + 16 WHEN duration_ms < 128 THEN (duration_ms >> 3) + 24 WHEN duration_ms < 256 THEN (duration_ms >> 4) + 32 WHEN duration_ms < 512 THEN (duration_ms >> 5) + 40 WHEN duration_ms < 1024 THEN (duration_ms >> 6) + 48 WHEN duration_ms < 2048 THEN (duration_ms >> 7) + 56 WHEN duration_ms < 4096 THEN (duration_ms >> 8) + 64 WHEN duration_ms < 8192 THEN (duration_ms >> 9) + 72 WHEN duration_ms < 16384 THEN (duration_ms >> 10) + 80 WHEN duration_ms < 32768 THEN (duration_ms >> 11) + 88 WHEN duration_ms < 65536 THEN (duration_ms >> 12) + 96 WHEN duration_ms < 131072 THEN (duration_ms >> 13) + 104 WHEN duration_ms < 262144 THEN (duration_ms >> 14) + 112 WHEN duration_ms < 524288 THEN (duration_ms >> 15) + 120 WHEN duration_ms < 1048576 THEN (duration_ms >> 16) + 128 WHEN duration_ms < 2097152 THEN (duration_ms >> 17) + 136 WHEN duration_ms < 4194304 THEN (duration_ms >> 18) + 144 WHEN duration_ms < 8388608 THEN (duration_ms >> 19) + 152 WHEN duration_ms < 16777216 THEN (duration_ms >> 20) + 160 WHEN duration_ms < 33554432 THEN (duration_ms >> 21) + 168 WHEN duration_ms < 67108864 THEN (duration_ms >> 22) + 176 WHEN duration_ms < 134217728 THEN (duration_ms >> 23) + 184 WHEN duration_ms < 268435456 THEN (duration_ms >> 24) + 192 WHEN duration_ms < 536870912 THEN (duration_ms >> 25) + 200 WHEN duration_ms < 1073741824 THEN (duration_ms >> 26) + 208 WHEN duration_ms < 2147483648 THEN (duration_ms >> 27) + 216 WHEN duration_ms < 4294967296 THEN (duration_ms >> 28) + 224 ELSE 240 END, COUNT(*)
FROM api_logs
WHERE NOT EXISTS (SELECT 1 FROM api_latency_day)
  AND created_at IS NOT NULL AND strftime('%s', created_at) IS NOT NULL
GROUP BY 1, 2, 3, 4;

-- Coarser copies for long ranges. Requests per hour by status class: the time chart of a range
-- of days reads whole hours here, minutes only at its edges. The latency histogram of every
-- request counted, per route and status class: the "all time" overview reads this (one row per
-- key) instead of summing every day's rows. Both follow the table they summarise through the
-- triggers below, whoever writes it: this version's write batches, an older version's batches
-- or per-row trigger during a rolling deploy, the pruner's deletes (LOG_ROLLUP_RETENTION_DAYS).
-- Backfilled from that table, not from api_logs, so rows pruned from api_logs stay counted.
CREATE TABLE IF NOT EXISTS api_status_hour (
    hour INTEGER NOT NULL,
    status_class INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (hour, status_class)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS api_latency_total (
    endpoint TEXT NOT NULL,
    status_class INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (endpoint, status_class, bucket)
) WITHOUT ROWID;

INSERT INTO api_status_hour (hour, status_class, n)
SELECT minute / 60, status_class, SUM(n) FROM api_status_minute
WHERE NOT EXISTS (SELECT 1 FROM api_status_hour)
GROUP BY 1, 2;

INSERT INTO api_latency_total (endpoint, status_class, bucket, n)
SELECT endpoint, status_class, bucket, SUM(n) FROM api_latency_day
WHERE NOT EXISTS (SELECT 1 FROM api_latency_total)
GROUP BY 1, 2, 3;

-- One upsert per minute or day row a batch adds or updates (not per request), one per row the
-- pruner deletes (hourly, in the background).
CREATE TRIGGER api_status_minute_counted AFTER INSERT ON api_status_minute
BEGIN
    INSERT INTO api_status_hour (hour, status_class, n) VALUES (NEW.minute / 60, NEW.status_class, NEW.n)
    ON CONFLICT (hour, status_class) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER api_status_minute_recounted AFTER UPDATE OF n ON api_status_minute
BEGIN
    INSERT INTO api_status_hour (hour, status_class, n) VALUES (NEW.minute / 60, NEW.status_class, NEW.n - OLD.n)
    ON CONFLICT (hour, status_class) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER api_status_minute_pruned AFTER DELETE ON api_status_minute
BEGIN
    UPDATE api_status_hour SET n = n - OLD.n WHERE hour = OLD.minute / 60 AND status_class = OLD.status_class;
    DELETE FROM api_status_hour WHERE hour = OLD.minute / 60 AND status_class = OLD.status_class AND n <= 0;
END;

CREATE TRIGGER api_latency_day_counted AFTER INSERT ON api_latency_day
BEGIN
    INSERT INTO api_latency_total (endpoint, status_class, bucket, n) VALUES (NEW.endpoint, NEW.status_class, NEW.bucket, NEW.n)
    ON CONFLICT (endpoint, status_class, bucket) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER api_latency_day_recounted AFTER UPDATE OF n ON api_latency_day
BEGIN
    INSERT INTO api_latency_total (endpoint, status_class, bucket, n)
    VALUES (NEW.endpoint, NEW.status_class, NEW.bucket, NEW.n - OLD.n)
    ON CONFLICT (endpoint, status_class, bucket) DO UPDATE SET n = n + excluded.n;
END;

CREATE TRIGGER api_latency_day_pruned AFTER DELETE ON api_latency_day
BEGIN
    UPDATE api_latency_total SET n = n - OLD.n
    WHERE endpoint = OLD.endpoint AND status_class = OLD.status_class AND bucket = OLD.bucket;
    DELETE FROM api_latency_total
    WHERE endpoint = OLD.endpoint AND status_class = OLD.status_class AND bucket = OLD.bucket AND n <= 0;
END;

-- The ids a write batch inserted, between its INSERTs and its rollup statements
-- (log/db/rollup_batch.sql): filled and emptied inside that batch's transaction, so it is empty
-- whenever no batch is being written.
CREATE TABLE IF NOT EXISTS api_rollup_pending (
    id INTEGER PRIMARY KEY,
    at INTEGER,
    endpoint TEXT,
    status_class INTEGER,
    bucket INTEGER
);

-- A write batch's staged rows counted by minute, route key, status class and bucket
-- (log/db/rollup_batch.sql), which the rollup tables then add up: filled and emptied inside that
-- batch's transaction, like api_rollup_pending (whose other columns only older versions fill).
CREATE TABLE IF NOT EXISTS api_rollup_batch (
    minute INTEGER,  -- NULL: no readable created_at, never counted
    endpoint TEXT NOT NULL,
    status_class INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL
);

-- A database made by an earlier version has a trigger keeping the rollups (three upserts per
-- inserted row). Write batches keep them now, one INSERT ... SELECT ... GROUP BY per rollup
-- table (log/db/rollup_batch.sql), so the trigger is dropped on every apply.
DROP TRIGGER IF EXISTS api_logs_rollup;

-- Explorer filters that would otherwise scan the table: one user's requests, newest first
-- (SQLite indexes end with the rowid, so equality + ORDER BY id needs no sort).
CREATE INDEX IF NOT EXISTS idx_api_logs_user_id ON api_logs(user_id);
-- The same for one route template (the list page's `route` filter).
CREATE INDEX IF NOT EXISTS idx_api_logs_route ON api_logs(route);
-- The list page walks ids newest first and tests the filters on each row. Table rows carry
-- headers and bodies (up to 16 KiB each), so walking them reads far more pages than needed;
-- this narrow index holds every column the list filters on or shows, in id order, so SQLite
-- walks it instead ("SEARCH api_logs USING COVERING INDEX idx_api_logs_list (id>?)"). Cost:
-- one more append-at-the-end b-tree insert per row and roughly the size of these columns.
CREATE INDEX IF NOT EXISTS idx_api_logs_list ON api_logs(
    id, created_at, response_status, method, duration_ms, user_id, trace_id, ip_address, endpoint
);

-- Error signatures for the explorer's "new errors": one row per (route key, 5xx status,
-- exception type) with its first occurrence. The exception type is the part before ":" of the
-- error_message of the trace's first FAILED task row (the crash row of an unhandled exception,
-- or a failed step); '' = none recorded. The same CASE is in log/explorer/queries.py
-- (exception_type_sql); a test keeps them in step. Kept by two triggers, since the request row
-- and its FAILED row may reach the database in either order.
CREATE TABLE IF NOT EXISTS api_error_signatures (
    route TEXT NOT NULL,
    status INTEGER NOT NULL,
    exception TEXT NOT NULL,
    first_id INTEGER NOT NULL,
    first_trace TEXT NOT NULL,
    first_at TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (route, status, exception)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS idx_api_error_signatures_first_at ON api_error_signatures (first_at);

INSERT INTO api_error_signatures (route, status, exception, first_id, first_trace, first_at, n)
SELECT route, status, exception, MIN(id), trace_id, created_at, COUNT(*) FROM (
    SELECT a.id, a.trace_id, a.created_at,
           COALESCE(a.route, CASE WHEN instr(a.endpoint, '?') > 0 THEN substr(a.endpoint, 1, instr(a.endpoint, '?') - 1) ELSE a.endpoint END) AS route,
           a.response_status AS status,
           COALESCE((SELECT CASE WHEN instr(t.error_message, ':') BETWEEN 2 AND 80 THEN substr(t.error_message, 1, instr(t.error_message, ':') - 1) ELSE substr(t.error_message, 1, 80) END
                     FROM task_progress_logs t WHERE t.trace_id = a.trace_id AND t.status = 'FAILED' ORDER BY t.id LIMIT 1), '') AS exception
    FROM api_logs a
    WHERE a.response_status BETWEEN 500 AND 599 AND a.created_at IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM api_error_signatures)
)
GROUP BY 1, 2, 3;

DROP TRIGGER IF EXISTS api_logs_error_signature;
CREATE TRIGGER api_logs_error_signature AFTER INSERT ON api_logs
WHEN NEW.response_status BETWEEN 500 AND 599 AND NEW.created_at IS NOT NULL
BEGIN
    INSERT INTO api_error_signatures (route, status, exception, first_id, first_trace, first_at, n)
    VALUES (
        COALESCE(NEW.route, CASE WHEN instr(NEW.endpoint, '?') > 0 THEN substr(NEW.endpoint, 1, instr(NEW.endpoint, '?') - 1) ELSE NEW.endpoint END),
        NEW.response_status,
        COALESCE((SELECT CASE WHEN instr(t.error_message, ':') BETWEEN 2 AND 80 THEN substr(t.error_message, 1, instr(t.error_message, ':') - 1) ELSE substr(t.error_message, 1, 80) END
                  FROM task_progress_logs t WHERE t.trace_id = NEW.trace_id AND t.status = 'FAILED' ORDER BY t.id LIMIT 1), ''),
        NEW.id, NEW.trace_id, NEW.created_at, 1
    )
    ON CONFLICT (route, status, exception) DO UPDATE SET
        n = n + 1,
        first_trace = CASE WHEN excluded.first_id < first_id THEN excluded.first_trace ELSE first_trace END,
        first_at = CASE WHEN excluded.first_id < first_id THEN excluded.first_at ELSE first_at END,
        first_id = MIN(first_id, excluded.first_id);
END;

-- A trace's first FAILED row arriving after its 5xx request row: the request was counted with
-- no exception type (''); count it under its exception type instead.
DROP TRIGGER IF EXISTS task_progress_error_signature;
CREATE TRIGGER task_progress_error_signature AFTER INSERT ON task_progress_logs
WHEN NEW.status = 'FAILED'
  AND NOT EXISTS (SELECT 1 FROM task_progress_logs t WHERE t.trace_id = NEW.trace_id AND t.status = 'FAILED' AND t.id < NEW.id)
  AND EXISTS (SELECT 1 FROM api_logs a WHERE a.trace_id = NEW.trace_id AND a.response_status BETWEEN 500 AND 599)
BEGIN
    DELETE FROM api_error_signatures WHERE exception = '' AND first_trace = NEW.trace_id AND n <= 1;
    UPDATE api_error_signatures SET n = n - 1 WHERE exception = '' AND first_trace = NEW.trace_id AND n > 1;
    INSERT INTO api_error_signatures (route, status, exception, first_id, first_trace, first_at, n)
    SELECT COALESCE(a.route, CASE WHEN instr(a.endpoint, '?') > 0 THEN substr(a.endpoint, 1, instr(a.endpoint, '?') - 1) ELSE a.endpoint END),
           a.response_status,
           COALESCE(CASE WHEN instr(NEW.error_message, ':') BETWEEN 2 AND 80 THEN substr(NEW.error_message, 1, instr(NEW.error_message, ':') - 1) ELSE substr(NEW.error_message, 1, 80) END, ''),
           a.id, a.trace_id, a.created_at, 1
    FROM api_logs a WHERE a.trace_id = NEW.trace_id AND a.response_status BETWEEN 500 AND 599 AND a.created_at IS NOT NULL
    ON CONFLICT (route, status, exception) DO UPDATE SET
        n = n + 1,
        first_trace = CASE WHEN excluded.first_id < first_id THEN excluded.first_trace ELSE first_trace END,
        first_at = CASE WHEN excluded.first_id < first_id THEN excluded.first_at ELSE first_at END,
        first_id = MIN(first_id, excluded.first_id);
END;
