"""The HTTP backend against a misbehaving server: retries, idempotent recovery, clear errors."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from log.db.hrana import HttpStatusError
from log.core.rows import ApiLog
from log.sinks.base import SinkError, WriteResult
from log.db.database import HttpLogDatabase, RetryPolicy, backoff_delay, http_base_url
from log.sinks.turso_sink import TursoSink
from tests.support.hrana_server import HranaServer, Running, running

TOKEN = "s3cret-token-value"



@pytest.fixture
def server(tmp_path: Path) -> Iterator[Running]:
    with running(HranaServer(str(tmp_path / "remote.db"), token=TOKEN)) as r:
        yield r


@pytest.fixture
async def client(anyio_backend: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


class RecordingSleep:
    """Stands in for anyio.sleep: records the backoff delays instead of waiting them out."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_sink(client: httpx.AsyncClient, url: str, token: str = TOKEN, attempts: int = 4,
              timeout: httpx.Timeout | None = None) -> tuple[TursoSink, RecordingSleep]:
    sleep = RecordingSleep()
    kwargs = {"timeout": timeout} if timeout else {}
    db = HttpLogDatabase(client, url, token, retry=RetryPolicy(attempts=attempts), sleep=sleep,
                         rand=lambda: 1.0, **kwargs)
    return TursoSink(db), sleep


def rows(n: int) -> list[ApiLog]:
    return [ApiLog(id=i, trace_id="t", method="GET", endpoint="/", request_header=None, request_body=None,
                   response_status=200, response_body=None, duration_ms=1, ip_address=None, user_id=None,
                   created_at="2026-01-01 00:00:00.000") for i in range(n)]


async def count(sink: TursoSink) -> int:
    return (await sink.db.select("SELECT count(*) AS n FROM api_logs"))[0]["n"]


def test_url_handling() -> None:
    assert http_base_url("libsql://db-org.turso.io") == "https://db-org.turso.io"
    assert http_base_url("https://h/") == "https://h"
    assert http_base_url("http://127.0.0.1:8080") == "http://127.0.0.1:8080"
    with pytest.raises(ValueError):
        http_base_url("ftp://h")


def test_backoff_grows_is_capped_and_honours_retry_after() -> None:
    policy = RetryPolicy(base_delay=1.0, max_delay=5.0)
    assert [backoff_delay(policy, a, 1.0) for a in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delay(policy, 0, 0.5) == 0.5  # jitter scales the delay
    assert backoff_delay(policy, 3, 1.0, retry_after=60) == 5.0


def test_repr_masks_the_token(client: httpx.AsyncClient) -> None:
    db = HttpLogDatabase(client, "libsql://x.turso.io", TOKEN)
    assert TOKEN not in repr(db) and TOKEN not in repr(TursoSink(db))


@pytest.mark.anyio
async def test_health_check(server: Running, client: httpx.AsyncClient) -> None:
    assert await HttpLogDatabase(client, server.url).health() is None  # raises when unhealthy


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["500", "429", "503"])
async def test_persistent_server_errors_are_retryable_then_recover_without_duplicates(
    server: Running, client: httpx.AsyncClient, fault: str
) -> None:
    sink, sleep = make_sink(client, server.url, attempts=3)
    await sink.open()
    server.server.inject(fault, times=3)
    before = server.server.pipeline_requests
    with pytest.raises(SinkError) as info:
        await sink.write("api_logs", rows(50))
    assert info.value.retryable
    assert server.server.pipeline_requests - before == 3  # bounded: attempts, not a storm
    assert len(sleep.delays) == 2
    assert await sink.write("api_logs", rows(50)) == WriteResult(inserted=50)
    assert await sink.write("api_logs", rows(50)) == WriteResult(inserted=0, already_present=50)
    assert await count(sink) == 50


@pytest.mark.anyio
async def test_retry_after_header_is_used(server: Running, client: httpx.AsyncClient) -> None:
    sink, sleep = make_sink(client, server.url)
    await sink.open()
    server.server.inject("429")  # the server sends Retry-After: 0
    assert await sink.write("api_logs", rows(1)) == WriteResult(inserted=1)
    assert sleep.delays == [0.0]


@pytest.mark.anyio
@pytest.mark.parametrize("fault", ["truncate", "drop", "expired"])
async def test_lost_answers_are_retried_and_never_duplicate(
    server: Running, client: httpx.AsyncClient, fault: str
) -> None:
    sink, sleep = make_sink(client, server.url)
    await sink.open()
    server.server.inject(fault)
    result = await sink.write("api_logs", rows(20))
    # truncate/drop: the first attempt committed, the retry sees the rows; expired: nothing ran.
    committed_first = fault != "expired"
    expected = WriteResult(inserted=0, already_present=20) if committed_first else WriteResult(inserted=20)
    assert result == expected
    assert len(sleep.delays) == 1
    assert await count(sink) == 20


@pytest.mark.anyio
async def test_read_timeout_is_retried(server: Running, client: httpx.AsyncClient) -> None:
    sink, sleep = make_sink(client, server.url, timeout=httpx.Timeout(0.3))
    await sink.open()
    server.server.inject("delay", delay=1.0)
    assert await sink.write("api_logs", rows(5)) in (
        WriteResult(inserted=5), WriteResult(inserted=0, already_present=5))
    assert len(sleep.delays) == 1
    assert await count(sink) == 5


@pytest.mark.anyio
async def test_server_down_is_retryable(client: httpx.AsyncClient) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sink, sleep = make_sink(client, f"http://127.0.0.1:{port}", attempts=2)
    with pytest.raises(SinkError) as info:
        await sink.write("api_logs", rows(1))
    assert info.value.retryable
    assert len(sleep.delays) == 1


@pytest.mark.anyio
async def test_restarted_server_recovers_without_duplicates(tmp_path: Path, client: httpx.AsyncClient) -> None:
    srv = HranaServer(str(tmp_path / "remote.db"), token=TOKEN)
    with running(srv) as r:
        url, port = r.url, int(r.url.rsplit(":", 1)[1])
        sink, _ = make_sink(client, url, attempts=2)
        await sink.open()
        assert await sink.write("api_logs", rows(10)) == WriteResult(inserted=10)
    with pytest.raises(SinkError) as info:  # down
        await sink.write("api_logs", rows(20))
    assert info.value.retryable
    with running(HranaServer(str(tmp_path / "remote.db"), token=TOKEN), port=port):
        assert await sink.write("api_logs", rows(20)) == WriteResult(inserted=10, already_present=10)
        assert await count(sink) == 20


@pytest.mark.anyio
async def test_bad_token_is_a_clear_non_retryable_error_without_a_storm(
    server: Running, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    sink, sleep = make_sink(client, server.url, token="wrong-token")
    before = server.server.pipeline_requests
    with caplog.at_level(logging.DEBUG), pytest.raises(SinkError) as info:
        await sink.open()
    assert not info.value.retryable
    assert "401" in str(info.value) and "TURSO_AUTH_TOKEN" in str(info.value)
    assert server.server.pipeline_requests - before == 1
    assert sleep.delays == []
    assert "wrong-token" not in caplog.text and "wrong-token" not in str(info.value)
    # The sink only raises; the pipeline says it once at start-up (test_turso_app_faults.py).
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    with pytest.raises(SinkError) as write_info:
        await sink.write("api_logs", rows(1))
    assert not write_info.value.retryable


@pytest.mark.anyio
async def test_wrong_url_404_is_not_retried(server: Running, client: httpx.AsyncClient) -> None:
    db = HttpLogDatabase(client, server.url + "/nope", TOKEN, sleep=RecordingSleep())
    with pytest.raises(HttpStatusError) as info:
        await db.select("SELECT 1")
    assert info.value.status == 404 and not info.value.retryable
    assert "TURSO_DATABASE_URL" in str(info.value)


@pytest.mark.anyio
async def test_one_http_request_per_batch(server: Running, client: httpx.AsyncClient) -> None:
    sink, _ = make_sink(client, server.url)
    await sink.open()
    before = server.server.pipeline_requests
    batch = rows(1000)
    for i in range(0, 1000, 500):
        assert await sink.write("api_logs", batch[i : i + 500]) == WriteResult(inserted=500)
    assert server.server.pipeline_requests - before == 2  # i.e. 20 per 10 000 rows


@pytest.mark.anyio
async def test_a_cancelled_batch_does_not_wait_for_its_post_and_its_retry_is_a_replay(
    server: Running, client: httpx.AsyncClient
) -> None:
    """Write batches are POSTed from a worker thread: a caller cancelled at shutdown's deadline
    returns without waiting for the answer; the POST still lands, so the retry finds the rows."""
    sink, _ = make_sink(client, server.url)
    await sink.open()
    server.server.inject("delay", delay=5.0)
    with anyio.move_on_after(0.2) as scope:
        await sink.write("api_logs", rows(5))
    assert scope.cancelled_caught
    assert await count(sink) == 0  # the server still holds the batch: the caller did not wait
    for _ in range(200):  # the abandoned POST lands once the server answers
        if await count(sink) == 5:
            break
        await anyio.sleep(0.05)  # polling for the condition
    assert await sink.write("api_logs", rows(5)) == WriteResult(inserted=0, already_present=5)
    await sink.db.aclose()


@pytest.mark.anyio
async def test_aclose_closes_the_write_client_and_a_later_batch_opens_another(
    server: Running, client: httpx.AsyncClient
) -> None:
    sink, _ = make_sink(client, server.url)
    await sink.open()
    assert await sink.write("api_logs", rows(2)) == WriteResult(inserted=2)
    first = sink.db._sync
    assert first is not None and not first.is_closed
    await sink.db.aclose()
    assert first.is_closed and sink.db._sync is None
    assert await sink.write("api_logs", rows(3)) == WriteResult(inserted=1, already_present=2)
    await sink.db.aclose()
