-- Per-batch rollups: how a write batch (log/sinks/turso_sink.py) counts the api_logs rows it
-- actually inserted, in its own transaction, instead of a per-row trigger's three upserts.
--
-- STAGE runs before each INSERT chunk, with the chunk's ids as ONE JSON array argument: it keeps
-- the ids not stored yet, so exactly the rows that INSERT ... ON CONFLICT(id) DO NOTHING will
-- insert (an id twice in a batch is staged and inserted once; a replayed or conflicting id,
-- none). After the last chunk, the staged rows' rollup keys are read from the rows as stored,
-- once per row (the time parsed once, the bucket computed once), then one INSERT ... SELECT ...
-- GROUP BY per rollup table counts them, and the staging table is emptied. On file:, over Hrana and in
-- `logs sync` alike (all write through the sink).
-- While the old trigger api_logs_rollup exists (an instance of an older version started after
-- this one, during a rolling deploy), it counts every row and STAGE keeps nothing: no row is
-- counted twice, none is missed.
-- The key and bucket expressions are the backfill's (log/db/rollups.sql; a test keeps them
-- equal). Split by log/db/schema.py split_statements; the first statement is STAGE.

INSERT OR IGNORE INTO api_rollup_pending (id)
SELECT j.value FROM json_each(?) AS j
WHERE NOT EXISTS (SELECT 1 FROM api_logs AS a WHERE a.id = j.value)
  AND NOT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'api_logs_rollup');

-- at: unix seconds, NULL for a row without a readable created_at (never counted, as the backfill).
UPDATE api_rollup_pending SET (at, endpoint, status_class, bucket) = (
    SELECT CAST(strftime('%s', created_at) AS INTEGER), COALESCE(route, CASE WHEN instr(endpoint, '?') > 0 THEN substr(endpoint, 1, instr(endpoint, '?') - 1) ELSE endpoint END),
       COALESCE(response_status / 100, 0), CASE WHEN duration_ms IS NULL OR duration_ms < 0 THEN -1 WHEN duration_ms < 16 THEN duration_ms WHEN duration_ms < 32 THEN (duration_ms >> 1) + 8 WHEN duration_ms < 64 THEN (duration_ms >> 2) + 16 WHEN duration_ms < 128 THEN (duration_ms >> 3) + 24 WHEN duration_ms < 256 THEN (duration_ms >> 4) + 32 WHEN duration_ms < 512 THEN (duration_ms >> 5) + 40 WHEN duration_ms < 1024 THEN (duration_ms >> 6) + 48 WHEN duration_ms < 2048 THEN (duration_ms >> 7) + 56 WHEN duration_ms < 4096 THEN (duration_ms >> 8) + 64 WHEN duration_ms < 8192 THEN (duration_ms >> 9) + 72 WHEN duration_ms < 16384 THEN (duration_ms >> 10) + 80 WHEN duration_ms < 32768 THEN (duration_ms >> 11) + 88 WHEN duration_ms < 65536 THEN (duration_ms >> 12) + 96 WHEN duration_ms < 131072 THEN (duration_ms >> 13) + 104 WHEN duration_ms < 262144 THEN (duration_ms >> 14) + 112 WHEN duration_ms < 524288 THEN (duration_ms >> 15) + 120 WHEN duration_ms < 1048576 THEN (duration_ms >> 16) + 128 WHEN duration_ms < 2097152 THEN (duration_ms >> 17) + 136 WHEN duration_ms < 4194304 THEN (duration_ms >> 18) + 144 WHEN duration_ms < 8388608 THEN (duration_ms >> 19) + 152 WHEN duration_ms < 16777216 THEN (duration_ms >> 20) + 160 WHEN duration_ms < 33554432 THEN (duration_ms >> 21) + 168 WHEN duration_ms < 67108864 THEN (duration_ms >> 22) + 176 WHEN duration_ms < 134217728 THEN (duration_ms >> 23) + 184 WHEN duration_ms < 268435456 THEN (duration_ms >> 24) + 192 WHEN duration_ms < 536870912 THEN (duration_ms >> 25) + 200 WHEN duration_ms < 1073741824 THEN (duration_ms >> 26) + 208 WHEN duration_ms < 2147483648 THEN (duration_ms >> 27) + 216 WHEN duration_ms < 4294967296 THEN (duration_ms >> 28) + 224 ELSE 240 END
    FROM api_logs WHERE api_logs.id = api_rollup_pending.id
);

INSERT INTO api_status_minute (minute, status_class, n)
SELECT at / 60, status_class, COUNT(*) FROM api_rollup_pending WHERE at IS NOT NULL
GROUP BY 1, 2
ON CONFLICT (minute, status_class) DO UPDATE SET n = n + excluded.n;

INSERT INTO api_latency_hour (hour, endpoint, status_class, bucket, n)
SELECT at / 3600, endpoint, status_class, bucket, COUNT(*) FROM api_rollup_pending WHERE at IS NOT NULL
GROUP BY 1, 2, 3, 4
ON CONFLICT (hour, endpoint, status_class, bucket) DO UPDATE SET n = n + excluded.n;

INSERT INTO api_latency_day (day, endpoint, status_class, bucket, n)
SELECT at / 86400, endpoint, status_class, bucket, COUNT(*) FROM api_rollup_pending WHERE at IS NOT NULL
GROUP BY 1, 2, 3, 4
ON CONFLICT (day, endpoint, status_class, bucket) DO UPDATE SET n = n + excluded.n;

DELETE FROM api_rollup_pending;
