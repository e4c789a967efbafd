"""Segment-wise path prefixes: "/static" covers "/static" and "/static/x", not "/staticky".

Shared by the log middleware (paths it does not record) and the session middleware (paths that
never need a session). Both test every request's path, so the prefixes are normalised once.
"""

from __future__ import annotations

from collections.abc import Sequence


def stems(prefixes: Sequence[str]) -> tuple[str, ...]:
    return tuple(p.rstrip("/") for p in prefixes)


def under(path: str, prefix_stems: tuple[str, ...]) -> bool:
    # Most paths start with none of the stems: one C call says so; the segment check only on a hit.
    if not path.startswith(prefix_stems):
        return False
    return any(path.startswith(s) and (len(path) == len(s) or path[len(s)] == "/") for s in prefix_stems)


def is_excluded(path: str, prefixes: Sequence[str]) -> bool:
    return under(path, stems(prefixes))
