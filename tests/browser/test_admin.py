"""Django admin as staff see it in a laptop's 1280 px window: the audit, organisations, memberships, users, outbox,
query log and API tokens lists, their widest rows included, with no ordinary word or short value cut; and admin's own
sign-out."""

import pytest
from django.utils import timezone

from insights.models import InsightQuery, KeySource, Outcome, StopReason
from insights.services import INTERRUPTED
from orgs.models import (
    ApiToken,
    AuditAction,
    AuditEvent,
    ClaudeApiKey,
    Membership,
    Organisation,
    OutboxMail,
    Plan,
    Role,
)
from tests.base import GOOD_KEY, make_user
from tests.browser.support import DRAFTS_KEPT, LONG_EMAIL, screenshot, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LONG_ORG = "Finanzdienstleistungsunternehmensgruppe Liechtenstein AG"
# A 1280 px window, less the 17 px its vertical scrollbar takes (Windows' classic one; a list of 100 rows always has
# one): Playwright's headless Chromium hides its own, and the query log, which fitted at 1280, was wider than this.
WINDOW = {"width": 1280 - 17, "height": 860}
# Admin's results box scrolls sideways on its own (overflow-x: auto): the page itself never grows wider.
WIDTH = """() => {
    const box = document.querySelector("#changelist .results");
    const cells = [...box.querySelectorAll("thead th")].map(th => `${th.innerText.trim()}: ${th.offsetWidth}`);
    return {width: box.scrollWidth, room: box.clientWidth, page: document.documentElement.scrollWidth, cells};
}"""
# Each word of the list (headings included) of at most 15 characters, but an e-mail address, that does not sit on one
# line: a plan ("Institutional"), a role, an action, a part of a time, an IPv4 address ("255.255.255.255" is 15), a
# heading. Longer runs (a one-word name, a slug, an address, a request ID, an IPv6 address) may be cut where they must.
CUT_WORDS = """() => {
    const cut = [];
    for (const cell of document.querySelectorAll("#result_list th, #result_list td")) {
        const text = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let node = text.nextNode(); node; node = text.nextNode()) {
            for (const word of node.data.matchAll(/\\S+/g)) {
                if (word[0].length > 15 || word[0].includes("@")) continue;
                const range = document.createRange();
                range.setStart(node, word.index);
                range.setEnd(node, word.index + word[0].length);
                const lines = new Set([...range.getClientRects()].map((line) => Math.round(line.top)));
                if (lines.size > 1) cut.push(word[0]);
            }
        }
    }
    return cut;
}"""


def assert_the_list_fits(page, app, staff, path: str, shown) -> None:
    """Open admin's list at `path` as `staff` in a 1280 px laptop window: it fits the room beside the navigation and
    the filters, the page is no wider than the window, each of `shown` is on screen (nothing cut off to fit), and no
    ordinary word or short value is cut across two lines to make it fit."""
    page.set_viewport_size(WINDOW)
    sign_in(page, app.url, staff.email)
    page.goto(f"{app.url}{path}")
    page.wait_for_load_state("load")
    size = page.evaluate(WIDTH)
    screenshot(page, f"admin-{path.split('/')[3]}-list", docs=False)

    assert size["width"] <= size["room"], f"the list is {size['width']} px wide in {size['room']} px: {size['cells']}"
    assert size["page"] <= WINDOW["width"]
    for text in shown:
        assert page.get_by_text(text, exact=True).first.is_visible(), text
    assert page.evaluate(CUT_WORDS) == []


def test_the_audit_list_fits_a_laptop_screen_with_its_widest_rows(app, page, world):
    # Staff scrolled sideways to read who did it and from where: the rows' longest values, side by side, made the
    # list wider than a 1280 px screen.
    org = Organisation.objects.create(name=LONG_ORG, slug="finanz")
    at = timezone.now().replace(2026, 3, 12, 8, 43)
    for action, detail, via, ip in (
        (
            AuditAction.MEMBER_REMOVED,
            f"{LONG_EMAIL} (Admin; user deleted)",
            "admin",
            "2001:db8:85a3:1234:5678:8a2e:370:7334",
        ),
        (AuditAction.ACCOUNT_DEACTIVATED, f"{LONG_EMAIL} (Owner)", "admin", "203.0.113.254"),
        (
            AuditAction.ROLE_CHANGED,
            f"{LONG_EMAIL}: Member → Admin",
            "console",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:fffe",
        ),
        (AuditAction.KEY_REPLACED, "", "api", "198.51.100.7"),
        (AuditAction.PLAN_CHANGED, "Institutional → Professional", "admin", "255.255.255.255"),
    ):
        event = AuditEvent.objects.create(
            organisation=org, action=action, detail=detail, via=via, ip=ip, actor_email=LONG_EMAIL
        )
        AuditEvent.objects.filter(pk=event.pk).update(created_at=at)

    # Every column still says what it did: nothing is cut off or hidden to make it fit.
    shown = (
        LONG_ORG,
        f"{LONG_EMAIL} (Admin; user deleted)",
        "2001:db8:85a3:1234:5678:8a2e:370:7334",
        "Institutional → Professional",
        "198.51.100.7",
    )
    assert_the_list_fits(page, app, world.staff, "/admin/orgs/auditevent/", shown)


LONG_SLUG = "finanzdienstleistungsunternehmensgruppe-liechtenstein"


@pytest.mark.parametrize(
    "path, shown",
    [
        ("/admin/orgs/organisation/", [LONG_ORG, LONG_SLUG, "Stored, unused on this plan", "Created at"]),
        ("/admin/orgs/membership/", [LONG_EMAIL, LONG_ORG, "Account active"]),
        ("/admin/orgs/user/", [LONG_EMAIL, "Date joined"]),
    ],
)
def test_the_organisations_memberships_and_users_lists_fit_a_laptop_screen(app, page, world, path, shown):
    # As the audit list did: a one-word organisation name, its slug, an e-mail address and a time (kept on one line,
    # as admin keeps every date) side by side made each list wider than the room beside the navigation and the
    # filters; staff scrolled sideways to see when an organisation was made, or whose membership a row was.
    org = Organisation.objects.create(name=LONG_ORG, slug=LONG_SLUG, plan=Plan.PROFESSIONAL)
    ClaudeApiKey.objects.create(organisation=org, secret=GOOD_KEY)
    Membership.objects.create(user=make_user(LONG_EMAIL), organisation=org, role=Role.OWNER)

    assert_the_list_fits(page, app, world.staff, path, shown)


def test_the_outbox_list_fits_a_laptop_screen_with_its_widest_rows(app, page, world):
    # Eight columns: an e-mail address, a subject naming a long organisation, a request ID (32 characters with no space
    # to break at) and three times, each kept on one line by Django, side by side beside the state filter.
    at = timezone.now().replace(2026, 3, 12, 8, 43, 0, 0)
    request_id = "5f0c1e7d9a2b4c6e8f0a1b2c3d4e5f60"
    for state in ({"attempts": 3}, {"sent_at": at}, {"attempts": 20, "given_up_at": at}):
        OutboxMail.objects.create(
            to=LONG_EMAIL,
            subject=f"Claude API key no longer in use for {LONG_ORG}",
            body="…",
            what="claude api key unused after plan change e-mail to user 12345",
            request_id=request_id,
            created_at=at,
            due_at=at,
            **state,
        )

    shown = (LONG_EMAIL, request_id, "Failing — retrying", "Given up", "Request ID", "Sent at")
    assert_the_list_fits(page, app, world.staff, "/admin/orgs/outboxmail/", shown)


def test_the_query_log_fits_a_laptop_screen_with_its_widest_rows(app, page, world):
    # Support asked "why do our queries fail?" read the query log: its outcome, error code, how the answer ended and
    # its tokens were past the list's right edge, behind a sideways scroll, beside the organisation's long name, the
    # asker's long address, "The organisation's own Anthropic key" and a time, each kept on one line.
    org = Organisation.objects.create(name=LONG_ORG, slug="finanz", plan=Plan.INSTITUTIONAL)
    user = make_user(LONG_EMAIL)
    for outcome, error_code, stop_reason, tokens in (
        (Outcome.FAILED, "claude_api_key_invalid", None, None),
        (Outcome.FAILED, INTERRUPTED, None, None),  # a word, not to be cut as an identifier may be
        (Outcome.ANSWERED, "", StopReason.MAX_TOKENS, 4096),
    ):
        InsightQuery.objects.create(
            organisation=org,
            user=user,
            key_source=KeySource.ORGANISATION,
            query="Which reserve rules apply to asset-referenced tokens?",
            outcome=outcome,
            error_code=error_code,
            stop_reason=stop_reason,
            output_tokens=tokens,
        )

    shown = (LONG_ORG, LONG_EMAIL, "claude_api_key_invalid", "Cut short at the length limit", "Output tokens")
    assert_the_list_fits(page, app, world.staff, "/admin/insights/insightquery/", shown)


def test_the_api_tokens_list_fits_a_laptop_screen_with_its_widest_rows(app, page, world):
    # A leaked token is reported by its prefix: staff found it, then scrolled sideways to see when it expires and when
    # it was last used, past a long name, a long address and three times.
    at = timezone.now().replace(2026, 3, 12, 8, 43, 0, 0)
    ApiToken.objects.create(
        user=make_user(LONG_EMAIL),
        name="Compliance reporting pipeline (production, Liechtenstein)",
        token_hash="0" * 64,
        prefix="opsn_AbCdEfG",
        expires_at=at,
        last_used_at=at,
    )

    shown = (LONG_EMAIL, "opsn_AbCdEfG", "Expires at", "Last used at")
    assert_the_list_fits(page, app, world.staff, "/admin/orgs/apitoken/", shown)


def test_signing_out_of_admin_forgets_the_unsent_question_this_tab_kept(app, page, world):
    # A member of staff who is also an organisation's member types a question in AI Insights, goes to admin in the same
    # tab and signs out there: admin's own "Log out" left the question in the tab's storage (only the site's Sign out
    # buttons forgot it), for whoever sits at that computer next.
    Membership.objects.create(user=world.staff, organisation=world.acme, role=Role.MEMBER)
    sign_in(page, app.url, world.staff.email)
    page.goto(f"{app.url}/orgs/acme/insights/")
    page.get_by_label("Your question").fill("Can we delay our MiCAR white paper?")
    page.goto(f"{app.url}/admin/")
    assert page.evaluate(DRAFTS_KEPT) != []

    page.get_by_role("button", name="Log out").click()

    page.wait_for_load_state("load")
    assert page.evaluate(DRAFTS_KEPT) == []
