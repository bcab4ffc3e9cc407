"""Admin's outbox page: what Opsion support staff see of the security e-mails (orgs.outbox) when a customer asks "did
you e-mail us when our key was removed?" or says "we never got it". Read-only for everyone, superusers included."""

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from orgs import outbox
from orgs.models import OutboxMail
from tests.base import CANARY_KEY, make_user
from tests.clients import console

OUTBOX = "/admin/orgs/outboxmail/"
AT = timezone.now().replace(2026, 3, 12, 8, 43, 0, 0)


def page_text(response) -> str:
    """The page's text, as a reader sees it."""
    return html.unescape(" ".join(re.sub(r"<[^>]+>", "", response.content.decode()).split()))


def listed(response) -> list[str]:
    """The recipients of the change list's rows, top to bottom."""
    return re.findall(r'<td class="field-recipient">([^<]+)</td>', response.content.decode())


def mail_row(to: str, *, minutes_ago: int, request_id: str = "", **state) -> OutboxMail:
    """A row as the outbox leaves it (`state`: sent_at, given_up_at, attempts, due_at), written `minutes_ago`."""
    created = AT - timedelta(minutes=minutes_ago)
    row = OutboxMail.objects.create(
        to=to,
        subject="Claude API key removed from Acme Digital Assets",
        body=f"The Claude API key of Acme Digital Assets was removed, to {to}.",
        what="claude api key removed e-mail to user 7",
        request_id=request_id,
        created_at=created,
        due_at=state.pop("due_at", created + outbox.LEASE),
    )
    OutboxMail.objects.filter(pk=row.pk).update(**state)
    row.refresh_from_db()
    return row


@pytest.fixture
def rows(db) -> dict[str, OutboxMail]:
    """One e-mail in each state, written oldest first as the outbox writes them."""
    written = {
        "given_up": mail_row(
            "given-up@acme.test", minutes_ago=5000, attempts=outbox.ATTEMPTS_MAX, given_up_at=AT - timedelta(days=1)
        ),
        "sent": mail_row("sent@acme.test", minutes_ago=60, sent_at=AT - timedelta(minutes=59)),
        "failing": mail_row(
            "failing@acme.test", minutes_ago=30, attempts=3, due_at=AT + timedelta(minutes=4), request_id="req-failing"
        ),
        "waiting": mail_row("waiting@acme.test", minutes_ago=1, request_id="5f0c1e7d9a2b4c6e8f0a1b2c3d4e5f60"),
    }
    return written


@pytest.fixture
def support(world):
    """An Opsion support account: staff, not a superuser, allowed only to view the outbox."""
    user = make_user("support@opsion.test", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_outboxmail"))
    return console(user)


def test_support_staff_who_may_view_the_outbox_see_each_email_its_state_and_times_newest_first(support, rows):
    response = support.get(OUTBOX)

    assert response.status_code == 200
    assert listed(response) == ["waiting@acme.test", "failing@acme.test", "sent@acme.test", "given-up@acme.test"]
    text = page_text(response)
    for shown in (
        "Claude API key removed from Acme Digital Assets",
        "Waiting",
        "Failing — retrying",
        "Sent",
        "Given up",
        "5f0c1e7d9a2b4c6e8f0a1b2c3d4e5f60",
        "12 Mar 2026, 08:42 UTC",  # the waiting row's creation, in UTC as every time in admin
        "12 Mar 2026, 08:47 UTC",  # the failing row's next attempt
        "12 Mar 2026, 07:44 UTC",  # when the sent one went
    ):
        assert shown in text, shown
    for heading in ("Created at", "State", "Recipient", "Subject", "Attempts", "Due at", "Sent at", "Request ID"):
        assert heading in text, heading


def test_a_given_up_emails_own_page_says_what_it_was_for_and_when_it_was_given_up_on(support, rows):
    text = page_text(support.get(f"{OUTBOX}{rows['given_up'].pk}/change/"))

    assert "What: claude api key removed e-mail to user 7" in text
    assert "State: Given up" in text and "Attempts: 20" in text and "Given up at: 11 Mar 2026, 08:43 UTC" in text


def test_an_emails_own_page_is_titled_by_its_subject_and_recipient_not_its_log_name(support, rows):
    # Its log name ("claude api key removed e-mail to user 7", no address, for log lines) titled the page and its
    # breadcrumb: support could not tell from either which e-mail, to whom, they were reading.
    page = html.unescape(support.get(f"{OUTBOX}{rows['sent'].pk}/change/").content.decode())

    title = re.search(r"<title>(.*?)</title>", page, re.S).group(1)
    crumbs = " ".join(re.sub(r"<[^>]+>", "", re.search(r'<div class="breadcrumbs">(.*?)</div>', page, re.S)[1]).split())
    named = "Claude API key removed from Acme Digital Assets, to sent@acme.test"
    assert title.startswith(f"{named} | View outbox e-mail")
    assert crumbs.endswith(f"Outbox e-mails › {named}")


def test_a_sent_or_given_up_email_shows_no_time_it_is_due(support, rows):
    # Its due_at is the last lease or backoff it had: "due" beside "sent" would read as if it were to go again.
    for state in ("sent", "given_up"):
        text = page_text(support.get(f"{OUTBOX}{rows[state].pk}/change/"))
        assert "Due at: - Sent at:" in text, state

    text = page_text(support.get(f"{OUTBOX}{rows['failing'].pk}/change/"))
    assert "Due at: 12 Mar 2026, 08:47 UTC" in text


def test_an_emails_own_page_shows_its_text_and_offers_nothing_to_change_or_delete(support, rows):
    row = rows["failing"]

    response = support.get(f"{OUTBOX}{row.pk}/change/")

    assert response.status_code == 200
    page, text = response.content.decode(), page_text(response)
    assert "The Claude API key of Acme Digital Assets was removed, to failing@acme.test." in text
    assert "State: Failing — retrying" in text and "Attempts: 3" in text and "Request ID: req-failing" in text
    assert "Recipient: failing@acme.test" in text
    assert not re.search(r"<(input|textarea|select)[^>]+name=\"(?!csrfmiddlewaretoken)", page)
    assert 'name="_save"' not in page and "/delete/" not in page


def test_staff_without_the_view_permission_are_refused(world, rows):
    other = make_user("other@opsion.test", is_staff=True)
    other.user_permissions.set(Permission.objects.filter(codename__in=["view_organisation", "view_auditevent"]))
    client = console(other)

    assert client.get(OUTBOX).status_code == 403
    assert client.get(f"{OUTBOX}{rows['sent'].pk}/change/").status_code == 403
    assert "Outbox e-mails" not in client.get("/admin/").content.decode()


@pytest.mark.parametrize(
    "state, choice",
    [("waiting", "Waiting"), ("failing", "Failing — retrying"), ("sent", "Sent"), ("given_up", "Given up")],
)
def test_the_state_filter_lists_only_the_emails_in_that_state(support, rows, state, choice):
    listing = support.get(OUTBOX)
    filtered = support.get(OUTBOX, {"state": state})

    assert f'href="?state={state}"' in listing.content.decode() and choice in page_text(listing)
    assert listed(filtered) == [rows[state].to]


def test_support_find_the_emails_of_a_change_by_its_request_id(world, support, settings):
    # The change's request ID is on its log lines ("… e-mail to user 42 not sent") and in what the user saw.
    settings.EMAIL_CONFIGURED = True
    saved = console(world.acme_admin).post("/orgs/acme/settings/claude-api-key/save", {"api_key": CANARY_KEY})
    mail_row("owner@acme.test", minutes_ago=10, request_id="an-earlier-request")
    request_id = saved["X-Request-ID"]

    found = support.get(OUTBOX, {"q": request_id})

    assert saved.status_code == 302
    assert sorted(listed(found)) == ["admin@acme.test", "owner@acme.test"]
    assert "Claude API key saved for Acme Digital Assets" in page_text(found)
    assert CANARY_KEY[13:45] not in found.content.decode()


def test_support_find_the_emails_sent_to_an_address(support, rows):
    assert listed(support.get(OUTBOX, {"q": "sent@acme.test"})) == ["sent@acme.test"]
    assert listed(support.get(OUTBOX, {"q": "nobody@acme.test"})) == []


def test_no_one_adds_changes_or_deletes_an_email_not_even_a_superuser(world, rows):
    staff, row = console(world.staff), rows["waiting"]
    before = list(OutboxMail.objects.order_by("pk").values())
    staff.raise_request_exception = False

    listing = staff.get(OUTBOX).content.decode()
    assert staff.get(f"{OUTBOX}add/").status_code == 403
    changed = staff.post(f"{OUTBOX}{row.pk}/change/", {"to": "attacker@evil.test", "subject": "x", "body": "x"})
    assert changed.status_code == 403
    assert staff.get(f"{OUTBOX}{row.pk}/delete/").status_code == 403
    assert staff.post(f"{OUTBOX}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [r.pk for r in rows.values()], "post": "yes", "index": 0}
    staff.post(OUTBOX, bulk, follow=True)

    assert "delete_selected" not in listing and 'name="action"' not in listing  # no bulk action offered at all
    assert f"{OUTBOX}add/" not in listing
    assert list(OutboxMail.objects.order_by("pk").values()) == before


@pytest.mark.parametrize("lookup", ["claim", "claim__startswith", "claim__gt"])
def test_the_claim_a_process_holds_an_email_by_cannot_be_read_out_by_a_filter(support, rows, lookup):
    # Never shown; a filter on it (?claim__startswith=a) would read it out a character at a time: refused, a 400.
    OutboxMail.objects.filter(pk=rows["waiting"].pk).update(claim="a" * 32)

    response = support.get(OUTBOX, {lookup: "a"})

    assert response.status_code == 400
    assert "waiting@acme.test" not in response.content.decode()
