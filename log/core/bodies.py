"""A captured HTTP body -> the JSON text stored in request_body / response_body.

Pure. The middleware captured at most `cap` bytes of a body of `total_size` bytes. Results:

  empty body                            -> None (SQL NULL)
  application/json, */*+json (or no content type and the body looks like JSON)
        complete and parseable          -> the parsed value, redacted, re-encoded
        complete but unparseable        -> a JSON string of the text, lexically redacted
  application/x-www-form-urlencoded     -> {"field": "value" | [repeats...]}, redacted
  text/html responses with status < 400 -> {"summary": {"content_type", "size", "captured_bytes"}},
                                           unless html_mode == "full" (summarised_page; the capture
                                           layer keeps none of such a page's bytes, so
                                           captured_bytes is 0 there); no hash: every page embeds
                                           its own trace id and CSRF token, so a page's hash would
                                           never repeat and hashing it would cost CPU for nothing;
                                           error pages keep their text (they explain the error)
  other text/*                          -> a JSON string of the text
  multipart, binary, anything else      -> {"summary": {"content_type": ..., "size": total,
                                            "sha256": hex of the captured bytes, "captured_bytes": n}}
                                           never the raw bytes (uploads may hold anything)

Truncation (total_size > captured bytes) is always explicit, never a silently cut value:
  {"truncated": true, "size": total, "kept": n, "text": "<captured text>"}   json (lexically
                                                                         redacted) and text/*
  {"truncated": true, "size": total, "kept": n, "form": {...redacted...}}  form bodies
Bodies are read the way the app reads them, never through a re-decoding the redactor cannot see:
  * forms as Starlette parses them: split on "&" and "=", latin-1, then percent-decoded as UTF-8,
    whatever charset the client declares (a login form declared `charset=utf-16-le` or `cp037`
    is still read, and redacted, as the ASCII the app saw). A form whose bytes are text in
    another encoding, that the app cannot read (NUL bytes: UTF-16/32; non-ASCII bytes under a
    declared charset that is not ASCII-compatible: EBCDIC), may hold a password the redactor
    cannot see: it is stored as {"summary": {"content_type", "charset", "size",
    "captured_bytes"}}, without content or hash;
  * JSON as json.loads reads bytes: UTF-8, or UTF-16/32 told apart by its first bytes; the
    declared charset plays no part;
  * other text with the charset parameter (default UTF-8).
Decoding uses errors="replace": never raises.
Kept HTML (error pages, or LOG_HTML_BODIES=full) has the values of sensitively named <input>s
and of sensitive keys in JSON attributes (hx-headers, hx-vals) redacted: every page carries
the CSRF token in both places.
Plain text bodies cannot be redacted by key; secrets must not be sent as text/plain.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import json
from typing import Any, Literal
from urllib.parse import parse_qsl

import msgspec

from log.core.headers import is_html, media_type
from log.core.redact import (
    RedactionPolicy,
    group_pairs,
    may_hold_sensitive_key,
    redact_json,
    redact_html,
    redact_json_text,
    redact_pairs,
)

HtmlMode = Literal["summary", "full"]
_encoder = msgspec.json.Encoder()


def summarised_page(status: int | None, content_type: str | None, html_mode: HtmlMode = "summary") -> bool:
    """A response whose row keeps only a summary: an HTML page that did not fail, unless
    html_mode is "full". Only its size is used, so the capture need not keep its bytes."""
    return html_mode == "summary" and (status is None or status < 400) and is_html(content_type)


def _is_json(media: str, data: bytes) -> bool:
    if media == "application/json" or media.endswith("+json"):
        return True
    return media == "" and data.lstrip()[:1] in (b"{", b"[")


_ASCII = bytes(range(128))


@functools.lru_cache(maxsize=64)
def ascii_compatible(charset: str) -> bool:
    """Whether ASCII bytes read as the same ASCII in `charset` (UTF-8, latin-1, cp1252: yes;
    UTF-16, UTF-7, EBCDIC's cp037: no)."""
    try:
        return codecs.decode(_ASCII, charset) == _ASCII.decode("ascii")
    except (UnicodeError, LookupError):
        return False


def summary(media: str, data: bytes, total_size: int) -> dict[str, Any]:
    return {
        "summary": {
            "content_type": media,
            "size": total_size,
            "sha256": hashlib.sha256(data).hexdigest(),
            "captured_bytes": len(data),
        }
    }


def page_summary(media: str, data: bytes, total_size: int) -> dict[str, Any]:
    return {"summary": {"content_type": media, "size": total_size, "captured_bytes": len(data)}}


def body_to_json(
    *,
    content_type: str | None,
    data: bytes,
    total_size: int,
    cap: int,
    policy: RedactionPolicy,
    is_response: bool,
    status: int | None = None,
    html_mode: HtmlMode = "summary",
) -> str | None:
    data = data[: max(cap, 0)]
    total_size = max(total_size, len(data))
    if total_size == 0:
        return None
    return _encoder.encode(_body_value(content_type, data, total_size, policy, is_response, status, html_mode)).decode()


def _body_value(
    content_type: str | None,
    data: bytes,
    total_size: int,
    policy: RedactionPolicy,
    is_response: bool,
    status: int | None,
    html_mode: HtmlMode,
) -> Any:
    media, charset = media_type(content_type)
    truncated = total_size > len(data)

    def marker(key: str, value: Any) -> dict[str, Any]:
        return {"truncated": True, "size": total_size, "kept": len(data), key: value}

    if _is_json(media, data):
        encoding = json.detect_encoding(data)  # as json.loads(bytes) in the app
        if not truncated:
            try:
                text = data.decode(encoding)
                # Encoded here (as Raw) so nesting too deep for msgspec falls back to the text path.
                value = msgspec.json.decode(text)
                if may_hold_sensitive_key(text, policy):
                    return msgspec.Raw(_encoder.encode(redact_json(value, policy)))
                if encoding == "utf-8":
                    return msgspec.Raw(data.strip())  # valid JSON with nothing to redact: keep as is
                return msgspec.Raw(_encoder.encode(value))
            except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
                pass
        text = redact_json_text(data.decode(encoding, errors="replace"), policy)
        return marker("text", text) if truncated else text
    if media == "application/x-www-form-urlencoded":
        if b"\x00" in data or (not data.isascii() and not ascii_compatible(charset)):
            return {"summary": {"content_type": media, "charset": charset, "size": total_size,
                                "captured_bytes": len(data)}}
        # Starlette's form parser: fields split on "&", latin-1, unquote_plus (UTF-8 escapes).
        pairs = parse_qsl(data.decode("latin-1"), keep_blank_values=True, errors="replace")
        form = group_pairs(redact_pairs(pairs, policy))
        return marker("form", form) if truncated else form
    if media.startswith("text/"):
        if is_response and summarised_page(status, content_type, html_mode):
            return page_summary(media, data, total_size)
        text = data.decode(charset, errors="replace")
        if media == "text/html":
            text = redact_html(text, policy)
        return marker("text", text) if truncated else text
    return summary(media, data, total_size)
