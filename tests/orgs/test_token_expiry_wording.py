"""The words the token list uses for when a token expires (orgs_tags), at the times where they change: the Expires
column's cell (under its header, so without the word again), the phone's line and the confirmation's (no header
there, so with it), and the notice's "in 3 days", rounded to the nearest unit rather than down."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.template import Context, Template

from orgs.models import ApiToken

NOW = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)  # a Monday, 10:00 UTC


def render(expires_in: timedelta | None, template: str) -> str:
    token = ApiToken(name="t", prefix="opsn_abcdefg", expires_at=None if expires_in is None else NOW + expires_in)
    with mock.patch("django.utils.timezone.now", return_value=NOW):
        return Template("{% load orgs_tags %}" + template).render(Context({"t": token}))


def cell(expires_in):
    return render(expires_in, "{{ t|token_expiry }}")


def labelled(expires_in):
    return render(expires_in, "{{ t|token_expiry_labelled }}")


def expires_in(expires_in):
    return render(expires_in, "{{ t|token_expires_in }}")


D, H, M, S = timedelta(days=1), timedelta(hours=1), timedelta(minutes=1), timedelta(seconds=1)


@pytest.mark.parametrize(
    ("until", "words"),
    [
        (None, "No expiry"),
        # More than a week away: the date alone, without "Expires" under the column headed Expires.
        (80 * D, "20 May 2027"),
        (7 * D + S, "8 Mar 2027"),
        # Within the week: the time too (UTC, as every time on the page), and how long, to the nearest unit.
        (7 * D, "8 Mar 2027, 10:00 UTC (in 7 days)"),
        (3 * D + 12 * H, "4 Mar 2027, 22:00 UTC (in 4 days)"),
        (3 * D + 11 * H + 59 * M, "4 Mar 2027, 21:59 UTC (in 3 days)"),
        (2 * D + 23 * H, "4 Mar 2027, 09:00 UTC (in 3 days)"),  # not "in 2 days"
        (2 * D + 2 * H, "3 Mar 2027, 12:00 UTC (in 2 days)"),
        (48 * H + 30 * M, "3 Mar 2027, 10:30 UTC (in 2 days)"),
        (47 * H + 40 * M, "3 Mar 2027, 09:40 UTC (in 48 hours)"),  # hours up to two days: "tomorrow" never "in 2 days"
        (D + 13 * H, "Tomorrow, 23:00 UTC (in 37 hours)"),  # tomorrow is UTC's, as the time beside it says
        (23 * H + 40 * M, "Tomorrow, 09:40 UTC (in 24 hours)"),
        (14 * H, "Tomorrow, 00:00 UTC (in 14 hours)"),
        (13 * H + 59 * M, "Today, 23:59 UTC (in 14 hours)"),
        (5 * H, "Today, 15:00 UTC (in 5 hours)"),
        (59 * M + 40 * S, "Today, 10:59 UTC (in 1 hour)"),
        (59 * M + 20 * S, "Today, 10:59 UTC (in 59 minutes)"),
        (M + 29 * S, "Today, 10:01 UTC (in 1 minute)"),
        (29 * S, "Today, 10:00 UTC (in less than a minute)"),
        # From its expiry on, the API refuses it: "Expired", which the column's header does not say.
        (timedelta(0), "Expired today, 10:00 UTC (less than a minute ago)"),
        (-10 * H, "Expired today, 00:00 UTC (10 hours ago)"),
        (-11 * H, "Expired yesterday, 23:00 UTC (11 hours ago)"),
        (-(2 * D + H), "Expired 27 Feb 2027, 09:00 UTC (2 days ago)"),
        (-(2 * D + 13 * H), "Expired 26 Feb 2027, 21:00 UTC (3 days ago)"),
        (-7 * D, "Expired 22 Feb 2027, 10:00 UTC (7 days ago)"),
        (-(7 * D + S), "Expired 22 Feb 2027 (7 days ago)"),
        (-20 * D, "Expired 9 Feb 2027 (20 days ago)"),
    ],
)
def test_the_expires_cell_gives_the_date_and_a_rounded_hint_without_repeating_its_header(until, words):
    assert cell(until) == words
    assert not cell(until).startswith("Expires")


@pytest.mark.parametrize(
    ("until", "words"),
    [
        (None, "No expiry"),
        (80 * D, "Expires 20 May 2027"),
        (2 * D + 23 * H, "Expires 4 Mar 2027, 09:00 UTC (in 3 days)"),
        (14 * H, "Expires tomorrow, 00:00 UTC (in 14 hours)"),
        (5 * H, "Expires today, 15:00 UTC (in 5 hours)"),
        (-11 * H, "Expired yesterday, 23:00 UTC (11 hours ago)"),
        (-20 * D, "Expired 9 Feb 2027 (20 days ago)"),
    ],
)
def test_where_no_column_header_says_expires_the_words_say_it(until, words):
    # The phone's line under the token's name (the column is hidden there) and the revoke confirmation.
    assert labelled(until) == words


@pytest.mark.parametrize(
    ("until", "words"),
    [
        (7 * D, "7 days"),
        (3 * D + 12 * H, "4 days"),
        (2 * D + 23 * H, "3 days"),
        (2 * D + 11 * H, "2 days"),
        (49 * H, "2 days"),
        (23 * H + 40 * M, "24 hours"),
        (5 * H + 29 * M, "5 hours"),
        (H + 30 * M, "2 hours"),
        (59 * M + 40 * S, "1 hour"),
        (M, "1 minute"),
        (29 * S, "less than a minute"),
    ],
)
def test_the_notices_expires_in_rounds_to_the_nearest_unit(until, words):
    assert expires_in(until) == words
