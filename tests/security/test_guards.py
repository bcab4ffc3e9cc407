"""Abuse guards: sign-in, key changes and token creation are refused with 429 past their limits."""

import html
import logging
import re
import socket
import threading
import time
import types
import uuid
import zlib

import django_ratelimit.core
import pytest
import redis
from django.contrib.auth import forms as auth_forms
from django.test import Client, RequestFactory

from insights.models import InsightQuery
from orgs import guards, mailer
from orgs.models import ApiToken, AuditEvent, ClaudeApiKey, Membership, Role
from tests.base import CANARY_KEY, GOOD_KEY, OTHER_KEY, PASSWORD
from tests.clients import api_delete_key, api_put_key, closed_port, console, token_client
from tests.orgs.helpers import store_key
from tests.orgs.test_password_reset import ask, link_in, set_password
from tests.security.conftest import REDIS_URL, base_env, json_error, run_python

LOGIN = "/accounts/login/"
LOCKED = "Too many failed sign-in attempts. Please try again in "
NEW_PASSWORD = "a-New-passw0rd-for-acme"
NEWER_PASSWORD = "an-Even-newer-passw0rd-4-acme"


def _sign_in(email: str, password: str, ip: str = "203.0.113.10", **headers):
    client = Client()
    response = client.post(LOGIN, {"username": email, "password": password}, REMOTE_ADDR=ip, **headers)
    return client, response


def _signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


# --- Sign-in ------------------------------------------------------------------------------------------


def test_ten_failures_from_one_address_lock_it_for_every_account(world, clock):
    for i in range(10):
        _, response = _sign_in(f"guess{i}@nowhere.test", "wrong", ip="203.0.113.10")
        assert response.status_code == 200
    client, response = _sign_in("member@acme.test", PASSWORD, ip="203.0.113.10")
    assert response.status_code == 429
    assert LOCKED in response.content.decode()
    assert not _signed_in(client)
    # Another address is not affected.
    client, response = _sign_in("member@acme.test", PASSWORD, ip="203.0.113.11")
    assert response.status_code == 302 and _signed_in(client)


def test_the_lockout_page_shows_its_reference_as_the_error_pages_do(world, clock):
    # Someone locked out who calls support quotes it, as on any other refusal page: the ID of this very answer.
    for i in range(10):
        _sign_in(f"guess{i}@nowhere.test", "wrong")

    _, locked = _sign_in("member@acme.test", PASSWORD)

    assert locked.status_code == 429
    page = locked.content.decode()
    assert f'<p class="reference">Reference: <code>{locked["X-Request-ID"]}</code></p>' in page
    assert page.count("Reference:") == 1


@pytest.mark.parametrize(
    "url, box, lock",
    [
        (LOGIN, "username", lambda: [_sign_in(f"guess{i}@nowhere.test", "wrong") for i in range(10)]),
        (
            "/accounts/password/reset/",
            "email",
            lambda: [ask(f"who{i}@nowhere.test", REMOTE_ADDR="203.0.113.10") for i in range(20)],
        ),
    ],
    ids=["sign-in", "reset request"],
)
def test_a_key_pasted_into_the_address_box_of_a_locked_out_page_is_not_typed_back(world, clock, mail, url, box, lock):
    # The locked-out page types back the address (the form is not checked: nothing posted is), but not one holding a
    # key or token: the box comes back empty, as it does from a page that checked it (orgs.forms.AddressField).
    lock()

    locked = Client().post(url, {box: CANARY_KEY, "password": "anything"}, REMOTE_ADDR="203.0.113.10")

    assert locked.status_code == 429
    page = html.unescape(locked.content.decode())
    assert CANARY_KEY[8:] not in page
    assert re.search(rf'<input type="email" name="{box}"[^>]*\bvalue=""', page)


def test_a_refused_sign_in_that_is_not_locked_out_shows_no_reference(world, clock):
    _, refused = _sign_in("member@acme.test", "wrong")

    assert refused.status_code == 200 and "Reference:" not in refused.content.decode()


def test_ten_failures_for_one_account_lock_it_from_every_address(world, clock):
    for i in range(10):
        email = "member@acme.test" if i % 2 else "Member@ACME.test "  # the same account, however it is typed
        _, response = _sign_in(email, "wrong", ip=f"198.51.100.{i}")
        assert response.status_code == 200
    client, response = _sign_in("member@acme.test", PASSWORD, ip="192.0.2.99")
    assert response.status_code == 429
    assert LOCKED in response.content.decode()
    assert not _signed_in(client)
    # Other accounts from that address are not affected.
    client, response = _sign_in("admin@acme.test", PASSWORD, ip="192.0.2.99")
    assert response.status_code == 302 and _signed_in(client)


def test_guesses_still_being_checked_count_so_parallel_guesses_cannot_pass_the_limit(world, clock):
    # Ten guesses arrive together and are counted before any password is checked: an eleventh
    # arriving while they are all still in flight is refused. Counting failures only once each
    # check had finished let every guess in flight through (40 in parallel: 40 checked).
    factory = RequestFactory()
    in_flight = [
        guards.sign_in_attempt(factory.post(LOGIN, {"username": f"g{i}@x.test"}, REMOTE_ADDR="203.0.113.10"))
        for i in range(10)
    ]

    client, response = _sign_in("member@acme.test", PASSWORD, ip="203.0.113.10")

    assert in_flight == [None] * 10
    assert response.status_code == 429 and not _signed_in(client)


def test_a_locked_address_cannot_go_on_to_lock_out_other_accounts(world, clock):
    for i in range(10):
        _sign_in(f"guess{i}@nowhere.test", "wrong", ip="203.0.113.66")
    for victim in ("owner@acme.test", "staff@opsion.test"):
        for _ in range(10):
            assert _sign_in(victim, "x", ip="203.0.113.66")[1].status_code == 429

    for victim in ("owner@acme.test", "staff@opsion.test"):
        client, response = _sign_in(victim, PASSWORD, ip="198.51.100.7")
        assert response.status_code == 302 and _signed_in(client), victim


def test_a_locked_out_attempt_does_not_even_check_the_password(world, clock, monkeypatch):
    for i in range(10):
        _sign_in("owner@acme.test", f"wrong-{i}")
    checked = []
    real = auth_forms.authenticate
    monkeypatch.setattr(auth_forms, "authenticate", lambda *a, **k: checked.append(1) or real(*a, **k))

    _, response = _sign_in("owner@acme.test", PASSWORD)

    assert response.status_code == 429 and checked == []  # no password hashing for a locked-out guesser
    assert 'value="owner@acme.test"' in response.content.decode()  # the address stays in the box


def test_an_offices_many_successful_sign_ins_from_one_address_never_lock_it(world, clock):
    for _ in range(25):
        assert _sign_in("member@acme.test", PASSWORD, ip="203.0.113.10")[1].status_code == 302
    for i in range(9):
        _sign_in("admin@acme.test", f"typo-{i}", ip="203.0.113.10")

    client, response = _sign_in("admin@acme.test", PASSWORD, ip="203.0.113.10")

    assert response.status_code == 302 and _signed_in(client)


def test_nine_failures_still_let_the_right_password_in(world, clock):
    for _ in range(9):
        _sign_in("member@acme.test", "wrong")
    client, response = _sign_in("member@acme.test", PASSWORD)
    assert response.status_code == 302 and _signed_in(client)


def test_the_lock_lifts_after_fifteen_minutes(world, clock):
    for _ in range(10):
        _sign_in("member@acme.test", "wrong")
    assert _sign_in("member@acme.test", PASSWORD)[1].status_code == 429
    # The windows are fixed (django-ratelimit), so a lock lasts up to 15 minutes, never just one; the
    # clock is held, so where this account's and this address's windows end is the same every run.
    clock.advance(61)
    assert _sign_in("member@acme.test", PASSWORD)[1].status_code == 429
    clock.advance(14 * 60)
    client, response = _sign_in("member@acme.test", PASSWORD)
    assert response.status_code == 302 and _signed_in(client)


# Where in the window the clock stands decides how long is left: its first second (the whole window), the middle,
# a minute before its end (the longest wait said in seconds, and the shortest in minutes) and its last second.
WINDOW_SECONDS = [
    (0, 900, "15 minutes"),
    (449, 451, "8 minutes"),
    (840, 60, "1 minute"),
    (841, 59, "59 seconds"),
    (899, 1, "1 second"),
]


@pytest.mark.parametrize("second, wait, words", WINDOW_SECONDS)
def test_a_locked_address_is_told_when_its_window_ends_not_to_wait_the_whole_window(world, clock, second, wait, words):
    ip = "203.0.113.10"
    clock.to_second_of_window(ip, guards.SIGN_IN_WINDOW_SECONDS, second)
    for i in range(10):
        _sign_in(f"guess{i}@nowhere.test", "wrong", ip=ip)

    client, response = _sign_in("member@acme.test", PASSWORD, ip=ip)

    assert response.status_code == 429 and not _signed_in(client)
    assert response["Retry-After"] == str(wait)
    assert f"Too many failed sign-in attempts. Please try again in {words}." in response.content.decode()
    clock.advance(wait - 1)
    assert _sign_in("member@acme.test", PASSWORD, ip=ip)[1].status_code == 429
    clock.advance(1)
    client, response = _sign_in("member@acme.test", PASSWORD, ip=ip)
    assert response.status_code == 302 and _signed_in(client)


@pytest.mark.parametrize("second, wait, words", WINDOW_SECONDS)
def test_a_locked_account_is_told_when_its_window_ends(world, clock, second, wait, words):
    clock.to_second_of_window("member@acme.test", guards.SIGN_IN_WINDOW_SECONDS, second)
    for i in range(10):
        _sign_in("member@acme.test", "wrong", ip=f"198.51.100.{i}")

    client, response = _sign_in("member@acme.test", PASSWORD, ip="192.0.2.99")

    assert response.status_code == 429 and not _signed_in(client)
    assert response["Retry-After"] == str(wait)
    assert f"Please try again in {words}." in response.content.decode()
    clock.advance(wait - 1)
    assert _sign_in("member@acme.test", PASSWORD, ip="192.0.2.98")[1].status_code == 429
    clock.advance(1)
    client, response = _sign_in("member@acme.test", PASSWORD, ip="192.0.2.97")
    assert response.status_code == 302 and _signed_in(client)


def test_a_locked_address_trying_a_locked_account_is_told_its_own_wait_then_the_accounts(world, clock):
    # Refused on the address: its wait is the address's window alone, saying nothing of the account it names (a
    # longer wait would tell a locked guesser that others have been failing at that account). The attempt made when
    # it ends meets the account's lock, and is told the rest of that wait.
    window = guards.SIGN_IN_WINDOW_SECONDS
    clock.to_second_of_window("member@acme.test", window, 100)  # the account's window ends in 800 seconds
    now = int(clock.now)
    ip = next(
        ip
        for ip in (f"203.0.113.{n}" for n in range(1, 255))
        if 200 <= (zlib.crc32(ip.encode()) % window - now) % window <= 600  # the address's, 200 to 600 from now
    )
    for i in range(10):
        _sign_in("member@acme.test", "wrong", ip=f"198.51.100.{i}")
    for i in range(10):
        _sign_in(f"guess{i}@nowhere.test", "wrong", ip=ip)

    client, response = _sign_in("member@acme.test", PASSWORD, ip=ip)

    assert response.status_code == 429
    address_wait = int(response["Retry-After"])
    assert 200 <= address_wait <= 601  # the address's window, not the account's 800 seconds
    clock.advance(address_wait - 1)
    assert _sign_in("member@acme.test", PASSWORD, ip=ip)[1].status_code == 429
    clock.advance(1)
    client, response = _sign_in("member@acme.test", PASSWORD, ip=ip)
    assert response.status_code == 429 and int(response["Retry-After"]) == 800 - address_wait  # now the account's
    clock.advance(800 - address_wait)
    client, response = _sign_in("member@acme.test", PASSWORD, ip=ip)
    assert response.status_code == 302 and _signed_in(client)


def _reset_from(ip: str, mail, address: str = "member@acme.test") -> None:
    """The user of `address` asks for a reset link and sets NEW_PASSWORD by it, both from `ip`."""
    ask(address, REMOTE_ADDR=ip)
    assert set_password(Client(REMOTE_ADDR=ip), link_in(mail[-1]), NEW_PASSWORD).status_code == 302


def _locked_out_then_reset(mail, ip: str = "203.0.113.10") -> None:
    """Ten wrong guesses at member@acme.test from `ip` lock it, then its user sets a new password by the e-mailed
    link from the same address (the usual way: someone who forgot theirs guesses, then asks for a link)."""
    for _ in range(10):
        _sign_in("member@acme.test", "wrong", ip=ip)
    assert _sign_in("member@acme.test", NEW_PASSWORD, ip=ip)[1].status_code == 429
    _reset_from(ip, mail)


def test_a_password_set_by_a_reset_link_lifts_the_lock_on_its_account_and_the_address_it_was_set_from(
    world, clock, mail
):
    _locked_out_then_reset(mail)

    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip="203.0.113.10")

    assert response.status_code == 302 and _signed_in(client)  # not "wait 15 minutes" with the password just set
    client, response = _sign_in("admin@acme.test", PASSWORD, ip="203.0.113.10")
    assert response.status_code == 302 and _signed_in(client)  # the address is no longer locked for anyone


def test_after_a_reset_lifts_the_lock_ten_more_wrong_guesses_lock_the_account_again(world, clock, mail):
    _locked_out_then_reset(mail)

    for i in range(10):
        assert _sign_in("member@acme.test", "wrong", ip=f"198.51.100.{i}")[1].status_code == 200
    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip="192.0.2.99")

    assert response.status_code == 429 and not _signed_in(client)  # the reset forgave what came before it only


def test_what_a_reset_forgave_is_not_carried_into_the_next_window(world, clock, mail):
    _locked_out_then_reset(mail)
    clock.advance(guards.SIGN_IN_WINDOW_SECONDS + 60)  # both windows have ended: the counts start again

    for i in range(10):
        _sign_in("member@acme.test", "wrong", ip=f"198.51.100.{i}")
    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip="192.0.2.99")

    assert response.status_code == 429 and not _signed_in(client)


def test_what_a_reset_forgave_lasts_for_the_rest_of_its_window_not_a_moment(world, clock, mail, monkeypatch):
    # The cache's clock too, so what it keeps expires as time passes in the test: a few seconds after the reset
    # (still in the window: it has most of 15 minutes left), the password just chosen still signs in.
    import django.core.cache.backends.base
    import django.core.cache.backends.locmem

    for module in (django.core.cache.backends.base, django.core.cache.backends.locmem):  # expiry set, and read
        monkeypatch.setattr(module, "time", types.SimpleNamespace(time=clock.time))
    _locked_out_then_reset(mail)
    clock.advance(5)

    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip="203.0.113.10")
    assert response.status_code == 302 and _signed_in(client)


def test_what_a_reset_forgave_holds_until_its_window_ends_however_long_after_the_reset(world, clock, mail):
    # The clock is held and django-ratelimit's windows are fixed per key, so at this address and account both
    # windows have well over 7.5 minutes left at the reset: the forgiveness is found again 7.7 minutes on, in the
    # same window, however far from the reset (a window is known by its end, not by when it was forgiven).
    _locked_out_then_reset(mail, ip="203.0.113.1")
    clock.advance(460)

    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip="203.0.113.1")
    assert response.status_code == 302 and _signed_in(client)


def test_the_reset_lifts_the_lock_however_the_clock_ticks_between_reads(world, clock, mail, monkeypatch):
    # django-ratelimit reads its clock for each counter, and a second may begin between two reads (a round trip to
    # Redis): the window a forgiveness belongs to must not depend on which second each read fell in.
    ticking = types.SimpleNamespace(time=lambda: clock.advance(0.25) or clock.now)
    monkeypatch.setattr(django_ratelimit.core, "time", ticking)

    _locked_out_then_reset(mail)

    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip="203.0.113.10")
    assert response.status_code == 302 and _signed_in(client)


def test_resetting_ones_own_password_does_not_unlock_an_address_that_guessed_at_other_accounts(world, clock, mail):
    # Someone spraying guesses at other people's accounts locks their address; their own account (any member has
    # one, and its mailbox) must not be a key to that lock, or each reset would buy ten more guesses at others.
    ip = "203.0.113.66"
    for i in range(10):
        _sign_in(f"victim{i}@acme.test", "wrong", ip=ip)
    assert _sign_in("owner@acme.test", PASSWORD, ip=ip)[1].status_code == 429

    _reset_from(ip, mail)  # the sprayer's own account, reset from the locked address

    client, response = _sign_in("owner@acme.test", "a-guess", ip=ip)
    assert response.status_code == 429 and LOCKED in response.content.decode()


def test_an_office_address_locked_by_others_failures_lets_the_account_reset_from_it_sign_in(world, clock, mail):
    # Colleagues behind one office address mistype (or someone there sprays guesses) until the address is locked;
    # then a member forgets their password and resets it by the e-mailed link. The address stays locked for every
    # other account, but the one just reset signs in with the password just chosen, not "wait 15 minutes".
    ip = "203.0.113.66"
    for i in range(10):
        _sign_in(f"colleague{i}@acme.test", "wrong", ip=ip)
    assert _sign_in("member@acme.test", PASSWORD, ip=ip)[1].status_code == 429

    _reset_from(ip, mail)

    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip=ip)
    assert response.status_code == 302 and _signed_in(client)
    client, response = _sign_in("owner@acme.test", PASSWORD, ip=ip)
    assert response.status_code == 429 and not _signed_in(client)  # the address: still locked for everyone else


def test_from_a_locked_address_the_reset_account_is_still_guarded_by_its_own_lock(world, clock, mail):
    # What lets the reset account past its address's lock is no opening for guessing at it: ten wrong passwords
    # from there lock the account, as from any address.
    ip = "203.0.113.66"
    for i in range(10):
        _sign_in(f"colleague{i}@acme.test", "wrong", ip=ip)
    _reset_from(ip, mail)

    for _ in range(10):
        assert _sign_in("member@acme.test", "wrong", ip=ip)[1].status_code == 200
    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip="192.0.2.99")
    assert response.status_code == 429 and not _signed_in(client)


def test_a_reset_lets_its_account_past_its_addresss_lock_for_that_window_only(world, clock, mail):
    # Locked again in a later window, by failures made after the reset, the address is locked for the reset account
    # too: the reset vouched for the mailbox then, not for whatever the address does next.
    ip = "203.0.113.66"
    for i in range(10):
        _sign_in(f"colleague{i}@acme.test", "wrong", ip=ip)
    _reset_from(ip, mail)
    clock.advance(guards.SIGN_IN_WINDOW_SECONDS + 60)

    for i in range(10):
        _sign_in(f"colleague{i}@acme.test", "wrong", ip=ip)
    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip=ip)
    assert response.status_code == 429 and not _signed_in(client)


def test_signing_in_to_ones_own_account_first_earns_its_address_no_forgiveness(world, clock, mail):
    # Successes at the account are not failures at it: signed in ten times, then spraying, then resetting, the
    # address has made no failure at the reset account to forgive.
    ip = "203.0.113.66"
    for _ in range(10):
        assert _sign_in("member@acme.test", PASSWORD, ip=ip)[1].status_code == 302
    for i in range(10):
        _sign_in(f"victim{i}@acme.test", "wrong", ip=ip)

    _reset_from(ip, mail)

    assert _sign_in("owner@acme.test", PASSWORD, ip=ip)[1].status_code == 429


def test_a_reset_forgives_its_address_only_the_failures_it_made_at_that_account(world, clock, mail):
    # The reset account's failures from elsewhere are not its address's to forgive: ten failures at the account
    # from one address cannot be spent again to unlock every other address its password is reset from.
    for i in range(10):
        _sign_in("member@acme.test", "wrong", ip=f"198.51.100.{i}")
    ip = "203.0.113.66"
    for i in range(10):
        _sign_in(f"victim{i}@acme.test", "wrong", ip=ip)

    _reset_from(ip, mail)

    assert _sign_in("owner@acme.test", PASSWORD, ip=ip)[1].status_code == 429  # the address: still locked
    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip="192.0.2.99")
    assert response.status_code == 302 and _signed_in(client)  # the account: its lock lifted


def test_a_reset_lifts_the_address_lock_however_many_times_its_owner_kept_trying_while_locked(world, clock, mail):
    # The address's count goes on with every attempt, refused unchecked or not; so must what it is counted to have
    # tried at the account, or someone who kept trying their own password well past the lock is still told to wait
    # 15 minutes, from the address they set the new one from, with the password they have just chosen.
    ip = "203.0.113.10"
    for _ in range(25):
        _sign_in("member@acme.test", "wrong", ip=ip)
    assert _sign_in("member@acme.test", NEW_PASSWORD, ip=ip)[1].status_code == 429

    _reset_from(ip, mail)

    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip=ip)
    assert response.status_code == 302 and _signed_in(client)


def test_guesses_at_ones_own_account_from_an_address_locked_for_guessing_at_others_do_not_unlock_it(world, clock, mail):
    # What the address is forgiven for the reset account never covers its failures at others: a sprayer, locked,
    # who tries their own account again and again and resets it is still locked.
    ip = "203.0.113.66"
    for i in range(10):
        _sign_in(f"victim{i}@acme.test", "wrong", ip=ip)
    for _ in range(15):
        assert _sign_in("member@acme.test", "wrong", ip=ip)[1].status_code == 429  # refused unchecked: locked

    _reset_from(ip, mail)

    client, response = _sign_in("owner@acme.test", PASSWORD, ip=ip)
    assert response.status_code == 429 and LOCKED in response.content.decode()


def test_a_reset_forgives_its_address_even_a_single_failure_at_that_account(world, clock, mail):
    # Nine guesses at others and one at one's own account: the reset forgives that one, so the address, at nine, may
    # still sign in with the password just chosen.
    ip = "203.0.113.66"
    for i in range(9):
        _sign_in(f"victim{i}@acme.test", "wrong", ip=ip)
    _sign_in("member@acme.test", "wrong", ip=ip)

    _reset_from(ip, mail)

    client, response = _sign_in("member@acme.test", NEW_PASSWORD, ip=ip)
    assert response.status_code == 302 and _signed_in(client)


def test_a_second_reset_from_the_address_never_takes_back_what_the_first_forgave_it(world, clock, mail):
    # Two people behind one address, both forgetting: the second reset, at an account with fewer failures, must not
    # put back the first one's failures on the address.
    ip = "203.0.113.10"
    for _ in range(10):
        _sign_in("member@acme.test", "wrong", ip=ip)
    _reset_from(ip, mail)
    for _ in range(3):
        _sign_in("admin@acme.test", "wrong", ip=ip)
    _reset_from(ip, mail, "admin@acme.test")

    client, response = _sign_in("admin@acme.test", NEW_PASSWORD, ip=ip)
    assert response.status_code == 302 and _signed_in(client)


def _change_password(client: Client, old: str, new: str = NEWER_PASSWORD):
    return client.post("/accounts/password/", {"old_password": old, "new_password1": new, "new_password2": new})


def _password_checks_locked_then_reset(world, mail) -> None:
    """A session guesses ten times at member@acme.test's password on Change password, which locks the checks of it
    while signed in; then its owner sets a new one by the e-mailed link."""
    guesser = console(world.acme_member)
    for _ in range(10):
        assert _change_password(guesser, "wrong").status_code == 200
    assert _change_password(guesser, PASSWORD).status_code == 429
    _reset_from("203.0.113.10", mail)


def test_a_password_set_by_a_reset_link_lifts_the_lock_on_checking_the_password_while_signed_in(world, clock, mail):
    # The reset signed out every session, the guesser's too: its owner, signed in with the password just chosen,
    # is not told to wait 15 minutes to change it or to confirm it for a new API token.
    _password_checks_locked_then_reset(world, mail)
    client, response = _sign_in("member@acme.test", NEW_PASSWORD)
    assert response.status_code == 302

    changed = _change_password(client, NEW_PASSWORD)

    assert changed.status_code == 302, changed.content.decode()
    world.acme_member.refresh_from_db()
    assert world.acme_member.check_password(NEWER_PASSWORD)


def test_after_a_reset_lifts_the_password_check_lock_ten_more_wrong_guesses_lock_it_again(world, clock, mail):
    _password_checks_locked_then_reset(world, mail)
    client = _sign_in("member@acme.test", NEW_PASSWORD)[0]
    for _ in range(10):
        assert _change_password(client, "wrong").status_code == 200

    assert _change_password(client, NEW_PASSWORD).status_code == 429  # the reset forgave what came before it only


def test_what_a_reset_forgave_the_password_checks_is_not_carried_into_the_next_window(world, clock, mail):
    _password_checks_locked_then_reset(world, mail)
    clock.advance(guards.SIGN_IN_WINDOW_SECONDS + 60)
    client = _sign_in("member@acme.test", NEW_PASSWORD)[0]
    for _ in range(10):
        _change_password(client, "wrong")

    assert _change_password(client, NEW_PASSWORD).status_code == 429


def test_an_unused_reset_link_lifts_nothing(world, clock, mail):
    for _ in range(10):
        _sign_in("member@acme.test", "wrong")
    ask("member@acme.test", REMOTE_ADDR="203.0.113.10")  # asked for, never followed: anyone may ask

    assert _sign_in("member@acme.test", PASSWORD)[1].status_code == 429


def test_without_a_proxy_a_forged_forwarded_for_header_does_not_escape_the_lock(world, clock, settings):
    # BEHIND_PROXY is off (the default): X-Forwarded-For is whatever the client says, so it is ignored.
    for i in range(10):
        _sign_in(f"guess{i}@nowhere.test", "wrong", ip="203.0.113.10", HTTP_X_FORWARDED_FOR=f"198.51.100.{i}")

    client, response = _sign_in("member@acme.test", PASSWORD, ip="203.0.113.10", HTTP_X_FORWARDED_FOR="192.0.2.77")

    assert response.status_code == 429 and not _signed_in(client)


def test_behind_the_proxy_each_client_is_counted_not_the_proxy(world, clock, settings):
    # BEHIND_PROXY=1: the proxy connects from one address and appends the client's to X-Forwarded-For.
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proxy = "10.0.0.2"
    for i in range(10):
        _sign_in(f"guess{i}@nowhere.test", "wrong", ip=proxy, HTTP_X_FORWARDED_FOR="203.0.113.5")
    client, response = _sign_in("member@acme.test", PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="203.0.113.6")
    assert response.status_code == 302 and _signed_in(client)
    # The locked client cannot escape by putting a made-up address first: the proxy's hop is the one counted.
    _, response = _sign_in("admin@acme.test", PASSWORD, ip=proxy, HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.5")
    assert response.status_code == 429


def test_one_ipv6_network_is_one_address_so_rotating_within_it_does_not_escape_the_lock(world, clock):
    # Anyone with IPv6 holds a /64 (2^64 addresses): counting each address apart would let one machine
    # guess passwords forever, a fresh address each time. django-ratelimit's own "ip" key groups a /64.
    for i in range(10):
        _sign_in(f"guess{i}@nowhere.test", "wrong", ip=f"2001:db8:1:2::{i + 1:x}")

    client, response = _sign_in("member@acme.test", PASSWORD, ip="2001:db8:1:2:ffff::1")

    assert response.status_code == 429 and not _signed_in(client)
    # Another network is not affected, nor are IPv4 clients a dual-stack server sees mapped into IPv6.
    for other in ("2001:db8:1:3::1", "::ffff:203.0.113.10"):
        client, response = _sign_in("member@acme.test", PASSWORD, ip=other)
        assert response.status_code == 302 and _signed_in(client), other


def test_ipv4_clients_mapped_into_ipv6_are_counted_one_by_one(world, clock):
    for i in range(10):
        _sign_in(f"guess{i}@nowhere.test", "wrong", ip="::ffff:203.0.113.10")

    assert _sign_in("member@acme.test", PASSWORD, ip="::ffff:203.0.113.10")[1].status_code == 429
    client, response = _sign_in("member@acme.test", PASSWORD, ip="::ffff:203.0.113.11")
    assert response.status_code == 302 and _signed_in(client)


# --- Key saves and removals -----------------------------------------------------------------------------


def _put_key(client: Client, slug: str, key: str):
    return api_put_key(client, slug, {"apiKey": key})


def test_the_eleventh_key_change_in_a_minute_by_one_user_is_refused_with_429_json(world, clock, api_token):
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_token}")
    for _ in range(5):
        assert _put_key(client, "acme", GOOD_KEY).status_code == 200
        assert api_delete_key(client, "acme").status_code == 200
    response = _put_key(client, "acme", OTHER_KEY)
    assert response.status_code == 429
    error = json_error(response)
    assert error["code"] == "too_many_attempts"
    assert f"try again in {_key_wait_in_words(response['Retry-After'])}." in error["message"]
    assert not ClaudeApiKey.objects.filter(organisation=world.acme).exists()  # the refused save changed nothing
    assert AuditEvent.objects.filter(organisation=world.acme).count() == 10
    clock.advance(61)
    assert _put_key(client, "acme", OTHER_KEY).status_code == 200


def _key_wait_in_words(retry_after) -> str:
    """A key write's wait (1 to 60 seconds) as its message says it: a whole minute is "1 minute"."""
    seconds = int(retry_after)
    return "1 minute" if seconds == 60 else "1 second" if seconds == 1 else f"{seconds} seconds"


def _refused_then_waits_exactly_retry_after(clock, refused_client: Client):
    """The refusal's Retry-After is when the next change goes through: one second sooner it is still refused."""
    response = _put_key(refused_client, "acme", OTHER_KEY)
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert f"try again in {_key_wait_in_words(retry_after)}." in json_error(response)["message"]
    clock.advance(retry_after - 1)
    assert _put_key(refused_client, "acme", OTHER_KEY).status_code == 429
    clock.advance(1)
    assert _put_key(refused_client, "acme", OTHER_KEY).status_code == 200


def _ten_key_changes(world, clock, start: int) -> Client:
    """Acme's Admin changes the key ten times, `start` seconds into the held clock: its count and Acme's are full."""
    clock.advance(start)
    admin = console(world.acme_admin)
    for _ in range(10):
        assert _put_key(admin, "acme", GOOD_KEY).status_code == 200
    return admin


# Each user's and each organisation's window ends at its own second of the minute (django-ratelimit adds a jitter
# per key), and where the clock stands in it decides how long is left: a few starting points, so the time left varies.
@pytest.mark.parametrize("start", [0, 17, 42, 59])
def test_a_refused_key_change_is_told_when_its_window_ends_not_a_whole_minute(world, clock, start):
    admin = _ten_key_changes(world, clock, start)
    # Refused on the admin's own count, and told its wait. The organisation's count, full too, is not read: where its
    # window ends later, the change made at that wait meets it, and is told the rest.
    response = _put_key(admin, "acme", OTHER_KEY)
    assert response.status_code == 429
    clock.advance(int(response["Retry-After"]) - 1)
    assert _put_key(admin, "acme", OTHER_KEY).status_code == 429
    clock.advance(1)
    response = _put_key(admin, "acme", OTHER_KEY)
    if response.status_code == 429:
        assert json_error(response)["code"] == "too_many_attempts"
        clock.advance(int(response["Retry-After"]))
        response = _put_key(admin, "acme", OTHER_KEY)
    assert response.status_code == 200


@pytest.mark.parametrize("start", [0, 17, 42, 59])
def test_a_key_change_refused_on_the_organisations_count_is_told_when_that_window_ends(world, clock, start):
    _ten_key_changes(world, clock, start)
    _refused_then_waits_exactly_retry_after(clock, console(world.acme_owner))


def test_key_changes_are_counted_per_organisation_across_its_admins(world, clock):
    admin = console(world.acme_admin)
    for _ in range(10):
        assert _put_key(admin, "acme", GOOD_KEY).status_code == 200
    response = _put_key(console(world.acme_owner), "acme", OTHER_KEY)
    assert response.status_code == 429
    assert json_error(response)["code"] == "too_many_attempts"
    assert ClaudeApiKey.objects.get(organisation=world.acme).secret.reveal() == GOOD_KEY
    # Another organisation's admins are not affected.
    assert _put_key(console(world.initech_admin), "initech", OTHER_KEY).status_code == 200


def test_key_changes_are_counted_per_user_across_their_organisations(world, clock):
    # An Admin of two organisations is held to ten changes a minute in all, though neither organisation reaches its
    # own ten: a stolen session cannot rotate keys at twice the rate by spreading them over its organisations.
    Membership.objects.create(user=world.acme_admin, organisation=world.initech, role=Role.ADMIN)
    admin = console(world.acme_admin)
    for _ in range(5):
        assert _put_key(admin, "acme", GOOD_KEY).status_code == 200
        assert _put_key(admin, "initech", GOOD_KEY).status_code == 200

    response = _put_key(admin, "initech", OTHER_KEY)

    assert response.status_code == 429
    assert json_error(response)["code"] == "too_many_attempts"
    assert ClaudeApiKey.objects.get(organisation=world.initech).secret.reveal() == GOOD_KEY
    # The organisation itself is not full: its other Admin may still change its key.
    assert _put_key(console(world.initech_admin), "initech", OTHER_KEY).status_code == 200


def test_the_limit_is_checked_before_the_keys_form_and_malformed_keys_count(world, clock):
    # The documented order: too_many_attempts (429) before claude_api_key_malformed (400).
    admin = console(world.acme_admin)
    for _ in range(10):
        assert _put_key(admin, "acme", "sk-ant-too-short").status_code == 400

    for key in ("sk-ant-too-short", OTHER_KEY):
        response = _put_key(admin, "acme", key)
        assert response.status_code == 429
        assert json_error(response)["code"] == "too_many_attempts"
    assert not ClaudeApiKey.objects.filter(organisation=world.acme).exists()


def test_a_members_refused_key_changes_do_not_lock_the_owners_out(world, clock):
    # The guard runs after the role check: refusals never reach the organisation's counter, so a
    # Member cannot stop an Owner from rotating a compromised key.
    member = console(world.acme_member)
    for _ in range(15):
        assert _put_key(member, "acme", GOOD_KEY).status_code == 403

    assert _put_key(console(world.acme_owner), "acme", OTHER_KEY).status_code == 200


def test_the_console_shows_the_refusal_next_to_the_key_field(world, clock):
    admin = console(world.acme_admin)
    for _ in range(10):
        response = admin.post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})
        assert response.status_code == 302
    response = admin.post("/orgs/acme/settings/claude-api-key/remove", {"confirm": "yes"})
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])  # as the API says it: when the guard's window ends
    assert 1 <= retry_after <= 60
    assert f"Too many changes to this key in a short time. Please try again in {_key_wait_in_words(retry_after)}." in (
        response.content.decode()
    )
    assert ClaudeApiKey.objects.filter(organisation=world.acme).exists()  # the refused removal changed nothing


def _shows_its_reference_once(response) -> None:
    page = response.content.decode()
    assert f'<p class="reference">Reference: <code>{response["X-Request-ID"]}</code></p>' in page
    assert page.count("Reference:") == 1


def test_a_refused_key_change_in_settings_shows_its_reference_and_a_malformed_key_none(world, clock):
    admin = console(world.acme_admin)
    malformed = admin.post("/orgs/acme/settings/claude-api-key/save", {"api_key": "not-a-key"})
    assert malformed.status_code == 400 and "Reference:" not in malformed.content.decode()  # the user's to mend
    for _ in range(9):
        admin.post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})

    refused = admin.post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})

    assert refused.status_code == 429
    _shows_its_reference_once(refused)


def test_a_refused_key_change_on_a_plan_without_the_card_shows_its_reference_too(world, clock):
    store_key(world.globex, GOOD_KEY)  # left behind by a downgrade: its Owner may still remove it
    owner = console(world.globex_owner)
    for _ in range(10):
        owner.post("/orgs/globex/settings/claude-api-key/remove", {"confirm": "yes"})

    refused = owner.post("/orgs/globex/settings/claude-api-key/remove", {"confirm": "yes"})

    assert refused.status_code == 429
    _shows_its_reference_once(refused)


# --- API tokens -----------------------------------------------------------------------------------------


def test_the_eleventh_new_token_in_an_hour_is_refused(world, clock):
    member = console(world.acme_member)
    for i in range(10):
        response = member.post("/orgs/acme/settings/tokens/create", {"name": f"Token {i}"})
        assert response.status_code == 200 and b"Copy it now" in response.content
    response = member.post("/orgs/acme/settings/tokens/create", {"name": "One too many"})
    assert response.status_code == 429
    assert "Too many new API tokens in a short time" in response.content.decode()
    _shows_its_reference_once(response)
    assert ApiToken.objects.filter(user=world.acme_member).count() == 10


def test_a_token_form_refused_by_the_limit_creates_its_token_when_sent_again_later(world, clock):
    # Refused, the form created nothing: sending it again after the hour must not say it "already created its token".
    member = console(world.acme_member)
    for i in range(10):
        member.post("/orgs/acme/settings/tokens/create", {"name": f"Token {i}"})
    form = {"name": "Eleventh", "once": "one-time-value-of-the-eleventh-form"}
    assert member.post("/orgs/acme/settings/tokens/create", form).status_code == 429
    clock.advance(3601)

    again = member.post("/orgs/acme/settings/tokens/create", form)

    assert again.status_code == 200 and b"Copy it now" in again.content
    assert ApiToken.objects.filter(user=world.acme_member, name="Eleventh").count() == 1


# --- Shared counters ------------------------------------------------------------------------------------

# Another app server: the same guard, run in a separate process against the same Redis.
OTHER_SERVER = """
import sys, types
import django
django.setup()
from django.test import override_settings
import django_ratelimit.core
from orgs import guards

url, prefix, now = sys.argv[1], sys.argv[2], float(sys.argv[3])
django_ratelimit.core.time = types.SimpleNamespace(time=lambda: now)
caches = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url, "KEY_PREFIX": prefix}}
with override_settings(CACHES=caches):
    for user_pk in range(1000, 1010):
        guards.key_write(user=types.SimpleNamespace(pk=user_pk), org_slug="acme")
print("ten key changes for acme")
"""


@pytest.fixture
def redis_cache(settings):
    """Django's built-in Redis cache on 127.0.0.1:6379 under a prefix of our own, removed afterwards."""
    connection = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        connection.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip("Redis is not running on 127.0.0.1:6379 (CI and the dev machines run it)")
    prefix = f"opsion-test-security-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        }
    }
    yield prefix
    stale = list(connection.scan_iter(f"{prefix}:*"))
    if stale:
        connection.delete(*stale)
    connection.close()


def test_the_counters_are_shared_by_every_app_server_through_redis(world, clock, redis_cache):
    env = base_env(
        DJANGO_SETTINGS_MODULE="opsion.settings",
        SECRET_KEY="test-secret-key-not-for-production",
        FIELD_ENCRYPTION_KEYS="b3BzaW9uLXRlc3Qtb25seS1mZXJuZXQta2V5LTAwMDE=",
        REDIS_URL=REDIS_URL,
    )
    result = run_python(["-c", OTHER_SERVER, REDIS_URL, redis_cache, str(clock.now)], env)
    assert result.returncode == 0, result.stderr
    assert redis.Redis.from_url(REDIS_URL).keys(f"{redis_cache}:*"), "the other process wrote no counter"

    response = _put_key(console(world.acme_admin), "acme", GOOD_KEY)
    assert response.status_code == 429
    assert json_error(response)["code"] == "too_many_attempts"
    assert _put_key(console(world.initech_admin), "initech", GOOD_KEY).status_code == 200


@pytest.fixture
def redis_down(settings):
    """The guards' cache pointed at a Redis that is not there (a closed port)."""
    port = closed_port()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": 0.5},
        }
    }


def test_with_redis_down_sign_in_still_works_and_operators_are_told(world, redis_down, caplog):
    client, response = _sign_in("admin@acme.test", PASSWORD)

    assert response.status_code == 302
    assert _signed_in(client)
    assert "abuse guard sign_in_attempt skipped: cache unavailable" in caplog.text


def test_with_redis_down_a_wrong_password_is_refused_not_a_500(world, redis_down):
    client, response = _sign_in("admin@acme.test", "wrong-password")

    assert response.status_code == 200
    assert not _signed_in(client)


def test_with_redis_down_key_changes_still_work(world, redis_down):
    response = _put_key(console(world.acme_admin), "acme", GOOD_KEY)

    assert response.status_code == 200
    assert ClaudeApiKey.objects.filter(organisation=world.acme).exists()


@pytest.mark.parametrize("guarded", ["key write", "reset request"])
def test_a_count_the_cache_lost_lets_the_attempt_through_as_a_cache_that_is_down_does(
    world, clock, mail, monkeypatch, guarded
):
    # A counter evicted between django-ratelimit's add and its incr (a full cache) comes back as no count at all,
    # which it answers with "limit" (count 0 of 0). The guards fail open on a cache in trouble, this one included,
    # and alike: a key write refused for it said to try again in 1 second, while a reset request went through.
    from django.core.cache import caches

    admin = console(world.acme_admin)
    attempt = {
        "key write": lambda: _put_key(admin, "acme", GOOD_KEY),
        "reset request": lambda: ask("member@acme.test", REMOTE_ADDR="203.0.113.10"),
    }[guarded]
    assert attempt().status_code in (200, 302)  # its counters are in the cache now
    sent = len(mail)

    def evicted(*args, **kwargs):
        raise ValueError("Key not found.")  # what Django's caches raise for a key that is gone

    monkeypatch.setattr(caches["default"], "incr", evicted)

    assert attempt().status_code in (200, 302)
    assert len(mail) == sent + (guarded == "reset request")  # the link was sent


def test_with_redis_down_a_password_reset_still_sends_its_link(world, redis_down, settings, mailoutbox, caplog):
    settings.EMAIL_CONFIGURED = True

    response = Client().post("/accounts/password/reset/", {"email": "member@acme.test"})

    assert response.status_code == 302
    assert mailer.wait(timeout=10)
    assert [m.to for m in mailoutbox] == [["member@acme.test"]]
    assert "abuse guard password_reset_request skipped: cache unavailable" in caplog.text


def test_with_redis_down_a_question_sent_without_javascript_is_still_asked(world, redis_down, fake_anthropic, caplog):
    # The double-submit guard fails open: with it failing closed every plain post would be told its question
    # "was asked once" (and nothing asked) for as long as Redis was away.
    client = console(world.globex_member)
    once = re.search(r'name="once" value="([^"]+)"', client.get("/orgs/globex/insights/").content.decode()).group(1)

    response = client.post("/orgs/globex/insights/", {"query": "Which reserve rules apply?", "once": once})

    assert response.status_code == 302 and "?answered=" in response["Location"]
    assert InsightQuery.objects.filter(organisation=world.globex).count() == 1
    assert "abuse guard claim_form skipped: cache unavailable" in caplog.text


def _guard_errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "opsion.guards" and r.levelno == logging.ERROR]


@pytest.fixture
def redis_refusing_its_database(settings, redis_server):
    """The real Redis, asked for database 99 of its 16: it refuses every command (start-up cannot know the limit)."""
    assert redis_server.config_get("databases")["databases"] == "16"
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:6379/99",
            "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
        }
    }


def test_with_redis_refusing_its_database_the_guards_fail_open_and_say_why_once(
    world, redis_refusing_its_database, caplog
):
    # Each guarded request logged the same ERROR line, naming only "ResponseError": a flood that never said why.
    for password in ("wrong-password", "wrong-again", PASSWORD):
        client, response = _sign_in("admin@acme.test", password)
    assert response.status_code == 302 and _signed_in(client)
    for key in (GOOD_KEY, OTHER_KEY):
        assert _put_key(console(world.acme_admin), "acme", key).status_code == 200

    errors = _guard_errors(caplog)
    guards_named = [e.split(" skipped")[0].removeprefix("abuse guard ") for e in errors]
    assert guards_named == ["sign_in_attempt", "sign_in_succeeded", "key_write"], errors
    assert all("cache unavailable (ResponseError: DB index is out of range)" in e for e in errors), errors


def test_a_guard_failing_on_something_other_than_redis_logs_its_type_alone(world, monkeypatch, caplog):
    # Redis's reasons are safe to log (they name at most a host and port); another error's text could hold anything
    # the guard was handed, such as the e-mail address typed.
    from django.core.cache import caches

    def broken(*args, **kwargs):
        raise RuntimeError("holding admin@acme.test")

    monkeypatch.setattr(caches["default"], "add", broken)

    _, response = _sign_in("admin@acme.test", PASSWORD)

    assert response.status_code == 302
    assert "abuse guard sign_in_attempt skipped: cache unavailable (RuntimeError)" in caplog.text
    assert "admin@acme.test" not in caplog.text


@pytest.fixture
def redis_user(redis_server):
    """A Redis ACL user of our own, disabled until the test enables it: a Redis that refuses, then answers."""
    name, password = f"opsion-test-{uuid.uuid4().hex[:12]}", "redis-password-canary-7f3a"
    redis_server.acl_setuser(name, enabled=False, passwords=[f"+{password}"], keys=["*"], commands=["+@all"])
    yield types.SimpleNamespace(name=name, url=f"redis://{name}:{password}@127.0.0.1:6379/0", password=password)
    redis_server.acl_deluser(name)


def test_a_guard_says_when_it_counts_again_and_never_logs_the_redis_password(
    world, settings, redis_server, redis_user, caplog
):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_user.url}
    }
    _sign_in("admin@acme.test", "wrong-password")
    _sign_in("admin@acme.test", "wrong-password")
    redis_server.acl_setuser(redis_user.name, enabled=True)

    _sign_in("admin@acme.test", "wrong-password")

    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "opsion.guards"]
    assert [level for level, _ in lines] == ["ERROR", "WARNING"], lines
    assert "sign_in_attempt skipped: cache unavailable (AuthenticationError: " in lines[0][1]
    assert lines[1][1].startswith("abuse guard sign_in_attempt counting again"), lines
    assert redis_user.password not in caplog.text


# An app server with the production cache settings (REDIS_URL) runs the sign-in and key-write guards.
GUARDED_REQUESTS = """
import time, types
import django
django.setup()
from django.test import RequestFactory
from orgs import guards

started = time.monotonic()
request = RequestFactory().post("/accounts/login/", {"username": "admin@acme.test", "password": "x"})
assert guards.sign_in_attempt(request) is None  # let through: the guard failed open
guards.key_write(user=types.SimpleNamespace(pk=1), org_slug="acme")
print(f"guards answered in {time.monotonic() - started:.1f}s")
"""


@pytest.fixture
def hung_redis():
    """A Redis address that accepts connections and never answers (hung, or its replies lost on the way)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted = []

    def accept() -> None:
        while True:
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()
    for connection in accepted:
        connection.close()


def test_with_redis_hung_the_guards_give_up_within_seconds_and_fail_open(hung_redis):
    # Without a socket timeout each sign-in would wait for ever, one worker thread apiece, until the
    # instance stopped answering anything (its /healthz included).
    env = base_env(
        DJANGO_SETTINGS_MODULE="opsion.settings",
        SECRET_KEY="test-secret-key-not-for-production",
        FIELD_ENCRYPTION_KEYS="b3BzaW9uLXRlc3Qtb25seS1mZXJuZXQta2V5LTAwMDE=",
        REDIS_URL=hung_redis,
    )
    started = time.monotonic()

    result = run_python(["-c", GUARDED_REQUESTS], env, timeout=30)

    assert result.returncode == 0, result.stderr[-2000:]
    assert time.monotonic() - started < 20
    assert "abuse guard sign_in_attempt skipped: cache unavailable (TimeoutError:" in result.stderr
    assert "abuse guard key_write skipped: cache unavailable (TimeoutError:" in result.stderr  # named, for operators


def test_a_members_refused_key_removals_do_not_lock_the_owners_out(world, clock):
    # An Owner must still be able to remove a compromised key however often a Member tried first.
    store_key(world.acme, GOOD_KEY)
    member = token_client(world.acme_member)
    for _ in range(15):
        assert api_delete_key(member, "acme").json()["error"]["code"] == "forbidden_role"

    owner = console(world.acme_owner)

    assert owner.post("/orgs/acme/settings/claude-api-key/remove", {"confirm": "yes"}).status_code == 302
    assert not ClaudeApiKey.objects.exists()
