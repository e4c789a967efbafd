"""Retention decisions as plain values: cutoffs, the batch plan, which CSV files may go."""

from __future__ import annotations

import datetime as dt

from log.core.retention import (
    LOG_TABLES, PRUNE_GRACE, ROLLUPS, csv_file_expired, file_extent, keep_from, pause_after, plan, prune_before, step_done,
)

NOW = dt.datetime(2026, 12, 2, 12, 0, 0, 123000, tzinfo=dt.UTC)


def test_cutoffs_are_created_at_text_and_zero_days_keeps_everything() -> None:
    assert keep_from(NOW, 30) == "2026-11-02 12:00:00.123"
    assert keep_from(NOW.replace(tzinfo=None), 30) == "2026-11-02 12:00:00.123"  # naive = UTC
    assert keep_from(NOW.astimezone(dt.timezone(dt.timedelta(hours=2))), 30) == "2026-11-02 12:00:00.123"
    assert prune_before(NOW, 30) == "2026-11-02 11:50:00.123"
    assert keep_from(NOW, 0) is None and prune_before(NOW, 0) is None


def test_the_pruner_cuts_later_than_sync_skips() -> None:
    # What the pruner may delete, sync always skips: a deleted row is never inserted again.
    for days in (1, 30, 400):
        assert prune_before(NOW, days) < keep_from(NOW, days)
        assert prune_before(NOW + PRUNE_GRACE, days) == keep_from(NOW, days)


def test_plan_deletes_log_rows_by_created_at_and_rollups_by_their_time_key() -> None:
    steps = plan(NOW, retention_days=30, rollup_days=400, limit=5000)
    assert [s.table for s in steps] == [*LOG_TABLES, *ROLLUPS]
    assert all(s.limit == 5000 and "LIMIT 5000" in s.delete_sql for s in steps)
    api = steps[0]
    assert api.args == ("2026-11-02 11:50:00.123",)
    assert api.delete_sql.startswith("DELETE FROM api_logs WHERE id IN (SELECT id FROM api_logs WHERE created_at < ?")
    cutoff = int((NOW - PRUNE_GRACE - dt.timedelta(days=400)).timestamp())
    by_table = {s.table: s.args for s in steps}
    assert by_table["api_status_minute"] == (cutoff // 60,)
    assert by_table["api_latency_hour"] == (cutoff // 3600,)
    assert by_table["api_latency_day"] == (cutoff // 86400,)


def test_plan_leaves_out_what_is_kept_for_ever() -> None:
    assert [s.table for s in plan(NOW, retention_days=0, rollup_days=400)] == list(ROLLUPS)
    assert [s.table for s in plan(NOW, retention_days=30, rollup_days=0)] == list(LOG_TABLES)
    assert plan(NOW, retention_days=0, rollup_days=0) == []


def test_the_pause_after_a_batch_is_twice_its_time_and_at_least_the_minimum() -> None:
    assert pause_after(0.01, 0.1) == 0.1
    assert pause_after(0.3, 0.1) == 0.6


def test_a_short_batch_ends_the_step() -> None:
    assert not step_done(5000, 5000)
    assert step_done(4999, 5000) and step_done(0, 5000)


HEADER = "id,trace_id,method,endpoint,created_at\r\n"


def test_file_extent_finds_columns_by_name_and_skips_torn_lines() -> None:
    lines = [
        HEADER,
        '7,t,GET,"/a,b",2026-10-01 00:00:00.000\r\n',
        "9,t,GET,/c,2026-09-30 23:59:59.999\r\n",  # a higher id, an older time: both maxima count
        '12,t,GET,"/torn\r\n',
        "x,t,GET,/d,2026-12-01 00:00:00.000\r\n",
    ]
    assert file_extent(lines) == (9, "2026-10-01 00:00:00.000")
    # A column appended after created_at (a newer header) reads the same.
    newer = ["id,trace_id,created_at,route\r\n", "5,t,2026-10-02 00:00:00.000,/items/{id}\r\n"]
    assert file_extent(newer) == (5, "2026-10-02 00:00:00.000")
    assert file_extent([HEADER]) is None
    assert file_extent(["something,else\r\n", "1,2\r\n"]) is None


def test_only_rotated_files_with_rows_all_expired_may_go() -> None:
    extent = (9, "2026-10-01 00:00:00.000")
    assert csv_file_expired(1, extent, "2026-10-01 00:00:00.001")
    assert not csv_file_expired(1, extent, "2026-10-01 00:00:00.000")  # its newest row is not older
    assert not csv_file_expired(0, extent, "2027-01-01 00:00:00.000")  # never the current file
    assert not csv_file_expired(3, None, "2027-01-01 00:00:00.000")  # nothing readable in it
    assert not csv_file_expired(3, extent, None)  # retention off
