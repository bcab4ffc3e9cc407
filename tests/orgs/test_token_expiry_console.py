"""Token expiry in the console: the Expires choice in the form, each token's expiry in the list (and on the home page
of someone in no organisation), a notice before one expires, the cap's refusal, and a list that stays bounded."""

import re
from datetime import timedelta

from django.utils import timezone

from orgs import models, selectors, services
from orgs.models import TOKEN_EXPIRING_SOON, ApiToken, Membership
from tests.clients import console

SETTINGS = "/orgs/acme/settings/"
CREATE = "/orgs/acme/settings/tokens/create"


def row_of(page: str, name: str) -> str:
    return re.search(rf"<tr>\s*<td[^>]*>{re.escape(name)}<.*?</tr>", page, re.S).group(0)


def text_of(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def expires_cell(row: str) -> str:
    """The Expires column's cell of a row (under the header "Expires")."""
    return text_of(re.search(r'<td class="col-optional table__wrap">.*?</td>', row, re.S).group(0))


def phone_line(row: str) -> str:
    """The expiry a phone shows under the token's name, where the Expires column and its header are hidden."""
    return text_of(
        re.search(r'<span class="token-narrow"><code>[^<]*</code>(<span>.*?</span>)</span>', row, re.S).group(1)
    )


def make(user, name: str, *, expires_in: timedelta | None) -> ApiToken:
    token, _ = services.api_token_create(user=user, name=name)
    at = None if expires_in is None else timezone.now() + expires_in
    ApiToken.objects.filter(pk=token.pk).update(expires_at=at)
    return ApiToken.objects.get(pk=token.pk)


def test_the_form_offers_thirty_days_ninety_or_a_year_ninety_chosen_and_never_never(world):
    page = console(world.acme_admin).get(SETTINGS).content.decode()

    select = re.search(r'<select name="expires" id="id_expires"[^>]*>.*?</select>', page, re.S).group(0)
    assert '<label for="id_expires">Expires</label>' in page
    options = re.findall(r'<option value="(\d+)"( selected)?>([^<]+)</option>', select)
    assert [(value, label) for value, _, label in options] == [("30", "30 days"), ("90", "90 days"), ("365", "1 year")]
    assert [value for value, selected, _ in options if selected] == ["90"]
    assert "never" not in select.lower()


def test_the_chosen_lifetime_is_the_tokens_and_the_page_says_when_it_expires(world):
    before = timezone.now()

    response = console(world.acme_admin).post(CREATE, {"name": "Yearly audit", "expires": "365"})

    token = ApiToken.objects.get()
    assert before + timedelta(days=365) <= token.expires_at <= timezone.now() + timedelta(days=365)
    page = response.content.decode()
    assert f"It expires on {token.expires_at:%-d %b %Y}." in text_of(page)


def test_a_form_without_the_choice_makes_a_ninety_day_token(world):
    # A page loaded before this choice existed posts no `expires`: the default, never "no expiry".
    before = timezone.now()

    assert console(world.acme_admin).post(CREATE, {"name": "Old page"}).status_code == 200

    token = ApiToken.objects.get()
    assert before + timedelta(days=90) <= token.expires_at <= timezone.now() + timedelta(days=90)


def test_a_lifetime_not_offered_is_refused_beside_the_field_keeping_the_name(world):
    response = console(world.acme_admin).post(CREATE, {"name": "Forever", "expires": "100000"})

    page = response.content.decode()
    assert response.status_code == 400
    assert 'id="token-expires-error"' in page
    assert re.search(r'<select name="expires" id="id_expires"[^>]*aria-invalid="true"', page)
    assert re.search(r'name="name" id="id_name"[^>]* value="Forever"', page)
    assert not ApiToken.objects.exists()


def test_each_token_says_when_it_expires(world):
    far = make(world.acme_admin, "Nightly export", expires_in=timedelta(days=80))
    make(world.acme_admin, "Soon", expires_in=timedelta(days=3, hours=2))
    make(world.acme_admin, "Gone", expires_in=-timedelta(days=2, hours=1))

    page = console(world.acme_admin).get(SETTINGS).content.decode()

    soon_at, gone_at = (ApiToken.objects.get(name=name).expires_at for name in ("Soon", "Gone"))
    # Under the column headed Expires the word is not said again; on a phone, where that header is hidden, it is.
    assert expires_cell(row_of(page, "Nightly export")) == f"{far.expires_at:%-d %b %Y}"
    assert phone_line(row_of(page, "Nightly export")) == f"Expires {far.expires_at:%-d %b %Y}"
    assert expires_cell(row_of(page, "Soon")) == f"{soon_at:%-d %b %Y, %H:%M} UTC (in 3 days)"
    assert phone_line(row_of(page, "Soon")) == f"Expires {soon_at:%-d %b %Y, %H:%M} UTC (in 3 days)"
    assert expires_cell(row_of(page, "Gone")) == f"Expired {gone_at:%-d %b %Y, %H:%M} UTC (2 days ago)"
    assert phone_line(row_of(page, "Gone")) == f"Expired {gone_at:%-d %b %Y, %H:%M} UTC (2 days ago)"
    for name in ("Nightly export", "Soon", "Gone"):  # the exact instant stays machine-readable in each
        expires_at = ApiToken.objects.get(name=name).expires_at
        assert row_of(page, name).count(f'<time datetime="{expires_at.isoformat()}">') == 2


def test_a_token_from_before_expiry_says_it_has_none_and_suggests_replacing_it(world):
    make(world.acme_admin, "Legacy", expires_in=None)

    row = text_of(row_of(console(world.acme_admin).get(SETTINGS).content.decode(), "Legacy"))

    assert "No expiry" in row
    assert "Replace it with a token that expires, then revoke this one." in row


def test_active_tokens_come_first_newest_first_then_expired_ones_most_recently_expired_first(world):
    make(world.acme_admin, "expired long ago", expires_in=-timedelta(days=20))
    make(world.acme_admin, "older active", expires_in=timedelta(days=10))
    make(world.acme_admin, "expired yesterday", expires_in=-timedelta(days=1))
    make(world.acme_admin, "newer active", expires_in=timedelta(days=80))

    page = console(world.acme_admin).get(SETTINGS).content.decode()

    names = re.findall(r"<tr>\s*<td[^>]*>([^<]+)<", page)
    assert names == ["newer active", "older active", "expired yesterday", "expired long ago"]


def test_an_expired_token_stays_listed_until_revoked(world):
    gone = make(world.acme_admin, "Gone", expires_in=-timedelta(days=2))
    client = console(world.acme_admin)

    assert "Gone" in client.get(SETTINGS).content.decode()
    client.post(
        f"/orgs/acme/settings/tokens/{gone.pk}/revoke", {"confirm": "yes"}, follow=True
    )  # its message ("“Gone” revoked") read
    assert "Gone" not in client.get(SETTINGS).content.decode()


def test_a_token_expired_over_thirty_days_ago_is_no_longer_listed(world):
    make(world.acme_admin, "Month-old", expires_in=-timedelta(days=31))
    make(world.acme_admin, "Recent", expires_in=-timedelta(days=29))

    page = console(world.acme_admin).get(SETTINGS).content.decode()

    assert "Month-old" not in page and "Recent" in page


def test_the_list_is_bounded_by_the_cap_and_at_most_as_many_expired_ones(world):
    for n in range(25):  # expired first: the cap counts only active ones
        make(world.acme_admin, f"expired {n}", expires_in=-timedelta(days=1, minutes=n))
    for n in range(20):
        make(world.acme_admin, f"active {n}", expires_in=timedelta(days=30))

    page = console(world.acme_admin).get(SETTINGS).content.decode()

    names = re.findall(r"<tr>\s*<td[^>]*>([^<]+)<", page)
    assert len([n for n in names if n.startswith("active")]) == 20
    assert [n for n in names if n.startswith("expired")] == [f"expired {n}" for n in range(20)]


def test_a_notice_names_a_token_expiring_within_seven_days(world):
    make(world.acme_admin, "Soon", expires_in=timedelta(days=3, hours=2))
    make(world.acme_admin, "Later", expires_in=timedelta(days=8))

    page = console(world.acme_admin).get(SETTINGS).content.decode()

    notice = re.search(r'<div class="alert alert--warning" id="tokens-expiring"[^>]*>.*?</div>', page, re.S)
    assert notice, "no notice"
    assert 'role="status"' in notice.group(0)
    words = text_of(notice.group(0))
    assert "“Soon” expires in 3 days" in words
    assert "Later" not in words
    assert "Create a new token and switch to it before then" in words


def test_the_notice_names_the_soonest_to_expire_first(world):
    make(world.acme_admin, "In two days", expires_in=timedelta(days=2))
    make(world.acme_admin, "In five days", expires_in=timedelta(days=5))  # newer: listed first in the table

    page = console(world.acme_admin).get(SETTINGS).content.decode()

    words = text_of(re.search(r'<div[^>]*id="tokens-expiring"[^>]*>.*?</div>', page, re.S).group(0))
    assert words.index("In two days") < words.index("In five days")


def test_a_token_lists_as_expiring_at_seven_days_to_the_instant_and_as_expired_from_its_expiry(world):
    now = timezone.now()
    week, expired = (services.api_token_create(user=world.acme_admin, name=n, now=now)[0] for n in ("week", "ended"))
    ApiToken.objects.filter(pk=week.pk).update(expires_at=now + TOKEN_EXPIRING_SOON)
    ApiToken.objects.filter(pk=expired.pk).update(expires_at=now)  # the instant the API starts refusing it

    listed = selectors.api_tokens_listed(world.acme_admin, now=now)

    assert [t.name for t in listed.tokens] == ["week", "ended"]  # the active one, then the expired one
    assert [t.name for t in listed.expiring_soon] == ["week"]


def test_a_token_expired_thirty_days_ago_to_the_instant_is_still_listed(world):
    now = timezone.now()
    token, _ = services.api_token_create(user=world.acme_admin, name="Old CI", now=now)
    ApiToken.objects.filter(pk=token.pk).update(expires_at=now - models.EXPIRED_TOKENS_LISTED_FOR)

    assert [t.name for t in selectors.api_tokens_listed(world.acme_admin, now=now).tokens] == ["Old CI"]


def test_no_notice_when_nothing_expires_within_seven_days(world):
    make(world.acme_admin, "Later", expires_in=timedelta(days=8))
    make(world.acme_admin, "Gone", expires_in=-timedelta(days=1))
    make(world.acme_admin, "Legacy", expires_in=None)

    assert 'id="tokens-expiring"' not in console(world.acme_admin).get(SETTINGS).content.decode()


def test_the_twenty_first_token_is_refused_with_the_name_kept(world):
    for n in range(20):
        make(world.acme_admin, f"t{n}", expires_in=timedelta(days=30))
    client = console(world.acme_admin)

    response = client.post(CREATE, {"name": "Nightly compliance export", "expires": "90"})

    page = response.content.decode()
    assert response.status_code == 409
    assert "You have 20 active tokens: revoke one you no longer use first." in page
    assert 'id="new-token"' not in page
    assert re.search(r'name="name" id="id_name"[^>]* value="Nightly compliance export"', page)
    assert ApiToken.objects.filter(user=world.acme_admin).count() == 20


def test_someone_in_no_organisation_sees_their_tokens_expiry_and_the_notice_at_home(world):
    make(world.acme_member, "Soon", expires_in=timedelta(days=2, hours=1))
    make(world.acme_member, "Legacy", expires_in=None)
    Membership.objects.filter(user=world.acme_member).delete()

    page = console(world.acme_member).get("/").content.decode()

    soon_at = ApiToken.objects.get(name="Soon").expires_at
    assert expires_cell(row_of(page, "Soon")) == f"{soon_at:%-d %b %Y, %H:%M} UTC (in 2 days)"
    assert phone_line(row_of(page, "Soon")) == f"Expires {soon_at:%-d %b %Y, %H:%M} UTC (in 2 days)"
    assert "No expiry" in text_of(row_of(page, "Legacy"))
    assert 'id="tokens-expiring"' in page


def test_refusals_at_the_cap_spend_none_of_the_hours_new_tokens(world):
    tokens = [make(world.acme_admin, f"t{n}", expires_in=timedelta(days=30)) for n in range(20)]
    client = console(world.acme_admin)
    for _ in range(11):  # more than the 10 an hour allows
        refused = client.post(CREATE, {"name": "Nightly compliance export", "expires": "90"})
        assert refused.status_code == 409
        assert "You have 20 active tokens" in refused.content.decode()

    tokens[0].delete()  # the owner revokes one they no longer use: the next creation goes through
    created = client.post(CREATE, {"name": "Nightly compliance export", "expires": "90"})

    assert created.status_code == 200 and 'id="new-token"' in created.content.decode()
