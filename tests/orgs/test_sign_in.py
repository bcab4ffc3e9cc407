"""Signing in with an e-mail address, landing on the organisation last opened, the switcher, signing out."""

import html
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from orgs import services
from orgs.drafts import typed_by
from orgs.models import Membership, Organisation, Role
from tests.base import PASSWORD, make_user
from tests.clients import bearer, console
from tests.orgs.helpers import csrf_token_from

LOGIN = "/accounts/login/"


def sign_in(client: Client, email: str, password: str = PASSWORD, *, follow: bool = False, **fields):
    return client.post(LOGIN, {"username": email, "password": password, **fields}, follow=follow)


def test_the_sign_in_page_asks_for_an_email_and_a_password(db):
    page = Client().get(LOGIN).content.decode()

    assert '<input type="email" name="username"' in page
    assert '<input type="password" name="password"' in page


def test_signing_in_with_an_email_lands_on_the_first_organisation(world):
    client = Client()

    response = sign_in(client, "admin@acme.test", follow=True)

    assert response.redirect_chain[0] == ("/", 302)
    assert response.redirect_chain[-1] == ("/orgs/acme/insights/", 302)
    assert response.status_code == 200


def test_the_first_organisation_is_the_first_by_name(world):
    Membership.objects.create(user=world.initech_member, organisation=world.globex, role=Role.MEMBER)

    response = sign_in(Client(), "member@initech.test", follow=True)

    assert response.redirect_chain[-1] == ("/orgs/globex/insights/", 302)


def test_signing_in_lands_on_the_organisation_last_opened(world):
    Membership.objects.create(user=world.initech_member, organisation=world.globex, role=Role.MEMBER)
    client = Client()
    sign_in(client, "member@initech.test")
    assert client.get("/orgs/initech/settings/").status_code == 200
    client.post("/accounts/logout/")

    response = sign_in(client, "member@initech.test", follow=True)

    assert response.redirect_chain[-1] == ("/orgs/initech/insights/", 302)  # not Globex, the first by name
    assert sign_in(Client(), "member@initech.test", next="/orgs/globex/settings/")["Location"] == (
        "/orgs/globex/settings/"
    )  # a `next` still wins


def test_removed_from_the_organisation_last_opened_they_land_on_the_first_by_name(world):
    Membership.objects.create(user=world.initech_member, organisation=world.globex, role=Role.MEMBER)
    Membership.objects.create(user=world.initech_member, organisation=world.acme, role=Role.MEMBER)
    client = Client()
    sign_in(client, "member@initech.test")
    client.get("/orgs/initech/insights/")
    Membership.objects.filter(user=world.initech_member, organisation=world.initech).delete()

    response = sign_in(Client(), "member@initech.test", follow=True)

    assert response.redirect_chain[-1] == ("/orgs/acme/insights/", 302)


def test_opening_the_same_organisation_again_writes_nothing_and_the_api_never_does(world):
    Membership.objects.create(user=world.initech_member, organisation=world.globex, role=Role.MEMBER)
    client = console(world.initech_member)
    client.get("/orgs/globex/insights/")
    api = console(headers=bearer(world.initech_member))

    with CaptureQueriesContext(connection) as again:
        assert client.get("/orgs/globex/settings/").status_code == 200
    with CaptureQueriesContext(connection) as by_token:
        assert api.get("/api/v1/orgs/initech/insights/usage").status_code == 200
    with CaptureQueriesContext(connection) as by_session:
        assert client.get("/api/v1/orgs/initech/insights/usage").status_code == 200

    for captured in (again, by_token, by_session):
        assert not [q["sql"] for q in captured.captured_queries if q["sql"].startswith('UPDATE "orgs_user"')]
    world.initech_member.refresh_from_db()
    assert world.initech_member.last_organisation == world.globex  # the API changed nothing


@pytest.mark.parametrize(
    "page",
    [
        "/orgs/globex/insights/?after=999999",
        "/orgs/globex/settings/?revoke=999999",
        "HEAD /orgs/globex/insights/",
        "HEAD /orgs/globex/settings/",
        "HEAD /orgs/globex/settings/audit-log/",
    ],
)
def test_a_page_not_shown_is_not_remembered_as_the_one_last_opened(world, page):
    # A 404 (an older-queries link naming a query since pruned, a revoked token's confirmation) or a HEAD (a monitor, a
    # link checker) opens nothing.
    Membership.objects.create(user=world.initech_member, organisation=world.globex, role=Role.ADMIN)
    client = console(world.initech_member)
    client.get("/orgs/initech/insights/")
    method, _, path = page.rpartition(" ")

    response = client.head(path) if method == "HEAD" else client.get(path)

    assert response.status_code == (200 if method == "HEAD" else 404)
    world.initech_member.refresh_from_db()
    assert world.initech_member.last_organisation == world.initech


@pytest.mark.django_db(transaction=True)  # the foreign key is checked at commit: only a real commit meets it
def test_an_organisation_deleted_as_its_page_opens_remembers_nothing_and_raises_nothing(world):
    # Staff delete the organisation between the page's membership check and remembering it as the last opened.
    membership = Membership.objects.select_related("user", "organisation").get(
        user=world.initech_member, organisation=world.initech
    )
    Organisation.objects.filter(pk=world.initech.pk).delete()

    services.organisation_opened(membership=membership)

    world.initech_member.refresh_from_db()
    assert world.initech_member.last_organisation is None


def test_the_email_is_not_case_sensitive(world):
    response = sign_in(Client(), "Admin@ACME.test")

    assert response.status_code == 302


def test_a_wrong_password_is_refused(world):
    client = Client()

    response = sign_in(client, "admin@acme.test", "not-the-password")

    assert response.status_code == 200
    assert "Please enter a correct e-mail address and password. The password is case-sensitive." in (
        response.content.decode()
    )  # not Django's "both fields may be case-sensitive": the address is not
    assert client.get("/orgs/acme/settings/").status_code == 302


def input_tag(page: str, field_id: str) -> str:
    return re.search(rf'<input[^>]*id="{field_id}"[^>]*>', page)[0]


def test_after_a_wrong_password_focus_is_on_the_emptied_password_field_not_the_kept_address(world):
    # The address comes back typed; the password does not. Focus on the address would make the next Enter submit an
    # empty password (the browser's `required` stopping it), or the user Tab past a field that is right.
    page = sign_in(Client(), "admin@acme.test", "not-the-password").content.decode()

    email, password = input_tag(page, "id_username"), input_tag(page, "id_password")
    assert 'value="admin@acme.test"' in email and "autofocus" not in email
    assert "autofocus" in password and 'aria-describedby="sign-in-error"' in password
    assert page.count("autofocus") == 1
    blank = Client().post(LOGIN, {"username": "admin@acme.test", "password": ""}).content.decode()  # no `required`
    assert "autofocus" in input_tag(blank, "id_password") and blank.count("autofocus") == 1


def test_a_deactivated_user_cannot_sign_in(world):
    world.acme_admin.is_active = False
    world.acme_admin.save()

    assert sign_in(Client(), "admin@acme.test").status_code == 200


def test_sign_in_honours_next(world):
    response = sign_in(Client(), "member@acme.test", next="/orgs/acme/settings/")

    assert response["Location"] == "/orgs/acme/settings/"


def test_sign_in_does_not_redirect_off_site(world):
    response = sign_in(Client(), "member@acme.test", next="https://evil.example/")

    assert response["Location"] == "/"


def test_a_user_without_an_organisation_is_told_so(world):
    response = sign_in(Client(), "outsider@elsewhere.test", follow=True)

    assert "You are not in an organisation yet" in response.content.decode()


def test_a_user_without_an_organisation_is_sent_to_who_can_add_them_not_to_an_owner_who_cannot(world, settings):
    # Members are added by Opsion staff (admin); an organisation's Owners and Admins have no way to add anyone, so
    # "Ask an Owner or Admin of your organisation to add you" sent them to someone who could only ask Opsion in turn.
    settings.SUPPORT_URL = "https://support.opsion.test/"

    page = console(world.outsider).get("/").content.decode()

    assert "Ask an Owner or Admin of your organisation to add you" not in page
    assert (
        'Opsion staff add people to organisations: <a href="https://support.opsion.test/">ask Opsion support</a> '
        "to add you, naming your organisation (its Owner can ask too), then reload this page."
    ) in page


def test_someone_added_to_an_organisation_gets_there_by_reloading_without_signing_in_again(world):
    # The page is worked out afresh on every visit: telling them to sign in again would send them round for nothing.
    client = console(world.outsider)
    waiting = client.get("/").content.decode()

    Membership.objects.create(user=world.outsider, organisation=world.acme, role=Role.MEMBER)
    reloaded = client.get("/")

    assert "sign in again" not in waiting
    assert "then reload this page" in waiting
    assert reloaded.status_code == 302 and reloaded["Location"] == "/orgs/acme/insights/"


def test_staff_in_no_organisation_are_pointed_to_the_staff_admin(world):
    staff_home = console(world.staff).get("/").content.decode()
    outsider_home = console(world.outsider).get("/").content.decode()

    assert '<a href="/admin/">staff admin</a>' in staff_home
    assert "You are not in an organisation yet" not in staff_home  # nor told to ask a customer's Owner
    assert "staff admin" not in outsider_home


def test_sent_to_sign_in_from_a_page_says_you_will_continue_there(db):
    sent = Client().get("/orgs/acme/insights/", follow=True).content.decode()
    plain = Client().get(LOGIN).content.decode()

    assert "Sign in to continue where you left off." in sent
    assert "Sign in to continue where you left off." not in plain


def test_pages_need_a_signed_in_user(db):
    assert Client().get("/")["Location"] == "/accounts/login/?next=/"


def test_a_signed_in_user_visiting_sign_in_goes_home(world):
    assert console(world.acme_admin).get(LOGIN)["Location"] == "/"


@pytest.mark.parametrize("next_url", [LOGIN, LOGIN + "?next=/", "http://testserver" + LOGIN])
def test_a_sign_in_link_pointing_at_itself_sends_a_signed_in_user_home(world, next_url):
    client = console(world.acme_admin, raise_request_exception=False)

    response = client.get(LOGIN, {"next": next_url})  # a crafted link; Django would raise (a 500) on a loop

    assert (response.status_code, response["Location"]) == (302, "/")


def test_a_typed_sign_out_address_asks_with_a_button_and_changes_nothing(world):
    client = console(world.acme_admin)

    page = client.get("/accounts/logout/")

    assert page.status_code == 200
    assert '<form method="post" action="/accounts/logout/"' in page.content.decode()
    assert client.get("/orgs/acme/settings/").status_code == 200  # still signed in
    assert Client().get("/accounts/logout/")["Location"] == LOGIN


def test_admins_sign_out_address_typed_leads_to_the_page_and_its_button_still_signs_out(world):
    client = console(world.staff)

    typed = client.get("/admin/logout/", follow=True)
    assert typed.redirect_chain == [("/accounts/logout/", 302)] and typed.status_code == 200
    assert client.get("/admin/").status_code == 200  # still signed in

    client.post("/admin/logout/")
    assert client.get("/admin/").status_code == 302


def test_an_address_the_browser_accepts_but_django_refuses_is_told_why_next_to_the_fields(world):
    # type=email lets "ada@acmetest" through; Django's EmailField refuses it, as a field error.
    page = Client().post(LOGIN, {"username": "member@acmetest", "password": "whatever"}).content.decode()

    assert (
        '<div class="alert alert--error" role="alert" id="sign-in-error"><p>E-mail: Enter a valid e-mail address.</p>'
        in page
    )
    assert page.count('aria-invalid="true" aria-describedby="sign-in-error"') == 1  # the address, not the password
    assert page.count('aria-describedby="sign-in-error"') == 2
    assert "autofocus" in input_tag(page, "id_username") and page.count("autofocus") == 1  # the address is the problem
    empty = Client().post(LOGIN, {"username": "", "password": ""}).content.decode()  # a client without `required`
    assert "<p>E-mail: This field is required.</p><p>Password: This field is required.</p>" in empty


def test_signing_out_ends_the_session(world):
    client = console(world.acme_admin)

    response = client.post("/accounts/logout/")

    assert response["Location"] == LOGIN
    assert "You are signed out." in client.get(LOGIN).content.decode()  # said once, where sign-out lands
    assert "You are signed out." not in client.get(LOGIN).content.decode()
    assert client.get("/orgs/acme/settings/")["Location"].startswith(LOGIN)


def stale_form(client: Client, url: str) -> str:
    """The CSRF token of the form at `url`, then the browser's CSRF secret changed, as signing in (in another tab,
    say) changes it: the form still shown carries a token that no longer matches."""
    token = csrf_token_from(client.get(url).content.decode())
    client.cookies["csrftoken"] = "s" * 32
    return token


def test_a_sign_in_form_gone_stale_because_another_tab_signed_in_goes_where_it_was_going(world):
    # Two tabs sent to sign in (the session expired); signing in in one made the other's form stale. Not a 403
    # dead end: already signed in, they go on to the page the form would have taken them to.
    client = Client(enforce_csrf_checks=True)
    token = stale_form(client, LOGIN + "?next=/orgs/acme/settings/")
    client.force_login(world.acme_admin)

    response = client.post(
        LOGIN,
        {
            "username": "admin@acme.test",
            "password": PASSWORD,
            "next": "/orgs/acme/settings/",
            "csrfmiddlewaretoken": token,
        },
        follow=True,
    )

    assert response.redirect_chain[-1] == ("/orgs/acme/settings/", 302)
    assert response.status_code == 200 and response.wsgi_request.user == world.acme_admin


def test_a_stale_sign_in_form_of_someone_signed_out_meanwhile_asks_them_to_sign_in_again(world):
    client = Client(enforce_csrf_checks=True)
    token = stale_form(client, LOGIN)

    response = client.post(
        LOGIN, {"username": "admin@acme.test", "password": PASSWORD, "csrfmiddlewaretoken": token}, follow=True
    )

    assert response.redirect_chain == [(LOGIN, 302)]
    assert "This page was out of date, so you were not signed in. Please sign in again." in response.content.decode()
    assert not response.wsgi_request.user.is_authenticated


DRAFT = "A question typed before the session expired <b>&</b>"


def carrying_the_draft(world) -> dict:
    """The fields of a sign-in page carrying the member's question (orgs.drafts), as its form sends them."""
    return {
        "username": "member@globex.test",
        "password": PASSWORD,
        "draft": DRAFT,
        "draft_by": typed_by(world.globex_member),
    }


def test_a_stale_sign_in_form_carrying_a_question_hands_it_back_once_signed_in_in_another_tab(world):
    # The sign-in page that answered a question posted after the session expired carries it along (orgs.drafts);
    # another tab signing in made that form stale. The question comes back in its box, as after signing in here.
    client = Client(enforce_csrf_checks=True)
    token = stale_form(client, LOGIN)
    client.force_login(world.globex_member)
    fields = carrying_the_draft(world)

    response = client.post(
        LOGIN, {**fields, "next": "/orgs/globex/insights/", "csrfmiddlewaretoken": token}, follow=True
    )

    assert response.redirect_chain[-1] == ("/orgs/globex/insights/", 302)
    assert f">{html.escape(DRAFT)}</textarea>" in response.content.decode()


def test_a_stale_sign_in_form_whose_next_has_a_query_string_hands_the_question_back_to_its_page(world):
    # As a sign-in keeps it: for the page itself (an older history page's `?after=`), which shows it once opened.
    client = Client(enforce_csrf_checks=True)
    token = stale_form(client, LOGIN)
    client.force_login(world.globex_member)
    fields = carrying_the_draft(world)

    client.post(LOGIN, {**fields, "next": "/orgs/globex/insights/?after=5", "csrfmiddlewaretoken": token})

    assert f">{html.escape(DRAFT)}</textarea>" in client.get("/orgs/globex/insights/").content.decode()


def test_a_stale_sign_in_form_carrying_a_question_keeps_it_when_asking_to_sign_in_again(world):
    client = Client(enforce_csrf_checks=True)
    token = stale_form(client, LOGIN)
    fields = carrying_the_draft(world)

    response = client.post(LOGIN, {**fields, "next": "/orgs/globex/insights/", "csrfmiddlewaretoken": token})

    page = response.content.decode()
    assert "This page was out of date, so you were not signed in. Please sign in again." in page
    assert f'<input type="hidden" name="draft" value="{html.escape(DRAFT)}">' in page
    assert 'name="next" value="/orgs/globex/insights/"' in page
    assert not response.wsgi_request.user.is_authenticated
    fresh = csrf_token_from(page)  # the page's form works: signing in hands the question back
    signed_in = client.post(LOGIN, {**fields, "next": "/orgs/globex/insights/", "csrfmiddlewaretoken": fresh})
    assert signed_in["Location"] == "/orgs/globex/insights/"
    assert f">{html.escape(DRAFT)}</textarea>" in client.get("/orgs/globex/insights/").content.decode()


def test_a_sign_in_form_offering_a_stale_token_from_another_origin_is_still_refused(world):
    client = Client(enforce_csrf_checks=True)
    token = stale_form(client, LOGIN)
    fields = {"username": "admin@acme.test", "password": PASSWORD, "csrfmiddlewaretoken": token}

    assert client.post(LOGIN, fields, HTTP_ORIGIN="https://evil.example").status_code == 403


def test_a_sign_out_button_gone_stale_leads_to_the_sign_out_page_not_a_dead_end(world):
    client = console(world.acme_admin, enforce_csrf_checks=True)
    token = stale_form(client, "/accounts/logout/")

    response = client.post("/accounts/logout/", {"csrfmiddlewaretoken": token}, follow=True)

    assert response.redirect_chain == [("/accounts/logout/", 302)]
    assert '<form method="post" action="/accounts/logout/"' in response.content.decode()  # a fresh button
    assert response.wsgi_request.user == world.acme_admin  # nothing happened without a valid token


class TestSwitcher:
    def test_it_lists_every_organisation_of_the_user_and_marks_the_current_one(self, world):
        Membership.objects.create(user=world.acme_admin, organisation=world.globex, role=Role.MEMBER)

        page = console(world.acme_admin).get("/orgs/globex/settings/").content.decode()

        switcher = re.search(r'<details class="switcher">.*?</details>', page, re.S).group(0)
        # Its name starts with what it shows, the current organisation, then says what it does.
        name = '<summary>Globex Payments<span class="visually-hidden">, switch organisation</span></summary>'
        assert name in switcher
        # From Settings, each goes to that organisation's Settings (other pages: test_several_organisations).
        assert re.search(r'href="/orgs/globex/settings/" aria-current="true">Globex Payments', switcher)
        assert re.search(r'href="/orgs/acme/settings/">Acme Digital Assets <span class="muted">· Admin', switcher)
        assert "Initech" not in switcher

    def test_the_tabs_follow_the_current_organisation(self, world):
        page = console(world.acme_member).get("/orgs/acme/settings/").content.decode()

        assert 'href="/orgs/acme/settings/" aria-current="page">Settings' in page
        assert 'href="/orgs/acme/insights/"' in page

    def test_someone_in_no_organisation_gets_no_switcher(self, world):
        page = console(make_user("new@elsewhere.test")).get("/", follow=True).content.decode()

        assert 'class="switcher"' not in page


QUESTION_BOX = re.compile(r"<textarea id=\"query\"[^>]*>")


def test_the_landing_right_after_sign_in_starts_in_the_question_box_and_only_then(world):
    client = Client()

    landed = sign_in(client, "member@acme.test", follow=True)

    assert landed.redirect_chain[-1] == ("/orgs/acme/insights/", 302)
    assert "autofocus" in QUESTION_BOX.search(landed.content.decode()).group(0)  # typing a question comes first
    # A reload, or the page opened again later, starts at the top as any page does (the skip link first).
    assert "autofocus" not in QUESTION_BOX.search(client.get("/orgs/acme/insights/").content.decode()).group(0)


def test_a_sign_in_going_to_another_page_leaves_focus_alone_on_ai_insights_later(world):
    client = Client()
    assert sign_in(client, "member@acme.test", next="/orgs/acme/settings/")["Location"] == "/orgs/acme/settings/"

    page = client.get("/orgs/acme/insights/").content.decode()

    assert "autofocus" not in QUESTION_BOX.search(page).group(0)
