"""Addresses a person types by trimming a page's own: /orgs/ and /orgs/<slug>/ lead somewhere, as the pages below
them do, rather than to "Page not found"."""

from tests.clients import console


def test_an_organisations_own_address_opens_its_insights_page(world):
    response = console(world.acme_member).get("/orgs/acme/")
    assert response.status_code == 302
    assert response["Location"] == "/orgs/acme/insights/"
    assert console(world.acme_member).get("/orgs/acme/", follow=True).status_code == 200


def test_without_the_trailing_slash_too(world):
    response = console(world.acme_member).get("/orgs/acme", follow=True)
    assert response.redirect_chain[-1][0] == "/orgs/acme/insights/"
    assert response.status_code == 200


def test_it_opens_nothing_an_organisations_pages_would_not(world):
    """Someone not in the organisation is led to the insights page's 404, as its own address gives them."""
    response = console(world.globex_owner).get("/orgs/acme/", follow=True)
    assert response.status_code == 404
    assert console(world.globex_owner).get("/orgs/acme/insights/").status_code == 404


def test_signed_out_it_asks_to_sign_in_first(client):
    response = client.get("/orgs/acme/", follow=True)
    assert response.redirect_chain[-1][0].startswith("/accounts/login/")


def test_the_list_of_organisations_is_the_home_page(world):
    response = console(world.acme_member).get("/orgs/")
    assert response.status_code == 302
    assert response["Location"] == "/"
