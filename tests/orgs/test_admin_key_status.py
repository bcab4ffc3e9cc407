"""What staff see of an organisation's stored key: what Anthropic last said of it and whether Opsion can open it;
never the key, any part of it, or its ciphertext."""

import logging
import re
import sqlite3
from contextlib import contextmanager
from unittest import mock

import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from orgs import crypto, services
from orgs.models import ClaudeApiKey, KeyStatus, Organisation, Plan
from tests.base import CANARY_KEY, GOOD_KEY
from tests.clients import console
from tests.orgs.helpers import store_key
from tests.orgs.test_admin import ORGS, page_text, rows_of

AT = (2026, 3, 12, 8, 43)


@pytest.fixture
def staff(world):
    return console(world.staff)


def answered(org, status: str) -> ClaudeApiKey:
    """Acme's canary key, as Anthropic last answered it on 12 Mar 2026 at 08:43 UTC."""
    row = store_key(org, CANARY_KEY)
    services.claude_api_key_mark(org=org, status=status, saved_at=row.saved_at)
    ClaudeApiKey.objects.filter(pk=row.pk).update(status_changed_at=timezone.now().replace(*AT, 0, 0))
    return ClaudeApiKey.objects.get(pk=row.pk)


def assert_nothing_of_the_key(page: str, row: ClaudeApiKey) -> None:
    ciphertext = ClaudeApiKey.objects.get(pk=row.pk).secret.ciphertext  # as stored
    for part in (CANARY_KEY, CANARY_KEY[:14], CANARY_KEY[-8:], ciphertext, ciphertext[-24:], ciphertext[10:40]):
        assert part not in page, part
    assert "gAAAA" not in page  # how every Fernet token starts


@pytest.mark.parametrize(
    "status, said",
    [
        (KeyStatus.VALID, "Accepted by Anthropic since 12 Mar 2026, 08:43 UTC."),
        (KeyStatus.INVALID, "Rejected by Anthropic on 12 Mar 2026, 08:43 UTC."),
    ],
)
def test_the_change_page_says_what_anthropic_last_said_of_the_key_and_when(world, staff, status, said):
    # Staff asked "does their key work?" could only say that one was stored.
    row = answered(world.acme, status)

    response = staff.get(f"{ORGS}{world.acme.pk}/change/")

    text = page_text(response)
    assert f"Anthropic's answer: {said}" in text
    assert "Encryption: A configured FIELD_ENCRYPTION_KEYS entry opens it." in text
    assert_nothing_of_the_key(response.content.decode(), row)


def test_a_key_not_yet_used_says_so_and_when_it_was_saved(world, staff):
    row = store_key(world.acme, CANARY_KEY, by=world.acme_admin)
    ClaudeApiKey.objects.filter(pk=row.pk).update(saved_at=timezone.now().replace(*AT, 0, 0))

    response = staff.get(f"{ORGS}{world.acme.pk}/change/")

    text = page_text(response)
    said = "None yet: Anthropic has neither accepted nor rejected it since it was saved on 12 Mar 2026, 08:43 UTC."
    assert f"Anthropic's answer: {said}" in text
    assert_nothing_of_the_key(response.content.decode(), row)


def test_a_key_no_configured_encryption_key_opens_says_so(world, staff, settings, caplog):
    row = answered(world.acme, KeyStatus.VALID)
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # the key it was sealed with is gone

    with caplog.at_level(logging.ERROR, logger="opsion"):
        response = staff.get(f"{ORGS}{world.acme.pk}/change/")

    text = page_text(response)
    assert response.status_code == 200
    assert (
        "Encryption: No configured FIELD_ENCRYPTION_KEYS entry opens it: its AI Insights queries are refused until "
        "an Owner or Admin saves the key again, or the encryption key it was sealed with is configured again."
    ) in text
    assert_nothing_of_the_key(response.content.decode(), row)
    assert CANARY_KEY not in caplog.text


def test_an_organisation_without_a_key_shows_no_answer_or_encryption(world, staff):
    text = page_text(staff.get(f"{ORGS}{world.acme.pk}/change/"))

    assert "Claude API key: None stored." in text
    assert "Anthropic's answer" not in text and "Encryption:" not in text


def test_the_add_page_says_a_new_organisation_has_no_key_stored(world, staff):
    # It said "Claude API key: -", admin's word for a value it could not read.
    text = page_text(staff.get(f"{ORGS}add/"))

    assert "Claude API key: None stored." in text and "Claude API key: -" not in text


def test_staff_who_may_only_view_organisations_see_the_same(world):
    from django.contrib.auth.models import Permission

    from tests.base import make_user

    viewer = make_user("viewer@opsion.test", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_organisation"))
    row = answered(world.acme, KeyStatus.INVALID)

    response = console(viewer).get(f"{ORGS}{world.acme.pk}/change/")

    assert "Anthropic's answer: Rejected by Anthropic on 12 Mar 2026, 08:43 UTC." in page_text(response)
    assert_nothing_of_the_key(response.content.decode(), row)


def store_unreadable_key(org, *, how: str = "entry-dropped") -> ClaudeApiKey:
    """A key sealed with an encryption key no longer in FIELD_ENCRYPTION_KEYS (dropped too early), or one whose
    ciphertext was copied from another organisation's row (someone with write access to the database)."""
    if how == "copied-from-another-organisation":
        other = Organisation.objects.create(slug="umbrella", name="Umbrella", plan=Plan.INSTITUTIONAL)
        sealed = store_key(other, CANARY_KEY).secret.ciphertext
    else:
        sealed = Fernet(Fernet.generate_key()).encrypt(CANARY_KEY.encode()).decode()
    return ClaudeApiKey.objects.create(organisation=org, secret=crypto.Sealed(sealed))


class TestTheListSaysWhichStoredKeysCannotBeOpened:
    # The list said "In use" of a key no configured entry opens, whose organisation's queries are all refused.

    @pytest.mark.parametrize("how", ["entry-dropped", "copied-from-another-organisation"])
    def test_a_key_no_configured_entry_opens_reads_stored_unreadable(self, world, staff, how):
        row = store_unreadable_key(world.acme, how=how)
        store_key(world.initech, GOOD_KEY)

        response = staff.get(ORGS)

        rows = rows_of(response.content.decode())
        assert '<td class="field-claude_api_key_state">Stored, unreadable</td>' in rows["Acme Digital Assets"]
        assert '<td class="field-claude_api_key_state">In use</td>' in rows["Initech Custody"]
        assert_nothing_of_the_key(response.content.decode(), row)

    def test_on_a_plan_without_byom_it_still_reads_unused(self, world, staff):
        store_unreadable_key(world.globex)  # Professional: no query would use it, readable or not

        rows = rows_of(staff.get(ORGS).content.decode())

        assert '<td class="field-claude_api_key_state">Stored, unused on this plan</td>' in rows["Globex Payments"]

    def test_the_filter_tells_unreadable_from_in_use(self, world, staff):
        store_unreadable_key(world.acme)
        store_key(world.initech, GOOD_KEY)
        store_unreadable_key(world.globex)

        unreadable = staff.get(ORGS, {"claude_api_key": "unreadable"})
        in_use = staff.get(ORGS, {"claude_api_key": "in_use"})
        unused = staff.get(ORGS, {"claude_api_key": "unused"})

        assert set(rows_of(unreadable.content.decode())) == {"Acme Digital Assets"}
        assert set(rows_of(in_use.content.decode())) == {"Initech Custody"}
        assert set(rows_of(unused.content.decode())) == {"Globex Payments"}
        assert "Stored, unreadable" in page_text(staff.get(ORGS))  # offered as a choice

    def test_the_change_page_says_stored_unreadable_too(self, world, staff):
        store_unreadable_key(world.acme)

        text = page_text(staff.get(f"{ORGS}{world.acme.pk}/change/"))

        assert "Claude API key: Stored, unreadable. Remove it with the list's action" in text

    def test_the_list_reads_no_more_queries_for_more_stored_keys(self, world, staff):
        # Each row's key is judged from what the list's own query read: no query per row.
        store_key(world.acme, GOOD_KEY)
        with CaptureQueriesContext(connection) as few:
            staff.get(ORGS)
        byom_organisations(6, "more", Plan.INSTITUTIONAL)

        with CaptureQueriesContext(connection) as many:
            page = staff.get(ORGS).content.decode()

        assert page.count("Stored, unreadable</td>") == 3
        assert len(many) == len(few)


def byom_organisations(count: int, slug: str, plan: Plan) -> None:
    """`count` organisations on `plan` (slugs `slug-0`, `slug-1` …), each with a key: a good one, then one no
    configured encryption key opens, in turn."""
    for n in range(count):
        org = Organisation.objects.create(slug=f"{slug}-{n}", name=f"{slug.title()} {n}", plan=plan)
        if n % 2:
            store_unreadable_key(org)
        else:
            store_key(org, GOOD_KEY)


@contextmanager
def few_sql_variables():
    """SQLite as some builds have it: at most 100 values bound per statement (upstream SQLite allows 32,766, 999
    before 3.32; Debian's 250,000). Elsewhere the limit is left as it is and the test checks the counts alone."""
    if connection.vendor != "sqlite":
        yield
        return
    connection.ensure_connection()
    raw = connection.connection
    before = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)
    try:
        yield
    finally:
        raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, before)


@pytest.mark.parametrize("readable, unreadable", [(150, 330), (330, 150)])
def test_the_filter_counts_every_key_however_many_whatever_the_databases_variable_limit(
    world, staff, readable, unreadable
):
    # Both choices put an id of every key on one side into the query's SQL, one bound value each: past the
    # database's limit on bound values (tens of thousands of keys, on a SQLite built with the upstream limit), the
    # page was a 500, "too many SQL variables". Either side may be the larger (a dropped encryption key leaves
    # nearly all unreadable).
    lost = Fernet(Fernet.generate_key())
    Organisation.objects.bulk_create(
        Organisation(slug=f"many-{n}", name=f"Many {n}", plan=Plan.INSTITUTIONAL) for n in range(readable + unreadable)
    )
    ClaudeApiKey.objects.bulk_create(
        ClaudeApiKey(
            organisation_id=org.pk,
            secret=GOOD_KEY if n < readable else crypto.Sealed(lost.encrypt(CANARY_KEY.encode()).decode()),
        )
        for n, org in enumerate(Organisation.objects.filter(slug__startswith="many-").order_by("pk"))
    )

    with few_sql_variables():
        in_use = staff.get(ORGS, {"claude_api_key": "in_use"})
        stored_unreadable = staff.get(ORGS, {"claude_api_key": "unreadable"})
        counted = staff.get(ORGS, {"_facets": "1"})  # each choice's count, both choices' ids in one statement

    assert in_use.status_code == stored_unreadable.status_code == counted.status_code == 200
    assert in_use.context["cl"].result_count == readable
    assert stored_unreadable.context["cl"].result_count == unreadable


def states_in_order(response) -> list[str]:
    """The key column of each row, top to bottom."""
    return [
        re.search(r'<td class="field-claude_api_key_state">([^<]*)</td>', row).group(1)
        for row in rows_of(response.content.decode()).values()
    ]


def key_column(response) -> int:
    return response.context["cl"].list_display.index("claude_api_key_state")


class TestSortingByTheKeyColumnGroupsRowsByTheStateShown:
    # The sort was on whether a key is stored: "In use" and "Stored, unreadable" rows came interleaved (and "Stored,
    # unused on this plan" among them), so staff sorting to find the unreadable keys had to read every row.

    @pytest.fixture
    def keys(self, world):
        """Keys made in an order that interleaves the states by primary key, the sort's tie-break."""
        rows = [store_unreadable_key(world.acme), store_key(world.initech, GOOD_KEY), store_key(world.globex, GOOD_KEY)]
        for n, unreadable in enumerate([False, True, False, True]):
            org = Organisation.objects.create(slug=f"sort-{n}", name=f"Sort {n}", plan=Plan.INSTITUTIONAL)
            rows.append(store_unreadable_key(org) if unreadable else store_key(org, GOOD_KEY))
        Organisation.objects.create(slug="sort-none", name="Sort none", plan=Plan.CUSTOM)
        return rows

    def test_ascending_goes_in_use_unreadable_unused_then_none(self, world, staff, keys):
        column = key_column(staff.get(ORGS))

        response = staff.get(ORGS, {"o": str(column)})

        assert states_in_order(response) == ["In use"] * 3 + ["Stored, unreadable"] * 3 + [
            "Stored, unused on this plan"
        ] + ["None stored"]
        for row in keys:
            assert_nothing_of_the_key(response.content.decode(), row)

    def test_descending_is_the_reverse(self, world, staff, keys):
        column = key_column(staff.get(ORGS))

        response = staff.get(ORGS, {"o": f"-{column}"})

        assert (
            states_in_order(response)
            == ["None stored"] + ["Stored, unused on this plan"] + ["Stored, unreadable"] * 3 + ["In use"] * 3
        )

    def test_it_sorts_within_a_filter_and_by_a_second_column(self, world, staff, keys):
        listed = staff.get(ORGS).context["cl"].list_display
        column, name = listed.index("claude_api_key_state"), listed.index("name")

        response = staff.get(ORGS, {"o": f"{column}.-{name}", "plan__exact": Plan.INSTITUTIONAL})

        assert list(rows_of(response.content.decode())) == [
            "Sort 2",
            "Sort 0",
            "Sort 3",
            "Sort 1",
            "Acme Digital Assets",
        ]

    def test_an_order_past_the_last_column_is_ignored(self, world, staff, keys):
        response = staff.get(ORGS, {"o": "99.-98.x"})

        assert response.status_code == 200 and len(states_in_order(response)) == 8


def test_the_filter_and_its_counts_check_each_keys_signature_once_per_view(world, staff):
    # With the counts shown (?_facets=1), the filter checked every key on a BYOM plan once for each of its two counts
    # and, a choice picked, again for the list and again for the plan filter's counts; each row shown checked its own
    # key once more. One check each answers all of them.
    byom_organisations(5, "count", Plan.CUSTOM)
    store_key(world.globex, GOOD_KEY)  # Professional: unused, not checked at all
    byom_keys = 5
    checks = mock.patch.object(
        MultiFernet, "extract_timestamp", autospec=True, side_effect=MultiFernet.extract_timestamp
    )

    with checks as counted:
        counts = staff.get(ORGS, {"_facets": "1"})
    assert counted.call_count == byom_keys
    with checks as counted:
        chosen = staff.get(ORGS, {"_facets": "1", "claude_api_key": "unreadable", "o": str(key_column(counts))})
    assert counted.call_count == byom_keys

    assert "In use (3)" in page_text(counts) and "Stored, unreadable (2)" in page_text(counts)
    assert "Stored, unused on this plan (1)" in page_text(counts)
    assert set(rows_of(chosen.content.decode())) == {"Count 1", "Count 3"}
    assert states_in_order(chosen) == ["Stored, unreadable"] * 2
