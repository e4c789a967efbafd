"""The template environment: shared macros as globals, live in development."""

from __future__ import annotations

import re
from pathlib import Path

import jinja2

from handlers.templating import MACRO_TEMPLATES, macros_of

VIEWS = Path(__file__).resolve().parents[2] / "views"


def env_with(sources: dict[str, str], *, reload: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.DictLoader(sources), autoescape=True, auto_reload=reload)
    env.globals.update(macros_of(env, "m.html"))
    return env


def test_macros_are_globals_and_only_macros_are() -> None:
    sources = {"m.html": '{% set not_a_macro = 1 %}{% macro greet(who) %}<b>{{ who }}</b>{% endmacro %}',
               "page.html": "{{ greet('<x>') }}"}
    env = env_with(sources, reload=False)
    assert env.get_template("page.html").render() == "<b>&lt;x&gt;</b>"  # still autoescaped
    assert "greet" in env.globals and "not_a_macro" not in env.globals


def test_an_edited_macro_shows_on_the_next_render_only_when_reloading() -> None:
    for reload, expected in ((True, "B"), (False, "A")):
        sources = {"m.html": "{% macro f() %}A{% endmacro %}", "page.html": "{{ f() }}"}
        env = env_with(sources, reload=reload)
        assert env.get_template("page.html").render() == "A"
        sources["m.html"] = "{% macro f() %}B{% endmacro %}"  # DictLoader: up to date = unchanged source
        assert env.get_template("page.html").render() == expected


def test_no_template_imports_the_shared_macros() -> None:
    # Each {% from %} import runs on every render and every include (the items page includes its
    # card once per item); the macros are globals instead.
    imports = {p.name: re.findall(r"{%-?\s*(?:from|import)\s+\"([^\"]+)\"", p.read_text())
               for p in VIEWS.glob("*.html")}
    assert {name: found for name, found in imports.items() if set(found) & set(MACRO_TEMPLATES)} == {}


def test_field_attributes_reach_the_browser_as_written() -> None:
    # They were once passed as one pre-built string, which autoescaping turned into
    # autocomplete=&#34;new-password&#34;: the browser then saw no valid autocomplete hint.
    sources = {"m.html": (VIEWS / "_macros.html").read_text(),
               "page.html": '{{ field("password", "Password", "", {}, type="password",'
                            ' attrs={"autocomplete": "new-password", "maxlength": "200", "data-x": "\\"><b>"},'
                            ' autofocus=true, hint="At least 8 characters.") }}'}
    html = env_with(sources, reload=False).get_template("page.html").render()
    assert 'autocomplete="new-password"' in html and 'maxlength="200"' in html and " autofocus " in html
    assert 'data-x="&#34;&gt;&lt;b&gt;"' in html  # each value still escaped, once
    assert "&#34;new-password" not in html
    assert 'data-hint-for="password">At least 8 characters.' in html
