import pytest
import msgspec
from hypothesis import given
from hypothesis import strategies as st

from log.core.redact import (
    DEFAULT_HEADER_NAMES,
    REDACTED,
    RedactionPolicy,
    group_pairs,
    key_is_sensitive,
    may_hold_sensitive_key,
    redact_headers,
    redact_json,
    redact_pairs,
    redact_query_string,
)

POLICY = RedactionPolicy()
SENSITIVE_WORDS = [
    "password", "passwd", "pwd", "secret", "token", "apikey", "api-key", "api_key", "auth",
    "credential", "session", "cookie", "csrf", "xsrf", "jwt", "privatekey", "private_key",
    "credit card", "creditcard", "card-number", "cvv", "ssn", "access_key", "accesskey", "signature",
]  # fmt: skip
# Innocent keys: built from letters that cannot spell any pattern (no vowels but 'y' etc.).
innocent_keys = st.text(alphabet="bfghlmqxyz_", min_size=1, max_size=8)
# Secrets are alphanumeric so JSON escaping cannot hide them from a substring search.
secrets = st.from_regex(r"\ASECRET[A-Za-z0-9]{6,20}\Z")


@st.composite
def sensitive_keys(draw):
    word = draw(st.sampled_from(SENSITIVE_WORDS))
    cased = "".join(c.upper() if draw(st.booleans()) else c for c in word)
    return draw(innocent_keys | st.just("")) + cased + draw(innocent_keys | st.just(""))


@st.composite
def sensitive_header_names(draw):
    listed = st.sampled_from(sorted(DEFAULT_HEADER_NAMES))
    return draw(listed | listed.map(str.upper) | sensitive_keys())


json_leaf = st.none() | st.booleans() | st.integers() | st.text(alphabet="abc ", max_size=5)


@st.composite
def json_with_planted_secret(draw):
    secret = draw(secrets)
    value = {draw(sensitive_keys()): draw(st.sampled_from([secret, [secret], {"x": secret}]))}
    for _ in range(draw(st.integers(0, 6))):  # wrap at random depth in dicts/lists with noise
        noise = draw(st.lists(json_leaf, max_size=3))
        if draw(st.booleans()):
            value = [*noise, value]
        else:
            value = {draw(innocent_keys): value, **{f"n{i}": n for i, n in enumerate(noise)}}
    return secret, value


@given(json_with_planted_secret())
def test_secret_in_json_never_in_output(planted):
    secret, value = planted
    out = msgspec.json.encode(redact_json(value, POLICY)).decode()
    assert secret not in out
    assert REDACTED in out


@given(json_with_planted_secret(), st.text(max_size=5), st.booleans())
def test_fast_path_never_skips_a_body_that_needs_redaction(planted, unicode_noise, ensure_ascii_escape):
    _, value = planted
    value = [unicode_noise, value]  # non-ASCII text elsewhere must not hide the key
    text = msgspec.json.encode(value).decode()
    if ensure_ascii_escape:  # the same JSON with every non-ASCII char (and some keys) escaped
        text = text.encode("ascii", "backslashreplace").decode().replace("a", "\\u0061")
    assert may_hold_sensitive_key(text, POLICY)
    assert may_hold_sensitive_key(text, RedactionPolicy(key_patterns=("PASSWORD", *POLICY.key_patterns)))


def test_fast_path_skips_innocent_text():
    assert not may_hold_sensitive_key('{"items": [{"a": 1}], "name": "widget"}', POLICY)
    assert not may_hold_sensitive_key('{"password": 1}', RedactionPolicy(enabled=False))


@given(st.lists(st.tuples(innocent_keys, st.text(max_size=5)), max_size=4), sensitive_header_names(), secrets)
def test_secret_in_headers_never_in_output(noise, name, secret):
    headers = [*noise, (name, secret), *noise, (name, secret)]
    out = redact_headers(headers, POLICY)
    assert secret not in msgspec.json.encode(out).decode()


@given(st.lists(st.tuples(innocent_keys, st.text(alphabet="abc", max_size=5)), max_size=4), sensitive_keys(), secrets)
def test_secret_in_query_and_form_pairs_never_in_output(noise, key, secret):
    pairs = [*noise, (key, secret)]
    assert secret not in msgspec.json.encode(redact_pairs(pairs, POLICY)).decode()
    query = "&".join(f"{k}={v}" for k, v in pairs)
    assert secret not in redact_query_string(query, POLICY)


@given(st.lists(st.tuples(innocent_keys, st.text(max_size=5)), max_size=5))
def test_innocent_values_untouched(pairs):
    assert redact_pairs(pairs, POLICY) == pairs
    assert redact_json(dict(pairs), POLICY) == dict(pairs)


def test_headers_grouped_with_repeats_as_list():
    headers = [("accept", "a"), ("x-trace", "1"), ("accept", "b"), ("Cookie", "sid=1"), ("x-auth-token", "t")]
    assert redact_headers(headers, POLICY) == {
        "accept": ["a", "b"],
        "x-trace": "1",
        "Cookie": REDACTED,
        "x-auth-token": REDACTED,
    }


def test_json_redaction_does_not_mutate_input_and_handles_deep_nesting():
    value = {"user": {"name": "ann", "Password": "p", "tokens": [1, 2]}, "items": [{"apiKey": "k"}]}
    before = msgspec.json.encode(value)
    assert redact_json(value, POLICY) == {
        "user": {"name": "ann", "Password": REDACTED, "tokens": REDACTED},
        "items": [{"apiKey": REDACTED}],
    }
    assert msgspec.json.encode(value) == before
    deep: object = {"secret": "s"}
    for _ in range(5000):
        deep = [deep]
    out = redact_json(deep, POLICY)
    for _ in range(5000):
        out = out[0]
    assert out == {"secret": REDACTED}


def test_query_string_keeps_other_bytes_and_decodes_keys():
    qs = "q=a+b%20c&access_token=abc&pass%77ord=x&flag&empty="
    assert redact_query_string(qs, POLICY) == f"q=a+b%20c&access_token={REDACTED}&pass%77ord={REDACTED}&flag&empty="


def test_disabled_policy_and_extra_patterns():
    off = RedactionPolicy(enabled=False)
    assert redact_pairs([("password", "x")], off) == [("password", "x")]
    assert redact_headers([("authorization", "x")], off) == {"authorization": "x"}
    assert redact_json({"token": 1}, off) == {"token": 1}
    extra = POLICY.with_extra(["iban", " "])
    assert redact_pairs([("IBAN", "x"), ("password", "y")], extra) == [("IBAN", REDACTED), ("password", REDACTED)]
    assert redact_pairs([("iban", "x")], POLICY) == [("iban", "x")]


def test_group_pairs():
    assert group_pairs([("a", "1"), ("a", "2"), ("a", "3"), ("b", "")]) == {"a": ["1", "2", "3"], "b": ""}


@pytest.mark.parametrize("key", ["access_key", "AccessKey", "aws-access-key", "sig", "X-Amz-Signature", "sig_v2", "x-goog-sig"])
def test_access_keys_and_signatures_are_sensitive(key):
    assert key_is_sensitive(key, POLICY)
    assert redact_query_string(f"{key}=s3cret&q=1", POLICY) == f"{key}={REDACTED}&q=1"
    assert redact_headers([(key, "s3cret")], POLICY) == {key: REDACTED}


@pytest.mark.parametrize("key", ["design", "signup", "assign", "signal", "signed_in"])
def test_sig_inside_a_word_is_not_a_signature(key):
    assert not key_is_sensitive(key, POLICY)


def test_x_access_key_header_is_redacted():
    assert redact_headers([("X-Access-Key", "k1")], POLICY) == {"X-Access-Key": REDACTED}


@pytest.mark.parametrize(
    ("name", "url", "stored"),
    [
        ("referer", "https://a.example/auth/confirm?token_hash=t1&type=email",
         f"https://a.example/auth/confirm?token_hash={REDACTED}&type=email"),
        ("origin", "https://a.example?access_token=t1", f"https://a.example?access_token={REDACTED}"),
        ("location", "/next?sig=t1", f"/next?sig={REDACTED}"),
        ("hx-current-url", "https://a.example/#access_token=t1&type=recovery",
         f"https://a.example/#access_token={REDACTED}&type=recovery"),
        ("referer", "https://a.example/items?q=kept#top", "https://a.example/items?q=kept#top"),
    ],
)
def test_query_strings_inside_url_valued_headers_are_redacted(name, url, stored):
    assert redact_headers([(name, url)], POLICY) == {name: stored}
