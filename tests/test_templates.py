"""Template source that Django would print as text instead of reading as a tag or comment."""

import re

from django.conf import settings

# `{# … #}` must open and close on one line; over several lines Django prints it into the page.
UNCLOSED_COMMENT = re.compile(r"\{#(?:(?!#\}).)*$", re.M)


def test_no_template_has_a_comment_spread_over_lines():
    templates = sorted((settings.BASE_DIR / "templates").rglob("*.html"))
    assert templates
    offenders = [
        f"{path.relative_to(settings.BASE_DIR)}:{text[: m.start()].count(chr(10)) + 1}"
        for path in templates
        for text in [path.read_text()]
        for m in UNCLOSED_COMMENT.finditer(text)
    ]
    assert offenders == []
