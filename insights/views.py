import re
import secrets
from collections.abc import Iterator

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_safe

from insights import ratelimit, services
from insights.http import add_ratelimit_headers, sse, window_json
from insights.rendering import render_markdown
from insights.suggestions import SUGGESTED_QUERIES
from opsion.errors import InvalidRequest, NotFound, Refused, error_json, refused_json
from opsion.reporting import redact
from orgs import access, drafts, guards, landing
from orgs.account_views import SIGNED_IN_LANDING
from orgs.models import Membership
from orgs.views import form_action

ANSWER_ID = re.compile(r"[0-9]{1,18}")
# A plain post that asked a question, for the page its redirect shows (once): see _asked_by_post.
ASKED_BY_POST = "insights_asked_by_post"
HISTORY_PAGE = 10  # entries of "Your recent queries" a page shows; older ones are a link away


def _page(
    request: HttpRequest,
    membership: Membership,
    *,
    status: int = 200,
    answered_id: int | None = None,
    after: int | None = None,
    take_draft: bool = False,
    **extra,
) -> HttpResponse:
    usage = services.usage(membership.organisation)
    # `after` is the last entry of the page before (keyset, as the API pages): queries asked since do not shift the
    # older pages.
    try:
        history = services.recent_queries(membership=membership, limit=HISTORY_PAGE, after=after)
    except InvalidRequest:
        # Another member's, another organisation's or a deleted query: the same answer for each, so the page tells
        # nothing of queries that are not theirs.
        raise Http404() from None
    # Only the page the post's redirect opens (its answer's): another load of the page (another tab; the redirect never
    # followed, its tab closed) is no page of that post's, and leaves the mark for it.
    asked = request.session.get(ASKED_BY_POST)
    if take_draft and asked and (asked.get("path"), asked.get("answered")) == (request.path, answered_id):
        del request.session[ASKED_BY_POST]
        extra |= {"asked_by_post": True, "draft": asked.get("unsent", "")}
    # A question kept across sign-in is taken only now that this page will show it: taken before a 404 (an older
    # queries link naming a query since pruned), it would be lost without ever being put back in the box.
    if take_draft and (kept := drafts.take(request)):
        extra |= {"draft": kept.text, "draft_kept": True, "draft_stale": kept.stale}
    recent = history.items
    # The answer a plain POST redirected to: usually the newest entry; an old link may name an older
    # one, and one that is not this member's (or no longer exists) shows no answer card at all.
    answered = next((q for q in recent if q.pk == answered_id), None)
    if answered is None and answered_id is not None:
        answered = services.own_query(membership=membership, pk=answered_id)
    context = {
        "membership": membership,
        "org": membership.organisation,
        "usage": usage,
        "window": usage.window,
        "limit_reached": usage.limit_reached,
        "suggestions": SUGGESTED_QUERIES,
        "ask_once": secrets.token_urlsafe(12),
        "recent": recent,
        "history_page": HISTORY_PAGE,
        "older_after": recent[-1].pk if history.has_more else None,
        "older_page": after is not None,
        "key_invalid_message": services.KeyInvalid.default_message,
        "key_unreadable_message": services.KeyUnreadable.default_message,
        "answered": answered,
        "support_url": settings.SUPPORT_URL,
        "show_operator_notice": usage.platform_key_missing
        and access.can_see_operator_notices(request.user, membership),
        **extra,
    }
    context["box_described_by"] = _box_described_by(context)
    return add_ratelimit_headers(render(request, "insights/query.html", context, status=status), usage.window)


def _box_described_by(context: dict) -> str:
    """The question box's aria-describedby (ids, space-separated; "" for none). A refusal describes it alone: at the
    limit it says the limit, and the sentence beside the disabled Ask would say it again. Otherwise the status line when
    it says a question was kept across sign-in, and the limit's sentence while Ask waits."""
    if context.get("error"):
        return "answer-error"
    said = ["ask-status"] if context.get("draft_kept") else []
    return " ".join(said + (["ask-limit"] if context["limit_reached"] else []))


# What a question form gone stale (its user signed in again elsewhere) did not do, when its question is not kept
# (opsion.views.csrf_failure): another user's question is not handed back.
@form_action("no question was asked.", own_page=True)
@drafts.sign_in_keeps("query")  # a question posted after the session expired comes back after sign-in
def query_page(request: HttpRequest, slug: str) -> HttpResponse:
    membership = access.membership_or_http404(request.user, slug)
    if request.method in ("GET", "HEAD"):
        answered = request.GET.get("answered", "")
        after = _older_than(request)
        answered_id = int(answered) if ANSWER_ID.fullmatch(answered) else None
        # A HEAD leaves a question kept across sign-in for the page itself.
        take_draft = request.method == "GET"
        signed_in_here = take_draft and request.session.pop(SIGNED_IN_LANDING, None) == request.path
        page = _page(
            request,
            membership,
            answered_id=answered_id,
            after=after,
            take_draft=take_draft,
            signed_in_landing=signed_in_here,
        )
        return landing.opened(request, membership, page)
    # A suggestion button (the no-JavaScript path) asks its own question, whatever the box holds.
    text = request.POST.get("suggestion") or request.POST.get("query", "")
    wants_stream = "text/event-stream" in request.headers.get("Accept", "")
    form_id = None if wants_stream else _ask_form_id(request, text)
    if form_id and not guards.claim_form(user=request.user, form_id=form_id):
        # A double click without JavaScript (the script disables Ask instead): the question is asked, and
        # billed, once. The browser shows this second response; the first one's answer is in the history.
        messages.info(request, ALREADY_ASKED)
        _asked_by_post(request, text, answered=None)
        return redirect("insights:query", slug)
    pending = None
    try:
        pending = services.start(membership=membership, text=text)
        if wants_stream:
            return _stream(pending)
        pending.answer()
    except NotFound:
        # Removed from the organisation (or deactivated) as the question waited: a non-member's page, nothing asked.
        if form_id:
            guards.release_form(user=request.user, form_id=form_id)
        raise Http404("No such organisation.") from None
    except Refused as refused:
        if form_id:
            # Refused (over the limit, say) or failed (Anthropic's own limit: "try again in 30 seconds"): there
            # is no answer, so sending this form again (a reload re-posts it) must ask the question, not say it
            # was asked and its answer is in the history.
            guards.release_form(user=request.user, form_id=form_id)
        if wants_stream:
            # At the limit, also the sentence the page then says beside its disabled Ask, so the script says the same,
            # and whose key's limit refused it, which the meter names beside that limit (a key removed since the page
            # loaded lowers the limit to the platform key's).
            said = None
            if isinstance(refused, ratelimit.RateLimited):
                said = {"limitReached": limit_sentence(refused), "keySource": refused.key_source}
            response = refused_json(refused, extra=said)
            return add_ratelimit_headers(response, services.window_after(refused, membership.organisation))
        # What was typed stays in the box, even when a suggestion button sent its own question instead; a key or token
        # pasted there (refused as query_holds_secret) blanked: the page sends none back, even to its typist.
        typed = request.POST.get("query", "")
        draft = redact(typed if typed.strip() else text)
        # The part of an answer that arrived before it failed, shown under the error as the streaming page shows it.
        partial = pending.row.answer if pending else ""
        page = _page(
            request,
            membership,
            status=refused.status,
            error=refused,
            draft=draft,
            partial=partial,
            partial_retry=services.retry_helps(refused),
        )
        if refused.retry_after is not None:
            page["Retry-After"] = str(refused.retry_after)
        return page
    _asked_by_post(request, text, answered=pending.row.pk)
    # Every insights response carries the RateLimit fields, the redirect after a plain POST included.
    answered = redirect(f"{reverse('insights:query', args=[slug])}?answered={pending.row.pk}#answer")
    return add_ratelimit_headers(answered, pending.window)


def _asked_by_post(request: HttpRequest, asked: str, *, answered: int | None) -> None:
    """Tell the page the redirect shows (`?answered=<answered>`, or the plain page) that a plain post (no script ran on
    the page: it failed to load, or was turned off) asked `asked`. That page's script then drops the question the tab
    kept (sessionStorage) from before: the box's whole text was posted, so what the tab kept is what was just sent, or
    an older wording of it (a box filled by Back, then rewritten), and would otherwise come back in the empty box as if
    unsent. A question typed in the box and left unsent by a suggestion button, which asks its own, goes back in the
    box. Kept in the session, a database row, a Claude API key or an API token pasted there (which asking would
    refuse) is blanked, and a question too long to ask is cut, as drafts.keep does."""
    typed = request.POST.get("query", "")
    unsent = drafts.bounded(redact(typed)) if typed.strip() and typed != asked else ""
    request.session[ASKED_BY_POST] = {"path": request.path, "answered": answered, "unsent": unsent}


def _older_than(request: HttpRequest) -> int | None:
    """The query "Show older queries" pages back from (`?after=<id>`), or None for the newest page. Raises Http404
    for a value that is no id at all, as Django's own paginator does for a page that is no number."""
    after = request.GET.get("after", "")
    if not after:
        return None
    if not ANSWER_ID.fullmatch(after):
        raise Http404()
    return int(after)


ALREADY_ASKED = (
    "That question was sent twice, so it was asked once: its answer appears in “Your recent queries” "
    "(reload in a moment if it is still being written)."
)


def _ask_form_id(request: HttpRequest, text: str) -> str | None:
    """What a plain post of the form claims, so it sends its question once: the page's one-time value (`once`)
    with the question, so the same form may still ask a different one (a page restored by Back). None from a
    form without one."""
    once = request.POST.get("once", "")
    if not once:
        return None
    return f"ask:{guards.form_id(once, text)}"


def _stream(pending: services.PendingQuery) -> StreamingHttpResponse:
    """Server-Sent Events: `start`, then `delta`s as Claude writes, then `done` (safe HTML) or `error`.

    `done` also says how Claude ended the answer (`stopReason`) and carries the notice shown before one it did not
    finish (`notice`: cut short at the length limit, or declined; empty for a whole answer), rendered by the
    page's own template.

    `usage`, last, is the window once the answer is recorded; at the limit it also carries what the page says beside
    its disabled Ask (`limitReached`, rendered by the page's own template), so the script can say and do the same.

    `error` also carries the part of the answer that arrived, rendered (`html`, possibly empty), and, when there
    is one, the notice saying it is only part (`notice`), shown before it as `done`'s is. Both
    `done` and `error` carry the query's entry for "Your recent queries" (`historyItem`),
    rendered by the same template as the page, so the list the browser shows is the one a reload
    would show, failed queries included.
    """

    def history_item() -> str:
        return render_to_string("insights/_history_item.html", {"q": pending.row})

    def notice() -> str:
        return render_to_string("insights/_stop_notice.html", {"q": pending.row}).strip()

    def events() -> Iterator[bytes]:
        try:
            # Whose key answers: the meter says it, and it may have changed since the page loaded (a key saved or
            # removed by another Admin), as the limit may.
            start = {"id": pending.row.pk, "used": pending.window.used, "rateLimit": window_json(pending.window)}
            yield sse("start", start | {"keySource": pending.choice.source})
        except GeneratorExit:
            pending.answer_unread()  # the reader left before Claude was asked: the query counts all the same
            raise
        answer = pending.stream()
        try:
            for text in answer:
                yield sse("delta", {"text": text})
        except GeneratorExit:
            answer.close()  # the reader left: now, not whenever the generator is collected
            raise
        except Refused as refused:
            # What arrived before the failure, rendered as the history will show it.
            partial = str(render_markdown(pending.row.answer)) if pending.row.answer else ""
            retry = {"retry": services.retry_helps(refused)}
            said = render_to_string("insights/_partial_notice.html", retry).strip() if partial else ""
            error = {"code": refused.code, "message": refused.message, "html": partial, "notice": said}
            yield sse("error", error | {"historyItem": history_item()})
        else:
            html = str(render_markdown(pending.row.answer))
            done = {"id": pending.row.pk, "html": html, "stopReason": pending.row.ended, "notice": notice()}
            yield sse("done", done | {"historyItem": history_item()})
        yield sse("usage", usage_json(services.usage(pending.row.organisation)))

    response = StreamingHttpResponse(events(), content_type="text/event-stream")
    response["X-Accel-Buffering"] = "no"
    return add_ratelimit_headers(response, pending.window)


SIGNED_OUT = "Your session has ended. Sign in again to go on."


@require_safe
def usage_read(request: HttpRequest, slug: str) -> JsonResponse:
    """The window as the page's script reads it again (a query freed up, a stream ended without saying how the window
    stands): the stream's `usage`, with the refusal the next query would meet in the page's own words, so the meter
    and Ask can say the same. Signed out, a JSON 401 `unauthenticated` (not the sign-in redirect, which fetch follows
    to a page of HTML): the script then says the session ended, rather than take it for a failed read."""
    if not request.user.is_authenticated:
        # Before the organisation is looked up: a signed-out request learns nothing of which ones exist.
        response = error_json("unauthenticated", SIGNED_OUT, 401)
        response["WWW-Authenticate"] = session_challenge()
        return response
    membership = access.membership_or_http404(request.user, slug)
    usage = services.usage(membership.organisation)
    return add_ratelimit_headers(JsonResponse(usage_json(usage)), usage.window)


def session_challenge() -> str:
    """The usage read's 401 challenge (RFC 9110 requires one): it reads only the session, signed in on the sign-in
    page, so it names that page in the `Cookie` scheme of draft-broyer-http-cookie-auth, registered nowhere. Not
    `Bearer` (the API's, whose getUsage reads a token: this read would refuse one as it came) and not `Basic`, which
    would open a browser's own sign-in dialog."""
    return f'Cookie form-action="{resolve_url(settings.LOGIN_URL)}"'


def usage_json(usage: services.Usage) -> dict:
    """The stream's last event, `usage`, and the page's usage read: the window, whose key answers now (`keySource`: a
    key saved or removed since the page loaded), and `limitReached` at the limit."""
    return {
        "used": usage.window.used,
        **window_json(usage.window),
        "keySource": usage.key_source,
        **limit_reached(usage),
    }


def limit_reached(usage: services.Usage) -> dict:
    """The stream's `limitReached`: at the limit, the refusal the next query would meet, as the page says it beside
    Ask (the limiter's message and time, rendered by the page's template); nothing while a query fits."""
    if (refused := usage.limit_reached) is None:
        return {}
    return {"limitReached": limit_sentence(refused)}


def limit_sentence(refused: Refused) -> str:
    """A refusal at the limit as the page says it beside a disabled Ask: the limiter's message and time, rendered by
    the page's template (safe HTML; the time in `.retry-in`, which the script counts down)."""
    return render_to_string("insights/_limit_reached.html", {"refused": refused}).strip()
