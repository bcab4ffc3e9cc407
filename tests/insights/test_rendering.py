"""Model answers are Markdown rendered to sanitised HTML: an answer cannot inject script or markup."""

import re

import pytest

from insights.rendering import render_markdown

from .helpers import sse_events

HOSTILE = (
    "## Reserve rules\n\n"
    "Issuers must hold **reserve assets** (Article 36).\n\n"
    "<script>alert('owned')</script>\n\n"
    '<img src="x" onerror="alert(1)">\n\n'
    '<p onclick="steal()" style="color:red">clicky</p>\n\n'
    "[click me](javascript:alert(document.cookie))\n\n"
    '<a href="javascript:alert(2)">raw link</a>\n\n'
    '<iframe src="https://evil.example"></iframe>\n\n'
    "[EBA guidance](https://www.eba.europa.eu/)\n"
)


def assert_harmless(html: str) -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    assert "onerror" not in lowered
    assert "onclick" not in lowered
    assert "javascript:" not in lowered
    assert "<iframe" not in lowered
    assert "<img" not in lowered
    assert "style=" not in lowered


def test_markdown_is_rendered():
    html = render_markdown("## Title\n\n- **bold** item\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\ncode\n```")

    assert "<h2>Title</h2>" in html
    assert "<li><strong>bold</strong> item</li>" in html
    assert "<table>" in html and "<td>1</td>" in html
    assert "<pre><code>code" in html


def test_hostile_markup_is_removed_but_the_content_stays():
    html = render_markdown(HOSTILE)

    assert_harmless(html)
    assert "<h2>Reserve rules</h2>" in html
    assert "<strong>reserve assets</strong>" in html
    assert re.search(
        r'<a href="https://www\.eba\.europa\.eu/" rel="noopener noreferrer nofollow">EBA guidance</a>', html
    )


@pytest.mark.parametrize("text", [None, ""])
def test_an_empty_answer_renders_as_nothing(text):
    assert render_markdown(text) == ""


def test_the_streamed_answer_arrives_sanitised(world, fake_anthropic, console):
    fake_anthropic.answer_text = HOSTILE

    response = console(world.globex_member).post(
        "/orgs/globex/insights/", {"query": "Reserves?"}, HTTP_ACCEPT="text/event-stream"
    )
    events = dict(sse_events(response.streaming_content))

    assert_harmless(events["done"]["html"])
    assert "<strong>reserve assets</strong>" in events["done"]["html"]


def test_the_history_on_the_page_is_sanitised(world, fake_anthropic, console):
    fake_anthropic.answer_text = HOSTILE
    client = console(world.globex_member)

    answered = client.post("/orgs/globex/insights/", {"query": "Reserves?"})
    page = client.get(answered["Location"]).content.decode()

    # Our own script tag comes after </main>; everything a model wrote is inside it.
    main = page.split('<main id="main"', 1)[1].split("</main>", 1)[0]
    assert_harmless(main)
    assert main.count("<strong>reserve assets</strong>") == 2  # the answer box and the history
