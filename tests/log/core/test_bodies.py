import hashlib
from urllib.parse import urlencode

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from log.core.bodies import ascii_compatible, body_to_json
from log.core.redact import REDACTED, RedactionPolicy

POLICY = RedactionPolicy()


def body(data: bytes, content_type: str | None = "application/json", *, total: int | None = None, cap: int = 1000,
         is_response: bool = False, status: int | None = None, html_mode: str = "summary"):  # fmt: skip
    text = body_to_json(
        content_type=content_type,
        data=data,
        total_size=len(data) if total is None else total,
        cap=cap,
        policy=POLICY,
        is_response=is_response,
        status=status,
        html_mode=html_mode,
    )
    return None if text is None else msgspec.json.decode(text)


def summary_of(media: str, data: bytes, size: int) -> dict:
    digest = hashlib.sha256(data).hexdigest()
    return {"summary": {"content_type": media, "size": size, "sha256": digest, "captured_bytes": len(data)}}


def test_empty_body_is_null():
    assert body(b"") is None
    assert body(b"", "text/plain", is_response=True) is None


def test_json_parsed_and_redacted():
    assert body(b'{"user": "ann", "Password": "p", "n": [1, 2.5, null]}') == {
        "user": "ann",
        "Password": REDACTED,
        "n": [1, 2.5, None],
    }
    assert body(b'["a"]', "application/vnd.api+json; charset=utf-8") == ["a"]
    assert body(b' {"token": 1}', None) == {"token": REDACTED}  # no content type, looks like JSON


def test_json_truncated_is_marked_and_still_redacted():
    full = b'{"a": 1, "password": "hunter2hunter2"}'
    assert body(full[:28], total=len(full)) == {
        "truncated": True,
        "size": len(full),
        "kept": 28,
        "text": '{"a": 1, "password": "[REDACTED]"',
    }


def test_cap_enforced_even_if_more_bytes_were_captured():
    assert body(b'"abcdef"', cap=3) == {"truncated": True, "size": 8, "kept": 3, "text": '"ab'}


def test_keys_hidden_by_unicode_escapes_are_still_redacted():
    assert body(b'{"p\\u0061ssword": "hunter2", "a": 1}') == {"password": REDACTED, "a": 1}
    cut = body(b'{"p\\u0061ssword": "hunter2", "a": 1}'[:25], total=40)
    assert cut["text"] == '{"p\\u0061ssword": "[REDACTED]"'


def test_json_without_sensitive_words_is_kept_verbatim():
    assert body_to_json(
        content_type="application/json", data=b' {"a": [1, 2.50]}\n', total_size=17, cap=100, policy=POLICY,
        is_response=True,
    ) == '{"a": [1, 2.50]}'  # fmt: skip


def test_unparseable_json_becomes_redacted_string():
    assert body(b'{"token": "abc", oops}') == '{"token": "[REDACTED]", oops}'


def test_invalid_utf8_never_raises():
    assert body(b'{"a": "\xff\xfe"}') == '{"a": "\ufffd\ufffd"}'
    assert body(b"caf\xe9", "text/plain; charset=latin-1") == "café"
    assert body(b"caf\xe9", "text/plain; charset=nonsense") == "caf\ufffd"
    # A form is read as Starlette reads it: raw bytes as latin-1, %-escapes as UTF-8.
    assert body(b"a=\xff&b=%ff", "application/x-www-form-urlencoded") == {"a": "\xff", "b": "\ufffd"}


def test_form_urlencoded_grouped_and_redacted():
    data = urlencode([("tag", "a"), ("tag", "b"), ("csrf_token", "t"), ("name", "x y")]).encode()
    assert body(data, "application/x-www-form-urlencoded") == {"tag": ["a", "b"], "csrf_token": REDACTED, "name": "x y"}
    # Cut inside the sensitive key: "csrf_tok" still matches, so even its (empty) value is redacted.
    assert body(data[:20], "application/x-www-form-urlencoded", total=len(data)) == {
        "truncated": True,
        "size": len(data),
        "kept": 20,
        "form": {"tag": ["a", "b"], "csrf_tok": REDACTED},
    }
    assert body(data[:25], "application/x-www-form-urlencoded", total=len(data)) == {
        "truncated": True,
        "size": len(data),
        "kept": 25,
        "form": {"tag": ["a", "b"], "csrf_token": REDACTED},
    }


def test_text_kept_and_truncation_marked():
    assert body(b"hello\nworld", "text/plain", is_response=True, status=200) == "hello\nworld"
    assert body(b"hel", "text/csv", total=10) == {"truncated": True, "size": 10, "kept": 3, "text": "hel"}


@pytest.mark.parametrize(
    ("status", "mode", "kept"),
    [(200, "summary", False), (302, "summary", False), (200, "full", True), (404, "summary", True), (500, "summary", True)],
)
def test_html_responses_summarised_unless_full_or_error(status, mode, kept):
    page = b"<html><title>x</title></html>"
    out = body(page, "text/html; charset=utf-8", is_response=True, status=status, html_mode=mode)
    if kept:
        assert out == page.decode()
    else:
        assert out == {"summary": {"content_type": "text/html", "size": len(page), "captured_bytes": len(page)}}


@pytest.mark.parametrize("ct", ["multipart/form-data; boundary=x", "application/octet-stream", "image/png", None])
def test_binary_and_multipart_summarised_never_raw(ct):
    data = b"\x89PNG password=hunter2 \x00\x01"
    out = body(data, ct, total=500)
    assert out == summary_of((ct or "").split(";")[0], data, 500)


def test_nesting_too_deep_for_msgspec_still_redacted():
    data = b"[" * 50_000 + b'{"secret": "s3"}' + b"]" * 50_000
    out = body(data, cap=len(data))
    assert isinstance(out, str) and "s3" not in out and REDACTED in out


innocent = st.text(alphabet="abcdefghilmnoqruvxyz _.,:{}[]\"'", max_size=10)
sensitive = st.sampled_from(["password", "Access_Token", "apiKey", "SESSIONID", "x-csrf", "cvv", "client_secret"])
secret = st.from_regex(r"\ASECRET[a-z0-9]{4,12}\Z")


@given(st.data())
def test_planted_secret_never_in_json_or_form_body_at_any_cut(data):
    key, value = data.draw(sensitive), data.draw(secret)
    noise = data.draw(st.dictionaries(st.text(alphabet="bfhlmq", min_size=1, max_size=4), innocent, max_size=3))
    nested = data.draw(st.sampled_from([value, [value, 1], {"inner": value}]))
    doc = {**noise, key: nested, "z": data.draw(innocent)}
    if data.draw(st.booleans()):
        raw, ct = msgspec.json.encode(data.draw(st.sampled_from([doc, [doc], {"wrap": [doc]}]))), "application/json"
    else:
        raw, ct = urlencode([*noise.items(), (key, value)]).encode(), "application/x-www-form-urlencoded"
    cut = data.draw(st.integers(0, len(raw)))
    text = body_to_json(content_type=ct, data=raw[:cut], total_size=len(raw), cap=cut, policy=POLICY, is_response=False)
    # Not even a prefix of the secret survives: partial strings after a sensitive key are redacted too.
    assert "SEC" not in (text or "")


@pytest.mark.parametrize("status, content_type, mode, summarised", [
    (200, "text/html; charset=utf-8", "summary", True),
    (303, "TEXT/HTML", "summary", True),
    (None, "text/html", "summary", True),  # as body_to_json has always treated an unknown status
    (404, "text/html", "summary", False),  # error pages keep their text
    (200, "text/html", "full", False),
    (200, "application/json", "summary", False),
    (200, "text/htmlx", "summary", False),
    (200, None, "summary", False),
])
def test_summarised_page_rule(status, content_type, mode, summarised) -> None:
    from log.core.bodies import summarised_page

    assert summarised_page(status, content_type, mode) is summarised
    # It is the rule body_to_json applies: summarised responses get a page summary (a binary
    # summary carries a sha256; a page's never does), the others not.
    out = msgspec.json.decode(body_to_json(content_type=content_type, data=b"<p>hi</p>", total_size=9, cap=100,
                                           policy=RedactionPolicy(), is_response=True, status=status, html_mode=mode))
    assert (isinstance(out, dict) and "summary" in out and "sha256" not in out["summary"]) is summarised


# -- bodies are read as the app reads them, whatever charset the client declares ---------------

LOGIN = b"email=a%40b.c&password=planted-pw-91c2"


async def starlette_form(data: bytes, content_type: str) -> list[tuple[str, str]]:
    from starlette.datastructures import Headers
    from starlette.formparsers import FormParser

    async def stream():
        yield data

    form = await FormParser(Headers({"content-type": content_type}), stream()).parse()
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


@pytest.mark.parametrize("charset", ["utf-16-le", "utf-16", "cp037", "utf-7", "utf-32", "latin-1", "utf-8", "x-nonsense"])
def test_a_declared_charset_cannot_hide_a_login_forms_password(charset: str) -> None:
    content_type = f"application/x-www-form-urlencoded; charset={charset}"
    stored = body(LOGIN, content_type)
    assert "planted-pw" not in msgspec.json.encode(stored).decode()
    # The app reads the ASCII form whatever the charset says: so does the log, and redacts it.
    assert stored == {"email": "a@b.c", "password": REDACTED}


@pytest.mark.parametrize("charset", ["utf-16-le", "cp037", None])
def test_a_form_in_an_encoding_the_app_cannot_read_is_stored_without_its_content(charset: str | None) -> None:
    # The login form spelled in the charset itself (UTF-16: NUL bytes; EBCDIC): the app sees no
    # "password" field, but its bytes still hold the password. Stored: its summary only.
    data = LOGIN.decode().encode(charset or "utf-16-le")
    content_type = "application/x-www-form-urlencoded" + (f"; charset={charset}" if charset else "")
    stored = body(data, content_type)
    codec = {"utf-16-le": "utf-16-le", "cp037": "cp037", None: "utf-8"}[charset]
    assert stored == {"summary": {"content_type": "application/x-www-form-urlencoded", "charset": codec,
                                  "size": len(data), "captured_bytes": len(data)}}


@given(
    data=st.binary(max_size=200) | st.lists(st.sampled_from(["a", "=", "&", "%", "+", "2", "f", "é", "password", ";"]),
                                             max_size=40).map(lambda xs: "".join(xs).encode()),
    charset=st.sampled_from(["", "; charset=utf-8", "; charset=latin-1", "; charset=shift_jis", "; charset=cp037"]),
)
def test_forms_are_stored_as_starlette_parses_them(data: bytes, charset: str) -> None:
    import anyio

    from log.core.redact import group_pairs, redact_pairs

    content_type = "application/x-www-form-urlencoded" + charset
    stored = body(data, content_type)
    if b"\x00" in data or (not data.isascii() and not ascii_compatible(charset.partition("=")[2] or "utf-8")):
        assert stored is None or set(stored) == {"summary"}
        return
    parsed = anyio.run(starlette_form, data, content_type)
    assert (stored or {}) == group_pairs(redact_pairs(parsed, POLICY))


@pytest.mark.parametrize("charset", ["cp037", "utf-16-le", "latin-1", "nonsense"])
def test_json_is_read_as_json_loads_reads_bytes_whatever_the_declared_charset(charset: str) -> None:
    data = b'{"user": "a", "password": "planted-json-pw"}'
    for encoded in (data, data.decode().encode("utf-16-le"), data.decode().encode("utf-32")):
        stored = body(encoded, f"application/json; charset={charset}")
        assert stored == {"user": "a", "password": REDACTED}, (encoded[:10], stored)
