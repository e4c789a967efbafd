"""The in-process registry of imports: owner-bound, bounded in time, count and bytes."""

from __future__ import annotations

from handlers import import_runs
from handlers.import_runs import ImportRuns


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_run_is_found_only_by_its_owner() -> None:
    runs = ImportRuns(clock=Clock())
    run = runs.start("t1", "alice")
    run.begin("Validation")
    run.progress(5, 10)
    assert runs.find("t1", "alice") is run
    assert runs.find("t1", "bob") is None and runs.owned_by_another("t1", "bob")
    assert not runs.owned_by_another("t1", "alice") and not runs.owned_by_another("t2", "bob")
    # Bob reusing the trace id gets a run of his own; Alice's is untouched.
    bobs = runs.start("t1", "bob")
    assert runs.find("t1", "bob") is bobs and runs.find("t1", "alice") is run and run.done == 5


def test_finished_runs_expire_and_running_ones_stay() -> None:
    clock = Clock()
    runs = ImportRuns(clock=clock)
    done = runs.start("old", "alice")
    runs.finish(done, b"name,error\r\n")
    running = runs.start("long", "alice")
    clock.now += import_runs.RETAIN_S + 1
    runs.start("new", "bob")
    assert runs.find("old", "alice") is None
    assert runs.find("long", "alice") is running


def test_the_number_of_runs_is_bounded_oldest_first(monkeypatch) -> None:
    monkeypatch.setattr(import_runs, "MAX_RUNS", 3)
    runs = ImportRuns(clock=Clock())
    for n in range(5):
        runs.start(f"t{n}", "alice")
    assert [t for t, _ in runs.runs] == ["t2", "t3", "t4"]


def test_rejected_rows_are_bounded_in_bytes_oldest_dropped(monkeypatch) -> None:
    monkeypatch.setattr(import_runs, "MAX_REJECTED_BYTES", 25)
    runs = ImportRuns(clock=Clock())
    first, second = runs.start("a", "alice"), runs.start("b", "alice")
    runs.finish(first, b"x" * 10)
    runs.finish(second, b"y" * 20)
    # The older download goes; its progress stays readable.
    assert first.rejected_csv is None and second.rejected_csv == b"y" * 20
    assert runs.find("a", "alice") is first
