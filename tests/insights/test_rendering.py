"""Model answers are Markdown rendered to sanitised HTML: an answer cannot inject script or markup."""

import re
from html.parser import HTMLParser

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


class _Markup(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def assert_harmless(html: str) -> None:
    """No element or attribute that could run script or change the page; text that merely reads like
    markup (escaped, so shown as written) is harmless and allowed."""
    for tag, attrs in _Markup(html).tags:
        assert tag not in {"script", "iframe", "img", "style", "object", "embed"}, tag
        assert not any(name.startswith("on") or name == "style" for name in attrs), (tag, attrs)
        assert not (attrs.get("href") or "").strip().lower().startswith(("javascript:", "data:", "vbscript:"))
    assert "<script" not in html.lower() and "<iframe" not in html.lower()


def test_markdown_is_rendered():
    html = render_markdown("## Title\n\n- **bold** item\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\ncode\n```")

    assert "<h3>Title</h3>" in html
    assert "<li><strong>bold</strong> item</li>" in html
    assert "<table>" in html and "<td>1</td>" in html
    assert "<pre><code>code" in html


CLAUDE_STYLE = (
    "Key requirements:\n"
    "- Submit an application to the NCA\n"
    "- Hold own funds\n"
    "  - EUR 50,000 for class 1\n"
    "  - EUR 125,000 for class 2\n"
    "Steps:\n"
    "1. Prepare the white paper\n"
    "2. Notify it\n"
    "   - at least 20 working days ahead\n"
)


def test_lists_render_as_claude_writes_them_without_blank_lines_and_with_narrow_indents():
    # Claude starts lists straight after a line of text and nests them by two or three spaces.
    html = render_markdown(CLAUDE_STYLE)

    assert "<p>Key requirements:</p>\n<ul>" in html
    assert "<li>Hold own funds\n<ul>\n<li>EUR 50,000 for class 1</li>" in html
    assert "<ol>\n<li>Prepare the white paper</li>" in html
    assert "<li>Notify it\n<ul>\n<li>at least 20 working days ahead</li>" in html
    assert "- " not in html.replace("<", " <")  # no list marker left as text


def test_bare_urls_become_links_and_tables_stay_tables():
    html = render_markdown(
        "See https://eur-lex.europa.eu/eli/reg/2023/1114/oj.\n\n| Art. | Topic |\n|---|:--|\n| 36 | Reserve |"
    )

    assert (
        '<a href="https://eur-lex.europa.eu/eli/reg/2023/1114/oj" rel="noopener noreferrer nofollow">'
        "https://eur-lex.europa.eu/eli/reg/2023/1114/oj</a>." in html
    )
    assert "<th>Art.</th>" in html and '<td align="left">Reserve</td>' in html  # written ":--"
    assert '<div class="prose__table" tabindex="0" role="region" aria-label="Table"><table>' in html
    assert "</table>\n</div>" in html


def test_placeholders_in_angle_brackets_are_shown_not_dropped_as_unknown_tags():
    html = render_markdown("Address it to <Company Name> Ltd; replace <your-api-key> and <issuer-LEI>.")

    assert (
        html == "<p>Address it to &lt;Company Name&gt; Ltd; replace &lt;your-api-key&gt; and &lt;issuer-LEI&gt;.</p>\n"
    )


def test_markup_hidden_in_a_link_title_stays_inside_it():
    # Anything done to the HTML after sanitising could turn text in an attribute into live markup.
    html = render_markdown(
        'See [the rules](https://example.com "<table><img src=x onerror=alert(1)><div class=evil tabindex=9>").'
    )

    assert_harmless(html)
    assert [tag for tag, _ in _Markup(html).tags] == ["p", "a"]


def test_only_full_addresses_become_links_not_file_names():
    html = render_markdown("See report.md, settings.py and MiCA.eu, or https://eba.europa.eu.")

    assert [attrs.get("href") for tag, attrs in _Markup(html).tags if tag == "a"] == ["https://eba.europa.eu"]


def test_a_table_box_is_the_only_div_an_answer_can_hold():
    html = render_markdown('<div class="prose__table x" tabindex="-1" onclick="a()">raw</div>\n\n| a |\n|---|\n| 1 |')

    divs = [attrs for tag, attrs in _Markup(html).tags if tag == "div"]
    assert divs == [{"class": "prose__table", "tabindex": "0", "role": "region", "aria-label": "Table"}]


def test_an_answers_headings_sit_just_below_the_pages_own_and_never_skip_a_level():
    # The answer card's title is an h2: the answer's highest heading is an h3, whatever level it was written at,
    # and none is more than one level below the one before it (WCAG 1.3.1).
    assert (
        render_markdown("# Scope\n## Article 59\n###### Note") == "<h3>Scope</h3>\n<h4>Article 59</h4>\n<h5>Note</h5>\n"
    )
    assert render_markdown("### Short\n\nYes.\n\n# Details") == "<h3>Short</h3>\n<p>Yes.</p>\n<h3>Details</h3>\n"
    assert render_markdown("## Scope\n### Article 59") == "<h3>Scope</h3>\n<h4>Article 59</h4>\n"
    assert render_markdown("#### Only\n\ntext") == "<h3>Only</h3>\n<p>text</p>\n"


def test_hostile_markup_is_removed_but_the_content_stays():
    html = render_markdown(HOSTILE)

    assert_harmless(html)
    assert "<h3>Reserve rules</h3>" in html
    assert "<strong>reserve assets</strong>" in html
    assert re.search(
        r'<a href="https://www\.eba\.europa\.eu/" class="named-link" rel="noopener noreferrer nofollow">'
        r"EBA guidance</a>",
        html,
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


def test_a_streamed_answer_is_rendered_once_for_its_done_event_and_its_history_entry(world, fake_anthropic, console):
    render_markdown.cache_clear()

    response = console(world.globex_member).post(
        "/orgs/globex/insights/", {"query": "Reserves?"}, HTTP_ACCEPT="text/event-stream"
    )
    events = dict(sse_events(response.streaming_content))

    assert "<strong>" in events["done"]["html"] and "<strong>" in events["done"]["historyItem"]
    assert (render_markdown.cache_info().misses, render_markdown.cache_info().hits) == (1, 1)


def test_the_history_on_the_page_is_sanitised(world, fake_anthropic, console):
    fake_anthropic.answer_text = HOSTILE
    client = console(world.globex_member)

    answered = client.post("/orgs/globex/insights/", {"query": "Reserves?"})
    page = client.get(answered["Location"]).content.decode()

    # Our own script tag comes after </main>; everything a model wrote is inside it.
    main = page.split('<main id="main"', 1)[1].split("</main>", 1)[0]
    assert_harmless(main)
    assert main.count("<strong>reserve assets</strong>") == 2  # the answer box and the history


def test_a_link_with_words_of_its_own_is_marked_to_print_its_address_and_a_bare_address_is_not():
    # On paper "the Q&A" leads nowhere: the print style sets the address after such a link, never after an address
    # that is already its own words.
    html = render_markdown("See [ESMA's Q&A](https://www.esma.europa.eu/qa), <https://eba.europa.eu> and https://x.eu.")

    links = [attrs for tag, attrs in _Markup(html).tags if tag == "a"]
    assert [link.get("class") for link in links] == ["named-link", None, None]
    assert [link["href"] for link in links] == [
        "https://www.esma.europa.eu/qa",
        "https://eba.europa.eu",
        "https://x.eu",
    ]


def test_an_answer_cannot_give_its_own_markup_the_named_link_class():
    html = render_markdown('<a class="named-link" href="https://x.eu">x</a> and <p class="named-link">y</p>')

    assert [attrs for tag, attrs in _Markup(html).tags if "class" in attrs] == []  # shown as text, not markup


def test_text_claude_strikes_through_stays_struck_through():
    # "~~Article 45~~ Article 46": shown without its strike, the withdrawn reference reads as a current one.
    html = render_markdown("The threshold is ~~EUR 5 million~~ EUR 15 million.")

    assert html == "<p>The threshold is <s>EUR 5 million</s> EUR 15 million.</p>\n"


def test_a_tables_column_alignment_is_kept_without_a_style_attribute():
    # Markdown's ":--:" and "--:" (amounts, percentages) come out of the parser as style attributes, which the
    # sanitiser drops (and the CSP would refuse): each becomes the cell's align attribute instead.
    html = render_markdown("| Class | Own funds | Note |\n|---|--:|:-:|\n| 1 | EUR 75,000 | a |")

    assert_harmless(html)
    assert '<th>Class</th>\n<th align="right">Own funds</th>\n<th align="center">Note</th>' in html
    assert '<td>1</td>\n<td align="right">EUR 75,000</td>\n<td align="center">a</td>' in html


def test_an_image_in_an_answer_keeps_its_words_and_loads_nothing():
    # An image would load from wherever the answer points (a tracking pixel, an address Claude made up): it is not
    # shown, but the words it stands for are, as a reader would expect of text in the answer.
    html = render_markdown("The structure:\n\n![Organisation chart of the <CASP>](https://example.com/chart.png)\n")

    assert_harmless(html)
    assert "<img" not in html and "example.com/chart.png" not in html
    assert "Organisation chart of the &lt;CASP&gt;" in html


def test_an_image_without_words_leaves_a_link_around_it_something_to_read():
    # A badge linking somewhere ([![](badge.svg)](https://…)): without the image the link would have no name at all,
    # an empty link a screen reader announces as "link" and a sighted reader cannot see.
    html = render_markdown("Status: [![](https://example.com/badge.svg)](https://example.com/status) and ![](x.png)")

    assert_harmless(html)
    assert re.search(r'<a href="https://example.com/status"[^>]*>\[image\]</a>', html), html
    assert html.count("[image]") == 2
