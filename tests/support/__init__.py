"""Stand-ins and helpers shared by the tests and the benchmarks (bench/ imports only from here).

- app.py: the app's test settings, an in-process client, a real uvicorn server on a free port.
- hrana_server.py: a strict local Hrana-over-HTTP (Turso) server backed by sqlite3.
- pg.py: a throwaway PostgreSQL cluster.
- supabase_standin.py (with supabase_gotrue.py and supabase_postgrest.py): GoTrue and PostgREST
  on that cluster.
- reliability.py: a real app process, a restartable Hrana stand-in, a fixed-rate load generator.
- concurrency.py: one id source driven from several threads.

The test_*.py files here check the stand-ins themselves.
"""
