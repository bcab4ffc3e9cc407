"""Model answers as safe HTML: Markdown rendered, then sanitised so an answer cannot inject script or markup.

CommonMark (markdown-it-py), as Claude writes it: a list may start straight after a line of text and
nest by two or three spaces (Python-Markdown needed a blank line and four, and ran such lists into one
paragraph). Tables, strikethrough and bare http(s):// addresses as links, as in GitHub's flavour.
"""

from functools import cache, lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

ALLOWED_TAGS = {
    "p",
    "br",
    "hr",
    "strong",
    "em",
    "s",  # ~~struck~~ (markdown-it writes <s>): a withdrawn figure must not read as a current one
    "code",
    "pre",
    "blockquote",
    "ul",
    "ol",
    "li",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "table",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "a",
    "div",
}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
ALIGNMENTS = {"left", "center", "right"}


# An answer sits under the page's own headings (the card's "Answer" is an h2).
CARD_HEADING = 2


def _place_headings(tokens) -> None:
    """Set each heading's level so that the answer's highest becomes an h3, whatever level Claude wrote it at
    (usually "##"), and no heading is more than one level below the one before it: heading navigation goes
    from the card's h2 through the answer without a gap (WCAG 1.3.1)."""
    levels = [int(t.tag[1]) for t in tokens if t.type == "heading_open"]
    if not levels:
        return
    shift, previous = CARD_HEADING + 1 - min(levels), CARD_HEADING
    for token in tokens:
        if token.type == "heading_open":
            previous = min(6, int(token.tag[1]) + shift, previous + 1)
            token.tag = f"h{previous}"
        elif token.type == "heading_close":
            token.tag = f"h{previous}"


def _table_open(renderer, tokens, idx, options, env):
    # A box of its own to scroll in on narrow screens, reachable by keyboard (an allowed tag below).
    return '<div class="prose__table" tabindex="0" role="region" aria-label="Table">' + renderer.renderToken(
        tokens, idx, options, env
    )


def _table_close(renderer, tokens, idx, options, env):
    return renderer.renderToken(tokens, idx, options, env) + "</div>"


def _cell_open(renderer, tokens, idx, options, env):
    # A column aligned in Markdown ("--:" for amounts) comes as style="text-align:right", which the sanitiser drops
    # (and the CSP would refuse): the cell's align attribute says the same, one of the three values allowed below.
    token = tokens[idx]
    style = token.attrGet("style") or ""
    if style.startswith("text-align:"):
        token.attrs.pop("style")
        token.attrSet("align", style.removeprefix("text-align:"))
    return renderer.renderToken(tokens, idx, options, env)


def _link_open(renderer, tokens, idx, options, env):
    # A link with words of its own ("[the Q&A](https://…)") prints its address after them (the print style): on
    # paper the words alone lead nowhere. An address written out (linkify's, or <https://…>) is already its words.
    if tokens[idx].info != "auto":
        tokens[idx].attrSet("class", "named-link")
    return renderer.renderToken(tokens, idx, options, env)


def _image(renderer, tokens, idx, options, env):
    # An image would load from wherever the answer points (a tracking pixel, an address Claude made up), so none is
    # shown; its alt text is, in square brackets, so the words it stood for stay in the answer. One without words is
    # "[image]": inside a link (a badge) nothing else would name the link.
    alt = renderer.renderInlineAsText(tokens[idx].children or [], options, env).strip()
    return f"[{escapeHtml(alt or 'image')}]"


@cache
def _parser() -> MarkdownIt:
    # HTML in an answer is shown as the text it is: answers are full of placeholders like <Company Name>,
    # which as markup would vanish. (nh3 below still guards what the renderer itself produces.)
    md = MarkdownIt("commonmark", {"html": False, "linkify": True}).enable(["table", "strikethrough", "linkify"])
    md.linkify.set({"fuzzy_link": False})  # http(s)://… only (not www.… either): "report.md" is a file name, not a site
    for rule, render in [
        ("table_open", _table_open),
        ("table_close", _table_close),
        ("th_open", _cell_open),
        ("td_open", _cell_open),
        ("link_open", _link_open),
        ("image", _image),
    ]:
        md.add_render_rule(rule, render)
    return md


# An answer is rendered where it is shown: a streamed answer's `done` event and its history entry, a
# page's answer box and its history, every reload. Answers are short (ANTHROPIC_MAX_TOKENS), so a few
# hundred of them rendered are a few megabytes per process; parsing and sanitising them again is not free.
@lru_cache(maxsize=256)
def render_markdown(text: str) -> SafeString:
    md = _parser()
    tokens = md.parse(text or "")
    _place_headings(tokens)
    html = md.renderer.render(tokens, md.options, {})
    clean = nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        # The table box, and nothing else a div could carry: not even another class. A link's one class.
        tag_attribute_values={
            "div": {"class": {"prose__table"}, "tabindex": {"0"}, "role": {"region"}, "aria-label": {"Table"}},
            "a": {"class": {"named-link"}},
            "th": {"align": ALIGNMENTS},
            "td": {"align": ALIGNMENTS},
        },
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
    )
    return mark_safe(clean)  # noqa: S308 - sanitised by nh3 just above
