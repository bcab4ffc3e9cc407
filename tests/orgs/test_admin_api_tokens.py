"""API tokens deleted by Opsion staff in admin: each user hears of it, as of a token created on their account, with
the tokens' names and that Opsion staff deleted them (services.api_tokens_revoke_as_staff)."""

import pytest
from django.db import DatabaseError

from orgs import services
from orgs.models import ApiToken, OutboxMail
from tests.clients import console

TOKENS = "/admin/orgs/apitoken/"


@pytest.fixture
def staff(world, settings):
    settings.EMAIL_CONFIGURED = True  # Opsion sends mail: each e-mail is a row of the outbox once its change is written
    return console(world.staff)


def mails_to(address: str) -> list[OutboxMail]:
    return list(OutboxMail.objects.filter(to=address).order_by("pk"))


def test_a_token_staff_delete_on_its_page_is_mailed_to_its_user_saying_opsion_staff_did_it(world, staff):
    token, raw = services.api_token_create(user=world.acme_member, name="Reporting pipeline")
    OutboxMail.objects.all().delete()  # the creation's own e-mail

    assert staff.post(f"{TOKENS}{token.pk}/delete/", {"post": "yes"}).status_code == 302

    assert not ApiToken.objects.filter(pk=token.pk).exists()
    [mail] = mails_to("member@acme.test")
    assert mail.subject == "An API token was deleted from your Opsion account by Opsion staff"
    assert "Opsion staff deleted the personal API token “Reporting pipeline” from your Opsion account" in mail.body
    assert "member@acme.test" in mail.body and " UTC" in mail.body
    assert "integrations using it have stopped working" in mail.body
    for secret in (raw, token.prefix, token.token_hash, "opsn_"):
        assert secret not in mail.subject and secret not in mail.body
    assert OutboxMail.objects.count() == 1  # staff's own address is not mailed


def test_tokens_deleted_with_the_lists_action_mail_each_user_once_naming_only_theirs(world, staff):
    laptop, _ = services.api_token_create(user=world.acme_member, name="Laptop")
    ci, _ = services.api_token_create(user=world.acme_member, name="CI")
    kept, _ = services.api_token_create(user=world.acme_member, name="Kept")
    other, _ = services.api_token_create(user=world.globex_owner, name="Backups")
    OutboxMail.objects.all().delete()
    action = {"action": "delete_selected", "_selected_action": [laptop.pk, ci.pk, other.pk], "post": "yes"}

    assert staff.post(TOKENS, action).status_code == 302

    assert list(ApiToken.objects.values_list("name", flat=True)) == ["Kept"]
    [member] = mails_to("member@acme.test")
    [owner] = mails_to(world.globex_owner.email)
    assert member.subject == "2 API tokens were deleted from your Opsion account by Opsion staff"
    assert "Opsion staff deleted 2 personal API tokens from your Opsion account" in member.body
    assert "“CI”" in member.body and "“Laptop”" in member.body
    assert "Backups" not in member.body and "Kept" not in member.body
    assert "integrations using them have stopped working" in member.body
    assert "“Backups”" in owner.body and "Laptop" not in owner.body
    assert kept.pk in ApiToken.objects.values_list("pk", flat=True)


def test_a_deletion_the_database_refuses_mails_no_one(world, staff, token_deletes_fail):
    token, _ = services.api_token_create(user=world.acme_member, name="Laptop")
    OutboxMail.objects.all().delete()

    with pytest.raises(DatabaseError):
        staff.post(TOKENS, {"action": "delete_selected", "_selected_action": [token.pk], "post": "yes"})

    assert ApiToken.objects.filter(pk=token.pk).exists()
    assert not OutboxMail.objects.exists()
