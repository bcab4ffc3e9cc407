"""Forgot your password? A one-use link by e-mail, which says nothing about whether an address has an account."""

import logging
import re
import smtplib
import threading
import zlib
from datetime import datetime, timedelta

import pytest
from django.contrib.auth.tokens import default_token_generator
from django.core.mail.backends import locmem
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import set_script_prefix
from django.utils import timezone

from orgs import mailer, services
from orgs.drafts import typed_by
from orgs.models import OutboxMail, User
from tests.base import PASSWORD, make_user
from tests.clients import bearer, console

LOGIN = "/accounts/login/"
RESET = "/accounts/password/reset/"
SENT = "/accounts/password/reset/sent/"
DONE = "/accounts/password/reset/done/"
NEW = "a-New-passw0rd-for-acme"
LINK = re.compile(r"(https?)://([^/\s]+)(/accounts/password/reset/[\w-]+/[\w-]+/)")
ASK_SUPPORT = "Ask Opsion support to set a new password for you"
CHECK_INBOX = "If an Opsion account uses that address, an e-mail with a link to choose a new password is on its way"
LOCKED = "Too many password reset requests. Please try again in "
DAY = timedelta(days=1)


def ask(address: str, client: Client | None = None, **extra):
    """Post the address, then wait for the mail thread to send what it was given (the answer does not)."""
    response = ask_only(address, client, **extra)
    assert mailer.wait(timeout=10), "the mail thread is still sending"
    return response


def ask_only(address: str, client: Client | None = None, **extra):
    return (client or Client()).post(RESET, {"email": address}, **extra)


class HeldBackend(locmem.EmailBackend):
    """Django's test outbox, where each send waits until the test releases it (10 s at most, then it fails)."""

    sending = threading.Event()  # a send has started
    release = threading.Event()
    finished = threading.Event()  # a send has ended, sent or not

    def send_messages(self, messages):
        HeldBackend.sending.set()
        try:
            if not HeldBackend.release.wait(10):
                raise TimeoutError("the test never released this send")
            return super().send_messages(messages)
        finally:
            HeldBackend.finished.set()


class RefusingBackend(locmem.EmailBackend):
    """A mail server refusing the recipient, its error quoting the address and the whole message."""

    def send_messages(self, messages):
        message = messages[0]
        raise smtplib.SMTPRecipientsRefused({message.to[0]: (550, message.body.encode())})


@pytest.fixture
def held(mail, settings):
    """Mail sent through HeldBackend: every send waits for `held.release`."""
    for event in (HeldBackend.sending, HeldBackend.release, HeldBackend.finished):
        event.clear()
    settings.EMAIL_BACKEND = f"{__name__}.HeldBackend"
    yield HeldBackend
    HeldBackend.release.set()  # never leave the mail thread waiting
    assert mailer.wait(timeout=10)


def link_in(message) -> str:
    match = LINK.search(message.body)
    assert match, message.body
    return match[3]


def set_password(client: Client, link: str, new: str = NEW, again: str | None = None, **extra):
    opened = client.get(link)
    assert opened.status_code == 302, opened.content.decode()[:2000]  # the token moves into the session
    return client.post(opened["Location"], {"new_password1": new, "new_password2": again or new, **extra})


# --- Without mail ---------------------------------------------------------------------------------------------------


def test_without_mail_the_sign_in_page_offers_no_reset(db):
    assert "Forgot your password?" not in Client().get(LOGIN).content.decode()


def test_without_mail_every_reset_address_says_to_ask_opsion_support_and_nothing_is_ever_sent(world, mailoutbox):
    link = f"/accounts/password/reset/MQ/{default_token_generator.make_token(world.acme_member)}/"  # any link
    for url in (RESET, SENT, link, DONE):
        page = Client().get(url).content.decode()
        assert ASK_SUPPORT in page, url
        assert "on its way" not in page and "<form" not in page.split("<main", 1)[1], url
        assert "No e-mail was sent." not in page, url  # nothing was asked for yet

    posted = ask("member@acme.test")

    assert posted.status_code == 200
    page = posted.content.decode()
    assert "No e-mail was sent." in page and ASK_SUPPORT in page
    assert mailoutbox == []


def test_without_mail_the_page_links_to_support_when_there_is_an_address_for_it(db, settings):
    settings.SUPPORT_URL = "mailto:support@opsion.example"

    page = Client().get(RESET).content.decode()

    assert '<a href="mailto:support@opsion.example">Ask Opsion support</a>' in page


# --- Asking for a link ----------------------------------------------------------------------------------------------


def test_the_sign_in_page_links_to_the_reset_page(db, mail):
    page = Client().get(LOGIN).content.decode()

    assert f'<a href="{RESET}" data-carry-address="id_username">Forgot your password?</a>' in page


def test_the_sign_in_page_answering_a_question_posted_after_the_session_expired_links_to_it_too(world, mail):
    page = (
        Client()
        .post("/orgs/acme/insights/", {"query": "A question", "draft_by": typed_by(world.acme_member)})
        .content.decode()
    )

    assert 'name="draft"' in page  # that sign-in page (orgs.drafts)
    assert f'<a href="{RESET}" data-carry-address="id_username">Forgot your password?</a>' in page


def test_the_reset_page_asks_for_the_address(db, mail):
    page = Client().get(RESET).content.decode()

    assert '<input type="email" name="email"' in page and 'autocomplete="email"' in page
    assert "Forgot your password?" in page


def test_a_known_address_gets_one_plain_text_email_naming_opsion_and_how_long_the_link_lasts(world, mail):
    response = ask("Member@ACME.test ")  # however it is typed

    assert (response.status_code, response["Location"]) == (302, SENT)
    assert len(mail) == 1
    message = mail[0]
    assert message.to == ["member@acme.test"]
    assert message.from_email == "Opsion <no-reply@opsion.example>"
    assert message.subject == "Reset your Opsion password"
    assert message.alternatives == [] and message.content_subtype == "plain"
    assert "Opsion" in message.body and "works once, for 1 hour" in message.body
    assert LINK.search(message.body).group(1, 2) == ("http", "testserver")
    assert "If you did not ask for this, ignore this e-mail" in message.body
    # member@acme.test holds no API token, so the e-mail says nothing of tokens (as the link's page offers nothing).
    assert "Once you set it, every browser signed in as you is signed out." in " ".join(message.body.split())
    assert "token" not in message.body.replace(LINK.search(message.body)[0], "").lower()
    assert "&" not in message.body.replace(LINK.search(message.body)[0], "")  # plain text: nothing HTML-escaped


def test_the_email_says_api_tokens_keep_working_only_to_an_account_whose_tokens_still_work(world, mail):
    services.api_token_create(user=world.acme_member, name="expired", expires_in_days=1, now=timezone.now() - DAY * 2)
    ask("member@acme.test")
    services.api_token_create(user=world.acme_member, name="ci")
    ask("member@acme.test")

    with CaptureQueriesContext(connection) as known:
        ask("member@acme.test")
    with CaptureQueriesContext(connection) as unknown:
        ask("nobody@acme.test")

    # Counted in the query that looks the account up: a known address costs the request no query more.
    assert len(known.captured_queries) == len(unknown.captured_queries)
    expired_only, working, _ = (" ".join(message.body.split()) for message in mail)
    assert "every browser signed in as you is signed out." in expired_only and "API token" not in expired_only
    assert (
        "every browser signed in as you is signed out; your API tokens keep working unless you choose to revoke them "
        "there too." in working
    )


def test_the_check_your_inbox_page_says_what_to_expect(db, mail):
    client = Client()
    assert ask("nobody@acme.test", client)["Location"] == SENT
    page = client.get(SENT).content.decode()

    assert CHECK_INBOX in page
    assert "The link works once, for 1 hour." in page
    assert f'href="{RESET}"' in page  # ask again


def test_the_check_your_inbox_page_links_to_support_when_there_is_an_address_for_it(db, mail, settings):
    # "Still nothing: ask Opsion support." is the page's last resort: with an address for support, it is a link.
    settings.SUPPORT_URL = "mailto:support@opsion.example"
    client = Client()
    ask("nobody@acme.test", client)

    page = client.get(SENT).content.decode()

    assert 'Still nothing: <a href="mailto:support@opsion.example">ask Opsion support</a>.' in page


def test_check_your_inbox_opened_by_its_address_alone_goes_to_the_reset_form(db, mail):
    # Nothing was asked for in this browser: "an e-mail … is on its way" would be untrue.
    response = Client().get(SENT)

    assert (response.status_code, response["Location"]) == (302, RESET)


def test_check_your_inbox_still_shows_on_reload_after_asking(db, mail):
    client = Client()
    ask("member@acme.test", client)

    assert CHECK_INBOX in client.get(SENT).content.decode()
    assert CHECK_INBOX in client.get(SENT).content.decode()


def test_the_password_changed_page_opened_by_its_address_alone_goes_to_sign_in(db, mail):
    # "Your password was changed." when nothing was changed would mislead: the page only follows a reset.
    response = Client().get(DONE)

    assert (response.status_code, response["Location"]) == (302, LOGIN)


def test_the_password_changed_page_opened_by_its_address_while_signed_in_says_nothing_was_changed(world, mail):
    response = console(world.acme_owner).get(DONE)

    assert (response.status_code, response["Location"]) == (302, LOGIN)


def test_a_refused_reset_request_does_not_open_check_your_inbox(world, mail):
    client = Client()
    for _ in range(5):
        ask("member@acme.test", client, REMOTE_ADDR="198.51.100.7")
    client = Client()
    refused = ask_only("member@acme.test", client, REMOTE_ADDR="198.51.100.7")
    assert refused.status_code == 429

    assert client.get(SENT)["Location"] == RESET


def test_the_answer_is_the_same_for_a_known_an_unknown_and_a_deactivated_address(world, mail):
    make_user("gone@acme.test", is_active=False)
    answers = {}
    for address in ("member@acme.test", "nobody@acme.test", "gone@acme.test"):
        client = Client()
        response = ask(address, client)
        page = client.get(response["Location"]).content.decode()
        answers[address] = (response.status_code, response["Location"], page)

    assert len(set(answers.values())) == 1, answers
    assert [m.to for m in mail] == [["member@acme.test"]]


def test_no_answer_waits_for_the_mail_server_whether_or_not_the_address_has_an_account(world, mail, held):
    # The send happens on the mail thread: the answer for an address with an account arrives while its e-mail is
    # still held at the mail server, and so do those for an unknown address and for another account behind it. So
    # neither the answer nor when the connection closes (nor the next request on it) says whether a mail was sent.
    known = ask_only("member@acme.test")

    assert held.sending.wait(5)  # that e-mail is being sent, and held there
    unknown = ask_only("nobody@acme.test")
    queued = ask_only("owner@acme.test")

    assert [(r.status_code, r["Location"]) for r in (known, unknown, queued)] == [(302, SENT)] * 3
    assert not held.finished.is_set() and mail == []  # all three answered while the first e-mail is still held
    held.release.set()
    assert mailer.wait(timeout=10)
    assert [m.to for m in mail] == [["member@acme.test"], ["owner@acme.test"]]
    assert (set_password(Client(), link_in(mail[0]))["Location"]) == DONE  # the link works
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)


def test_a_refused_send_is_logged_with_the_account_but_neither_its_address_nor_the_link(world, mail, settings, caplog):
    settings.EMAIL_BACKEND = f"{__name__}.RefusingBackend"
    token = default_token_generator.make_token(world.acme_member)

    with caplog.at_level(logging.INFO):
        response = ask("member@acme.test")
    assert response.status_code == 302

    assert mail == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        f"password reset e-mail to user {world.acme_member.pk} not sent (SMTPRecipientsRefused)"
    ]
    # Logged on the mail thread under the request's ID: the reference the user quotes finds the failed e-mail.
    assert errors[0].request_id == response["X-Request-ID"]
    assert "member@acme.test" not in caplog.text and token not in caplog.text and "/reset/" not in caplog.text


def test_a_send_past_the_waiting_limit_is_logged_not_lost_silently_and_the_answer_is_the_same(
    world, mail, held, monkeypatch, caplog
):
    monkeypatch.setattr(mailer.sender, "capacity", 1)
    ask_only("member@acme.test")
    assert held.sending.wait(5)
    ask_only("owner@acme.test")  # waits behind it: the one place left

    with caplog.at_level(logging.ERROR):
        refused = ask_only("admin@acme.test")

    assert (refused.status_code, refused["Location"]) == (302, SENT)
    assert caplog.messages == [
        f"password reset e-mail to user {world.acme_admin.pk} not sent: 1 e-mail already waiting to be sent"
    ]
    held.release.set()
    assert mailer.wait(timeout=10)
    assert [m.to for m in mail] == [["member@acme.test"], ["owner@acme.test"]]


def test_a_process_stopping_with_e_mails_unsent_logs_each_of_them(world, mail, held, caplog):
    # What runs at exit (gunicorn's worker leaves with sys.exit): it keeps sending for a while, then says what is
    # left, which the stopping process takes with it.
    ask_only("member@acme.test")
    assert held.sending.wait(5)
    ask_only("owner@acme.test")

    with caplog.at_level(logging.ERROR):
        mailer.sender.stop(grace=0.2)

    member, owner = world.acme_member.pk, world.acme_owner.pk
    assert caplog.messages == [
        "the process is stopping with 2 e-mails unsent: password reset e-mail to user "
        f"{member} (being sent, it may yet go), password reset e-mail to user {owner}"
    ]
    held.release.set()
    assert mailer.wait(timeout=10)
    assert [m.to for m in mail] == [["member@acme.test"]]  # what was said to be left is not sent after all


def test_a_send_that_raises_system_exit_is_logged_and_the_next_e_mail_still_goes(world, mail, caplog):
    # SystemExit from a send (past Exception) would end the mail thread, and the process would send no more mail.
    def leave():
        raise SystemExit

    with caplog.at_level(logging.ERROR):
        mailer.send_later(leave, what="an e-mail whose send leaves")
        assert mailer.wait(timeout=10)
    ask("member@acme.test")

    assert caplog.messages == ["an e-mail whose send leaves not sent (SystemExit)"]
    assert [m.to for m in mail] == [["member@acme.test"]]


def test_the_link_is_built_on_the_host_asked_for_over_https_when_the_request_was(world, mail, settings):
    settings.ALLOWED_HOSTS = ["opsion.example"]

    ask("member@acme.test", secure=True, HTTP_HOST="opsion.example", HTTP_X_FORWARDED_HOST="evil.example")

    assert LINK.search(mail[0].body).group(1, 2) == ("https", "opsion.example")


def test_the_link_keeps_the_path_the_site_is_served_under(world, mail):
    # Served under a path (SCRIPT_NAME /opsion), the link must carry it: the mail thread has no request to read it
    # from, and two e-mails in a row show it is not left over from one to the next.
    set_script_prefix("/opsion/")  # as Django's WSGI handler does from SCRIPT_NAME (the test client does not)
    try:
        ask("member@acme.test")
    finally:
        set_script_prefix("/")
    ask("admin@acme.test")

    assert "://testserver/opsion/accounts/password/reset/" in mail[0].body
    assert "://testserver/accounts/password/reset/" in mail[1].body


def test_a_poisoned_host_header_is_refused_and_nothing_is_sent(world, mail):
    # Django builds the link from request.get_host(), which ALLOWED_HOSTS checks: no link to evil.example is mailed.
    response = ask("member@acme.test", Client(raise_request_exception=False), HTTP_HOST="evil.example")

    assert response.status_code == 400
    assert mail == []


def test_a_malformed_address_is_said_so_and_nothing_is_sent(world, mail):
    response = ask("member@acmetest")

    assert response.status_code == 200
    assert "Enter a valid e-mail address." in response.content.decode()
    assert mail == []


# --- Using the link -------------------------------------------------------------------------------------------------


def test_the_link_sets_a_new_password_once_signing_out_every_session_and_keeping_api_tokens(world, mail):
    signed_in = console(world.acme_member)
    token = bearer(world.acme_member)
    ask("member@acme.test")
    link = link_in(mail[0])
    client = Client()

    response = set_password(client, link)

    assert (response.status_code, response["Location"]) == (302, DONE)
    done = client.get(DONE).content.decode()
    assert "Your password was changed." in done
    assert "Other browsers signed in as you were signed out; your API token keeps working." in done
    assert f'href="{LOGIN}"' in done
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)
    assert signed_in.get("/orgs/acme/insights/")["Location"].startswith(LOGIN)  # every session signed out
    assert Client().get("/api/v1/orgs/acme/settings", headers=token).status_code == 200  # tokens keep working
    assert Client().post(LOGIN, {"username": "member@acme.test", "password": NEW}).status_code == 302

    again = Client().get(link)  # the link works once

    assert again.status_code == 200
    assert "This link has already been used or has expired" in again.content.decode()


def test_the_new_password_page_names_the_account_and_asks_for_it_twice(world, mail):
    ask("member@acme.test")
    client = Client()
    page = client.get(client.get(link_in(mail[0]))["Location"]).content.decode()

    assert "member@acme.test" in page
    assert page.count('autocomplete="new-password"') == 2
    # A password manager saves the new password under this account, not under whatever it guesses.
    assert 'name="username" autocomplete="username" value="member@acme.test" hidden' in page
    assert "Other browsers signed in as you will be signed out." in page
    assert 'type="checkbox"' not in page  # no API tokens: nothing to revoke


def test_a_weak_or_mismatched_new_password_is_refused_and_says_why(world, mail):
    ask("member@acme.test")
    client = Client()
    link = link_in(mail[0])
    cases = [
        (set_password(client, link, new="12345678"), "This password is too common."),
        (set_password(client, link, new="member-acme-test"), "The password is too similar to the e-mail address."),
        (set_password(client, link, again=NEW + "x"), "The two password fields didn’t match."),
    ]

    for response, message in cases:
        assert response.status_code == 200
        page = response.content.decode()
        assert message in page
        assert 'aria-invalid="true"' in page
        assert NEW not in page  # nothing typed is sent back
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)


@pytest.mark.parametrize("damage", ["expired", "garbled token", "garbled account", "deactivated since"])
def test_an_expired_garbled_or_void_link_gets_a_clear_page_with_a_way_to_ask_again(world, mail, damage):
    user = world.acme_member
    ask(user.email)
    link = link_in(mail[0])
    if damage == "expired":
        generator = default_token_generator
        an_hour_ago = generator._num_seconds(datetime.now()) - 3601
        expired = generator._make_token_with_timestamp(user, an_hour_ago, generator.secret)
        link = re.sub(r"/[\w-]+/$", f"/{expired}/", link)
    elif damage == "garbled token":
        link = link[:-5] + "xxxx/"
    elif damage == "garbled account":
        link = link.replace("/reset/", "/reset/zz", 1)
    else:
        User.objects.filter(pk=user.pk).update(is_active=False)

    response = Client().get(link)

    assert response.status_code == 200
    page = response.content.decode()
    assert "This link has already been used or has expired" in page
    assert f'href="{RESET}">Ask for a new link</a>' in page
    assert "<form" not in page.split("<main", 1)[1]


def test_a_void_link_opened_while_signed_in_leads_back_to_change_password_not_to_a_sign_in_that_goes_nowhere(
    world, mail
):
    # Change password's "Forgot your password?" leads here signed in; the sign-in page sends a signed-in visitor home.
    client = console(world.acme_member)
    ask("member@acme.test")
    link = link_in(mail[0])[:-5] + "xxxx/"

    page = client.get(link).content.decode().split("<main", 1)[1]

    assert "This link has already been used or has expired" in page
    assert f'href="{RESET}">Ask for a new link</a>' in page
    assert 'href="/accounts/password/">Back to Change password</a>' in page
    assert f'href="{LOGIN}"' not in page


# --- Revoking API tokens in the same step ---------------------------------------------------------------------------


REVOKE = {"revoke_api_tokens": "on"}


def works(token: dict) -> bool:
    return Client().get("/api/v1/orgs/acme/settings", headers=token).status_code == 200


def checkbox_in(page: str) -> str:
    return page.split('<input type="checkbox"', 1)[1].split(">", 1)[0]


def test_the_new_password_page_offers_to_revoke_the_users_api_tokens_unchecked(world, mail):
    bearer(world.acme_member)
    bearer(world.acme_member)
    ask("member@acme.test")
    client = Client()

    page = client.get(client.get(link_in(mail[-1]))["Location"]).content.decode()

    assert "your API tokens keep working unless" in page
    assert '<label for="id_revoke_api_tokens">Also revoke my 2 API tokens</label>' in page
    assert "checked" not in checkbox_in(page)
    assert 'id="revoke-api-tokens-hint">Integrations using them stop working at once.' in page


def test_a_reset_with_revocation_revokes_every_token_of_the_user_and_the_done_page_says_how_many(world, mail):
    mine = [bearer(world.acme_member), bearer(world.acme_member), bearer(world.acme_member)]
    theirs = bearer(world.acme_admin)
    ask("member@acme.test")
    client = Client()

    response = set_password(client, link_in(mail[-1]), **REVOKE)

    assert (response.status_code, response["Location"]) == (302, DONE)
    done = client.get(DONE).content.decode()
    assert (
        "Other browsers signed in as you were signed out, and your 3 API tokens were revoked: integrations using "
        "them have stopped working."
    ) in done
    assert "keep working" not in done
    assert not any(works(token) for token in mine)
    assert works(theirs)
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)
    # Reloaded, the page no longer knows what this reset did, and says nothing it cannot vouch for: the next step
    # is signing in with the new password.
    again = client.get(DONE)
    assert (again.status_code, again["Location"]) == (302, LOGIN)


def test_a_reset_without_revocation_keeps_the_tokens_and_the_done_page_says_so(world, mail):
    token = bearer(world.acme_member)
    ask("member@acme.test")
    client = Client()

    assert set_password(client, link_in(mail[-1])).status_code == 302

    assert "your API token keeps working." in client.get(DONE).content.decode()
    assert works(token)


def test_a_reset_by_a_user_without_api_tokens_says_nothing_of_them_when_done(world, mail):
    ask("member@acme.test")
    client = Client()

    assert set_password(client, link_in(mail[-1])).status_code == 302

    done = client.get(DONE).content.decode()
    assert "Other browsers signed in as you were signed out." in done
    assert "API token" not in done


def test_a_refused_new_password_revokes_nothing_and_keeps_the_box_checked(world, mail):
    token = bearer(world.acme_member)
    ask("member@acme.test")
    client = Client()
    link = link_in(mail[-1])

    refused = set_password(client, link, new="12345678", **REVOKE)

    assert refused.status_code == 200
    assert "checked" in checkbox_in(refused.content.decode())
    assert works(token)
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD)


# --- Abuse guards ---------------------------------------------------------------------------------------------------


def test_an_address_gets_at_most_five_emails_an_hour_and_an_unknown_one_is_refused_alike(world, mail):
    # Keyed by what is typed, never by whether it has an account: the sixth request for an unknown address is
    # refused exactly as for a known one, so a refusal says nothing about an account.
    for address in ("member@acme.test", "nobody@acme.test"):
        for i in range(5):
            assert ask(address, REMOTE_ADDR=f"198.51.100.{i}").status_code == 302

        refused = ask(address.upper(), REMOTE_ADDR="198.51.100.99")

        assert refused.status_code == 429
        assert LOCKED in refused.content.decode()
        assert f'value="{address.upper()}"' in refused.content.decode()  # kept for the try later
    assert len(mail) == 5


# Each address's hour is a fixed window ending at its own second (django-ratelimit's, by the text typed): where in it
# the clock stands decides how long is left, from the whole hour at its first second to 1 second at its last.
@pytest.mark.parametrize("address", ["member@acme.test", "nobody@acme.test"])
@pytest.mark.parametrize(
    "second, wait, words",
    [(0, 3600, "60 minutes"), (1799, 1801, "31 minutes"), (3540, 60, "1 minute"), (3599, 1, "1 second")],
)
def test_a_refused_reset_request_is_told_when_the_addresss_hour_ends_known_or_not(
    world, mail, clock, address, second, wait, words
):
    # The wait is the typed address's window and count, as the refusal is: an unknown address is told its wait
    # exactly as a known one is, so the wait says nothing about an account either.
    clock.to_second_of_window(address, 3600, second)
    for i in range(5):
        ask(address, REMOTE_ADDR=f"198.51.100.{i}")

    refused = ask(address, REMOTE_ADDR="198.51.100.99")

    assert refused.status_code == 429 and refused["Retry-After"] == str(wait)
    assert f"Too many password reset requests. Please try again in {words}." in refused.content.decode()
    clock.advance(wait - 1)
    assert ask(address, REMOTE_ADDR="198.51.100.99").status_code == 429
    clock.advance(1)
    assert ask(address, REMOTE_ADDR="198.51.100.99").status_code == 302
    assert len(mail) == (6 if address == "member@acme.test" else 0)


def test_a_refused_network_naming_a_refused_address_is_told_its_own_wait_then_the_addresss(world, mail, clock):
    # Refused on the network: its wait is the network's hour alone, saying nothing of the e-mail address it names (a
    # longer wait would tell it that others have asked for that address's link). The request made when it ends
    # meets the address's limit, and is told the rest of that wait.
    clock.to_second_of_window("member@acme.test", 3600, 100)  # the address's hour ends in 3500 seconds
    now = int(clock.now)
    network = next(
        ip
        for ip in (f"203.0.113.{n}" for n in range(1, 255))
        if 1000 <= (zlib.crc32(ip.encode()) % 3600 - now) % 3600 <= 3000  # the network's, 1000 to 3000 from now
    )
    for i in range(5):
        ask("member@acme.test", REMOTE_ADDR=f"198.51.100.{i}")
    for i in range(20):
        ask(f"someone{i}@acme.test", REMOTE_ADDR=network)

    refused = ask("member@acme.test", REMOTE_ADDR=network)

    assert refused.status_code == 429
    network_wait = int(refused["Retry-After"])
    assert 1000 <= network_wait <= 3001  # the network's hour, not the address's 3500 seconds
    clock.advance(network_wait - 1)
    assert ask("member@acme.test", REMOTE_ADDR=network).status_code == 429
    clock.advance(1)
    refused = ask("member@acme.test", REMOTE_ADDR=network)
    assert refused.status_code == 429 and int(refused["Retry-After"]) == 3500 - network_wait  # now the address's
    clock.advance(3500 - network_wait)
    assert ask("member@acme.test", REMOTE_ADDR=network).status_code == 302


def test_a_refused_reset_request_shows_its_reference_as_the_other_refusal_pages_do(world, mail):
    for i in range(5):
        assert "Reference:" not in ask("member@acme.test", REMOTE_ADDR=f"198.51.100.{i}").content.decode()

    refused = ask("member@acme.test", REMOTE_ADDR="198.51.100.99")

    assert refused.status_code == 429
    page = refused.content.decode()
    assert f'<p class="reference">Reference: <code>{refused["X-Request-ID"]}</code></p>' in page
    assert page.count("Reference:") == 1


def test_spaces_around_an_address_do_not_make_it_another_one_for_the_limit(world, mail):
    # The form strips them before looking the account up, so each of these mails the same inbox.
    for i in range(5):
        assert ask(f"{' ' * i}member@acme.test{' ' * (4 - i)}", REMOTE_ADDR=f"198.51.100.{i}").status_code == 302

    refused = ask("  member@acme.test ", REMOTE_ADDR="198.51.100.99")

    assert refused.status_code == 429 and LOCKED in refused.content.decode()
    assert len(mail) == 5


def test_a_network_refused_for_its_requests_takes_nothing_from_the_addresses_it_names(world, mail):
    # Past its own limit a network is refused before any address is counted: it cannot go on to use up the five
    # links an hour of every address it names, keeping their owners from getting one.
    for i in range(20):
        assert ask(f"someone{i}@acme.test", REMOTE_ADDR="203.0.113.7").status_code == 302
    for _ in range(5):
        assert ask("member@acme.test", REMOTE_ADDR="203.0.113.7").status_code == 429

    assert ask("member@acme.test", REMOTE_ADDR="198.51.100.1").status_code == 302
    assert [m.to for m in mail] == [["member@acme.test"]]


def test_a_network_gets_at_most_twenty_requests_an_hour(world, mail):
    for i in range(20):
        assert ask(f"someone{i}@acme.test", REMOTE_ADDR="203.0.113.7").status_code == 302

    refused = ask("member@acme.test", REMOTE_ADDR="203.0.113.7")

    assert refused.status_code == 429 and LOCKED in refused.content.decode()
    assert mail == []  # none of those addresses has an account, and the refused one got nothing
    assert ask("member@acme.test", REMOTE_ADDR="203.0.113.8").status_code == 302  # another network is not affected
    assert len(mail) == 1


def test_requests_a_network_was_refused_leave_the_addresses_they_named_their_links(world, mail):
    # The network is counted first: one past its limit, naming someone's address again and again, must not use up
    # that address's five links an hour.
    for i in range(20):
        ask(f"someone{i}@acme.test", REMOTE_ADDR="203.0.113.7")
    for _ in range(6):
        assert ask("member@acme.test", REMOTE_ADDR="203.0.113.7").status_code == 429

    assert ask("member@acme.test", REMOTE_ADDR="198.51.100.1").status_code == 302
    assert [m.to for m in mail] == [["member@acme.test"]]


@pytest.mark.django_db(transaction=True)  # really rolled back, or committed: a row committed would be mailed
def test_a_reset_whose_revocation_fails_sets_no_password_and_mails_no_one(world, mail, token_deletes_fail):
    token = bearer(world.acme_member)
    ask("member@acme.test")
    link = link_in(mail[-1])
    mail.clear()
    rows = OutboxMail.objects.count()
    client = Client(raise_request_exception=False)

    response = set_password(client, link, **REVOKE)
    assert mailer.wait(timeout=10)

    assert response.status_code >= 500
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(PASSWORD) and not world.acme_member.check_password(NEW)
    assert mail == [] and OutboxMail.objects.count() == rows
    assert works(token)
    assert set_password(Client(), link).status_code == 302  # the link was not used up: it still sets a password


def test_a_link_used_while_signed_in_as_someone_else_says_so_and_offers_to_sign_out_not_a_sign_in_that_goes_nowhere(
    world, mail
):
    # A shared computer, or someone with two accounts: the browser is signed in as the Owner while the Member's link is
    # used. The Owner's session survives (it is not the account changed), and the sign-in page sends a signed-in
    # visitor back into the console, so a "Sign in" button would land in the Owner's account, the new password unused.
    ask("member@acme.test")
    client = console(world.acme_owner)

    response = set_password(client, link_in(mail[0]))
    done = client.get(response["Location"]).content.decode()

    main = done.split("<main", 1)[1]
    assert "You are still signed in as owner@acme.test" in main
    assert "Your password was changed." not in main  # not the Owner's: the account of the link
    assert "The new password of member@acme.test is set." in main
    assert '<form method="post" action="/accounts/logout/"' in main
    assert f'href="{LOGIN}"' not in main
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)


def test_a_link_used_in_the_browser_signed_in_as_its_own_account_says_the_password_was_changed(world, mail):
    # Change password's "Forgot your password?" leads here signed in: the reset signs that session out (the password it
    # was signed in with is gone), and the page after it must still say what happened, not drop them on sign-in.
    client = console(world.acme_member)  # first: signing in again would void the link (Django's token holds it)
    ask("member@acme.test")

    response = set_password(client, link_in(mail[0]))
    done = client.get(response["Location"])

    assert done.status_code == 200, done.get("Location")
    main = done.content.decode().split("<main", 1)[1]
    assert "Your password was changed." in main
    assert f'href="{LOGIN}"' in main
    assert client.get("/orgs/acme/insights/")["Location"].startswith(LOGIN)  # signed out, as every session is


def test_after_a_mismatch_focus_is_on_new_password_described_by_the_mismatch(world, mail):
    # Both fields come back empty: focus on the confirmation left New password above it empty, where the browser's
    # `required` then stopped the next submit.
    ask("member@acme.test")

    page = set_password(Client(), link_in(mail[0]), again=NEW + "x").content.decode()

    new_password = re.search(r'<input[^>]*id="id_new_password1"[^>]*>', page)[0]
    confirmation = re.search(r'<input[^>]*id="id_new_password2"[^>]*>', page)[0]
    assert "autofocus" in new_password and 'aria-describedby="id_new_password2-error"' in new_password
    assert 'aria-invalid="true"' in confirmation and "autofocus" not in confirmation
    assert page.count("autofocus") == 1


def test_a_weak_new_password_is_refused_beside_the_new_password_field_not_under_its_confirmation(world, mail):
    ask("member@acme.test")

    page = set_password(Client(), link_in(mail[0]), new="12345678").content.decode()

    new_password = re.search(r'<input[^>]*id="id_new_password1"[^>]*>', page)[0]
    assert 'aria-invalid="true"' in new_password and "autofocus" in new_password
    assert "This password is too common." in page.split('id="id_new_password1-error"', 1)[1].split("</div>", 1)[0]
    assert 'id="id_new_password2-error"' not in page


def test_the_done_page_signed_in_as_someone_else_says_whose_sessions_and_tokens_the_reset_ended(world, mail):
    # The Owner's browser, the Member's link: the Member's other browsers were signed out and the Member's tokens
    # revoked. "Signed in as you" and "your 2 API tokens" read as the Owner's, who is the one reading it.
    owners = bearer(world.acme_owner)
    members = [bearer(world.acme_member), bearer(world.acme_member)]
    ask("member@acme.test")
    client = console(world.acme_owner)

    done = client.get(set_password(client, link_in(mail[-1]), **REVOKE)["Location"]).content.decode()

    main = done.split("<main", 1)[1]
    assert "signed in as you" not in main and "your 2 API tokens" not in main
    assert (
        "Other browsers signed in as member@acme.test were signed out, and its 2 API tokens were revoked: "
        "integrations using them have stopped working."
    ) in main
    assert works(owners) and not any(works(token) for token in members)


def test_the_new_password_page_signed_in_as_someone_else_names_both_accounts_and_offers_to_sign_out(world, mail):
    # The Owner's browser, the Member's link: "signed in as you", "your API tokens" and "Also revoke my 2 API tokens"
    # read as the Owner's, who is signed in here, while the link sets the Member's password.
    bearer(world.acme_member)
    bearer(world.acme_member)
    ask("member@acme.test")
    client = console(world.acme_owner)

    page = client.get(client.get(link_in(mail[-1]))["Location"]).content.decode()

    main = page.split("<main", 1)[1]
    assert "signed in as you" not in main and "your" not in main and " my " not in main
    assert "This link sets the password of member@acme.test. You are signed in here as owner@acme.test." in main
    assert (
        "Other browsers signed in as member@acme.test will be signed out; its API tokens keep working unless you "
        "also revoke them below."
    ) in main
    assert '<label for="id_revoke_api_tokens">Also revoke the 2 API tokens of member@acme.test</label>' in main
    assert "not like its e-mail address" in main
    sign_out = main.split('<form method="post" action="/accounts/logout/"', 1)[1].split("</form>", 1)[0]
    assert '<input type="hidden" name="next" value="/accounts/password/reset/' in sign_out
    assert ">Sign out</button>" in sign_out


def test_signing_out_from_the_new_password_page_comes_back_to_it_signed_out_and_the_link_still_works(world, mail):
    ask("member@acme.test")
    client = console(world.acme_owner)
    form = client.get(link_in(mail[-1]))["Location"]

    back = client.post("/accounts/logout/", {"next": form}, follow=True)

    assert back.redirect_chain[-1][0] == form
    page = back.content.decode()
    assert "You are signed out." in page and "Choose a new password" in page
    assert "You are signed in here" not in page and "signed in as you" in page
    assert page.count("autofocus") == 1  # on New password, what is typed next, not on the message above it
    assert "autofocus" in re.search(r'<input[^>]*id="id_new_password1"[^>]*>', page)[0]
    assert client.get("/orgs/acme/insights/")["Location"].startswith(LOGIN)  # the Owner's session is gone
    done = client.post(form, {"new_password1": NEW, "new_password2": NEW})
    assert done["Location"] == DONE
    assert "Your password was changed." in client.get(DONE).content.decode()
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEW)


def test_signing_out_elsewhere_does_not_carry_an_opened_link_into_the_next_session(world, mail):
    # On a shared computer the next person must not find a half-used link still working after a sign-out.
    ask("member@acme.test")
    client = console(world.acme_owner)
    form = client.get(link_in(mail[-1]))["Location"]

    client.post("/accounts/logout/", {"next": "/accounts/login/"})

    assert "This link has already been used or has expired" in client.get(form).content.decode()


def test_a_link_used_in_the_browser_signed_in_as_its_own_account_says_beforehand_that_this_one_is_signed_out_too(
    world, mail
):
    # Change password's "Forgot your password?" leads here signed in as the link's account. The reset signs out every
    # session of it, this one included, so "Other browsers signed in as you will be signed out" left them surprised to
    # land on Sign in.
    client = console(world.acme_member)  # first: signing in again would void the link (Django's token holds it)
    ask("member@acme.test")
    form = client.get(link_in(mail[0]))["Location"]

    page = client.get(form).content.decode()
    done = client.get(client.post(form, {"new_password1": NEW, "new_password2": NEW})["Location"]).content.decode()

    assert "Every browser signed in as you will be signed out, this one included." in page
    assert "Other browsers" not in page
    assert "Every browser signed in as you was signed out, this one included." in done
    assert "Other browsers" not in done


def test_signed_in_the_reset_page_already_holds_the_accounts_address(world, mail):
    # Reached from Change password's "Forgot your password?": the account is known, and typing its address again is
    # one more chance of a typo that sends the link nowhere.
    signed_in = console(world.acme_member).get(RESET).content.decode()
    signed_out = Client().get(RESET).content.decode()

    address = re.search(r'<input type="email" name="email"[^>]*>', signed_in)[0]
    assert 'value="member@acme.test"' in address
    assert 'value=""' in re.search(r'<input type="email" name="email"[^>]*>', signed_out)[0]
