"""In-process driver: N requests through the ASGI app, process CPU (all threads) per request."""
import asyncio, os, sys, time, tempfile, cProfile, pstats
sys.path.insert(0, os.getcwd())
N = int(os.environ.get("N", "20000"))
layer = os.environ.get("PEERS_LAYER", "hello")
d = tempfile.mkdtemp()
os.environ.setdefault("DATA_DIR", d); os.environ.setdefault("LOG_DIR", d + "/logs")
import bench.peers_app as pa
app = pa.build()
HEADERS = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
async def one(i):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/bench/ping", "raw_path": b"/bench/ping", "query_string": b"", "root_path": "",
             "headers": HEADERS, "client": ("127.0.0.1", 5000 + i % 1000), "server": ("127.0.0.1", 8000), "state": {}}
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(m):
        pass
    await app(scope, receive, send)
async def main():
    lm = {"type": "lifespan.startup"}
    q = asyncio.Queue(); await q.put({"type": "lifespan.startup"}); out = asyncio.Queue()
    async def r(): return await q.get()
    async def s(m): await out.put(m)
    task = asyncio.create_task(app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, r, s))
    print(await out.get())
    for i in range(2000): await one(i)
    prof = cProfile.Profile() if os.environ.get("PROF") else None
    c0, w0 = time.process_time(), time.perf_counter()
    if prof: prof.enable()
    for i in range(N):
        await one(i)
        if i % 16 == 0: await asyncio.sleep(0)
    if prof: prof.disable()
    await q.put({"type": "lifespan.shutdown"}); print(await out.get()); await task
    c1, w1 = time.process_time(), time.perf_counter()
    print(f"{layer} {os.environ.get('LOG_SINKS')}: {(c1-c0)/N*1e6:.1f} us CPU/request, wall {(w1-w0)/N*1e6:.1f}", file=sys.stderr)
    if prof:
        st = pstats.Stats(prof); st.sort_stats("tottime").print_stats(25); st.sort_stats("cumtime").print_stats(40)
asyncio.run(main())
