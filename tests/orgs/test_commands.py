"""create_api_token, rotate_encryption_keys and seed_demo."""

import hashlib
import io
import signal
from contextlib import contextmanager

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, Permission
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import override_settings

from orgs import crypto, mailer, services
from orgs.management.commands import rotate_encryption_keys as rotate_command
from orgs.models import ApiToken, ClaudeApiKey, Membership, Organisation, Plan, Role, User
from tests.base import CANARY_KEY, GOOD_KEY, OTHER_KEY
from tests.clients import console
from tests.orgs.helpers import store_key


def run(*args, **options) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out, **options)
    return out.getvalue()


class TestCreateApiToken:
    def test_it_prints_the_token_alone_on_its_last_line(self, world):
        output = run("create_api_token", "admin@acme.test", "--name", "CI pipeline")

        last = output.rstrip("\n").splitlines()[-1]
        assert last.startswith("opsn_")
        assert " " not in last
        assert "CI pipeline" in output
        token = ApiToken.objects.get()
        assert (token.user, token.name) == (world.acme_admin, "CI pipeline")

    @pytest.mark.django_db(transaction=True)  # committed as in a real run, where the e-mail goes at the commit
    def test_the_token_stays_last_when_the_new_token_e_mail_prints_to_the_terminal(self, world, mail, settings, capsys):
        # `make run` writes EMAIL_URL=consolemail://: the e-mail to the token's owner goes to the same stdout, from
        # the mail thread, and landed after the token, so `create_api_token … | tail -1` took its closing dashes.
        settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"

        call_command("create_api_token", "admin@acme.test")
        assert mailer.wait(timeout=15)

        output = capsys.readouterr().out
        assert "A new API token was created" in output
        assert output.rstrip("\n").splitlines()[-1].startswith("opsn_")

    def test_the_printed_token_authenticates_and_is_stored_only_as_a_hash(self, world):
        raw = run("create_api_token", "admin@acme.test").rstrip("\n").splitlines()[-1]

        response = console().get("/api/v1/orgs/acme/settings", headers={"Authorization": f"Bearer {raw}"})

        assert response.status_code == 200
        token = ApiToken.objects.get()
        assert token.name == "CLI token"
        assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM orgs_apitoken")
            assert not any(raw in str(value) for value in cursor.fetchone())

    def test_the_email_is_matched_regardless_of_case(self, world):
        run("create_api_token", "Member@Acme.TEST")

        assert ApiToken.objects.get().user == world.acme_member

    def test_an_unknown_email_is_an_error(self, world):
        with pytest.raises(CommandError, match="No user with e-mail nobody@acme.test"):
            run("create_api_token", "nobody@acme.test")
        assert not ApiToken.objects.exists()

    def test_a_deactivated_user_gets_no_token_that_would_be_refused(self, world):
        world.acme_admin.is_active = False
        world.acme_admin.save()

        with pytest.raises(CommandError, match="admin@acme.test is deactivated"):
            run("create_api_token", "admin@acme.test")
        assert not ApiToken.objects.exists()

    def test_a_blank_name_is_an_error(self, world):
        with pytest.raises(CommandError, match="name"):
            run("create_api_token", "admin@acme.test", "--name", "  ")


class TestRotateEncryptionKeys:
    @pytest.fixture
    def old_rows(self, world, settings):
        """Two keys saved under the current (old) encryption key; returns (old, new) Fernet keys."""
        services.claude_api_key_set(
            membership=world.membership(world.acme_admin, world.acme), raw_key=CANARY_KEY, ip=None
        )
        services.claude_api_key_set(
            membership=world.membership(world.initech_admin, world.initech), raw_key=GOOD_KEY, ip=None
        )
        return settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()

    @staticmethod
    def revealed() -> dict[str, str]:
        return {
            row.organisation.slug: row.secret.reveal() for row in ClaudeApiKey.objects.select_related("organisation")
        }

    def test_it_moves_old_rows_to_the_first_key_and_says_how_many(self, old_rows, settings):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        output = run("rotate_encryption_keys")

        assert "Re-encrypted 2 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 0 already were." in output
        settings.FIELD_ENCRYPTION_KEYS = [new]
        assert self.revealed() == {"acme": CANARY_KEY, "initech": GOOD_KEY}

    @staticmethod
    def copy_ciphertext(*, source: str, target: str) -> None:
        """Someone able to write to the database, holding no entry, puts one organisation's ciphertext in another's
        row."""
        ciphertext = ClaudeApiKey.objects.get(organisation__slug=source).secret
        ClaudeApiKey.objects.filter(organisation__slug=target).update(secret=ciphertext)

    def test_rotated_keys_stay_bound_to_their_organisation(self, old_rows, settings):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        run("rotate_encryption_keys")

        self.copy_ciphertext(source="acme", target="initech")

        rows = {row.organisation.slug: row.secret for row in ClaudeApiKey.objects.select_related("organisation")}
        assert rows["acme"].reveal() == CANARY_KEY
        assert not rows["initech"].readable()
        out = io.StringIO()
        with pytest.raises(CommandError, match="1 of 2 stored key"):
            call_command("rotate_encryption_keys", "--check", stdout=out)
        assert "initech" in out.getvalue() and "acme" not in out.getvalue().split("decrypt")[-1]

    def test_a_ciphertext_moved_before_a_rotation_is_left_unreadable_not_bound_to_its_new_row(self, old_rows, settings):
        # Re-encrypting it for the row it was found in would make the copied key work there.
        old, new = old_rows
        self.copy_ciphertext(source="acme", target="initech")
        moved = ClaudeApiKey.objects.get(organisation__slug="initech").secret.ciphertext
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        with pytest.raises(CommandError, match="1 of 2 stored key"):
            run("rotate_encryption_keys")

        assert ClaudeApiKey.objects.get(organisation__slug="initech").secret.ciphertext == moved
        assert self.revealed_readable() == {"acme": True, "initech": False}

    @staticmethod
    def revealed_readable() -> dict[str, bool]:
        return {
            row.organisation.slug: row.secret.readable() for row in ClaudeApiKey.objects.select_related("organisation")
        }

    def test_a_second_run_moves_nothing(self, old_rows, settings):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        run("rotate_encryption_keys")

        output = run("rotate_encryption_keys")

        assert "Re-encrypted 0 stored key(s)" in output

    def test_without_rotation_the_new_key_alone_cannot_read_old_rows(self, old_rows, settings):
        _, new = old_rows

        settings.FIELD_ENCRYPTION_KEYS = [new]

        with pytest.raises(crypto.DecryptionFailed):
            self.revealed()

    def test_after_rotation_the_old_key_no_longer_opens_the_rows(self, old_rows, settings):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        run("rotate_encryption_keys")

        settings.FIELD_ENCRYPTION_KEYS = [old]
        with pytest.raises(crypto.DecryptionFailed):
            self.revealed()

    def test_rows_no_key_opens_are_reported_and_left_alone(self, old_rows, settings):
        _, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new]
        before = {row.pk: row.secret.ciphertext for row in ClaudeApiKey.objects.all()}

        with pytest.raises(CommandError, match="2 stored key"):
            run("rotate_encryption_keys")

        assert {row.pk: row.secret.ciphertext for row in ClaudeApiKey.objects.all()} == before

    def test_unreadable_rows_are_listed_by_organisation_with_what_to_do(self, old_rows, settings):
        # The old key dropped before the run: the operator was given organisation ids in one line (200 kB of them
        # for 30,000 organisations, in no order), where logs and pages name organisations by slug, and no next step.
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new]
        out = io.StringIO()

        with pytest.raises(CommandError) as refused:
            call_command("rotate_encryption_keys", stdout=out)

        lines = out.getvalue().splitlines()
        assert lines[-2:] == ["  acme", "  initech"]
        message = str(refused.value)
        assert "2 of 2 stored key(s) could not be decrypted" in message
        assert "put the key they were saved with back in FIELD_ENCRYPTION_KEYS (after the first)" in message
        assert old not in out.getvalue() + message and new not in out.getvalue() + message

    def test_a_second_run_says_the_other_entries_can_be_dropped(self, old_rows, settings):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        run("rotate_encryption_keys")

        output = run("rotate_encryption_keys")

        assert "Re-encrypted 0 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 2 already were." in output
        assert "Every stored key is now encrypted with the first entry: the others can be dropped." in output

    def test_with_a_single_entry_it_does_not_speak_of_others_to_drop(self, old_rows, settings):
        output = run("rotate_encryption_keys")

        assert "Re-encrypted 0 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 2 already were." in output
        assert "the others can be dropped" not in output
        assert "Every stored key is encrypted with the only FIELD_ENCRYPTION_KEYS entry." in output

    def test_dry_run_counts_what_it_would_move_and_changes_nothing(self, old_rows, settings):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        before = {row.pk: row.secret.ciphertext for row in ClaudeApiKey.objects.all()}

        output = run("rotate_encryption_keys", "--dry-run")

        assert "Would re-encrypt 2 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 0 already were." in output
        assert "can be dropped" not in output
        assert {row.pk: row.secret.ciphertext for row in ClaudeApiKey.objects.all()} == before

    def test_a_dry_run_with_keys_left_says_to_run_it_before_dropping_any_entry(self, old_rows, settings):
        # It exits 0 either way (it found nothing unreadable): the words alone told an operator checking before the
        # last deploy "Would re-encrypt 2", under a --help saying exit 0 means the other entries can be dropped.
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        output = run("rotate_encryption_keys", "--dry-run")

        assert output.splitlines()[-1] == (
            "Nothing was changed (dry run): run it without --dry-run before dropping the other entries."
        )

    @pytest.mark.parametrize("option", ["--dry-run", "--check"])
    def test_a_dry_run_or_check_with_nothing_left_says_the_other_entries_can_be_dropped(
        self, old_rows, settings, option
    ):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        run("rotate_encryption_keys")

        output = run("rotate_encryption_keys", option)  # --check raises CommandError (exit 1) for anything left

        assert "Would re-encrypt 0 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 2 already were." in output
        assert output.splitlines()[-1] == (
            "Every stored key is now encrypted with the first entry: the others can be dropped."
        )

    def test_its_help_says_what_each_exit_means_a_dry_runs_included(self, db):
        parser = rotate_command.Command().create_parser("manage.py", "rotate_encryption_keys")
        words = " ".join(parser.format_help().split())

        assert "Claude API key" in words  # what it re-encrypts, not the FIELD_ENCRYPTION_KEYS entries themselves
        assert "Ctrl-C" in words and "130" in words
        assert "only once it says Would re-encrypt 0" in words

    def test_dry_run_lists_the_unreadable_and_fails(self, old_rows, settings):
        _, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new]
        out = io.StringIO()

        with pytest.raises(CommandError, match="2 of 2 stored key"):
            call_command("rotate_encryption_keys", "--dry-run", stdout=out)

        assert out.getvalue().splitlines()[-2:] == ["  acme", "  initech"]

    def test_check_with_keys_left_to_re_encrypt_exits_1_and_changes_nothing(self, old_rows, settings):
        # A dry run exits 0 here (nothing is unreadable): a script confirming, before the deploy that drops the old
        # entry, that nothing is left on it had only the words to go by.
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        before = {row.pk: row.secret.ciphertext for row in ClaudeApiKey.objects.all()}
        out = io.StringIO()

        with pytest.raises(CommandError) as failed:
            call_command("rotate_encryption_keys", "--check", stdout=out)

        assert failed.value.returncode == 1
        assert "Would re-encrypt 2 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 0 already were." in (
            out.getvalue()
        )
        assert str(failed.value) == (
            "2 of 2 stored key(s) are not encrypted with the first FIELD_ENCRYPTION_KEYS entry, so the other entries "
            "are still needed. Nothing was changed (--check): run it without --check, then check again."
        )
        assert "can be dropped" not in out.getvalue()
        assert {row.pk: row.secret.ciphertext for row in ClaudeApiKey.objects.all()} == before

    def test_check_with_one_key_left_among_current_ones_exits_1(self, old_rows, settings, world):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        run("rotate_encryption_keys")
        settings.FIELD_ENCRYPTION_KEYS = [old, new]  # a key saved by a process still on the old list
        services.claude_api_key_set(
            membership=world.membership(world.acme_admin, world.acme), raw_key=GOOD_KEY, ip=None
        )
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        with pytest.raises(CommandError, match=r"^1 of 2 stored key\(s\) are not encrypted") as failed:
            run("rotate_encryption_keys", "--check")

        assert failed.value.returncode == 1

    def test_check_with_no_stored_key_passes(self, db):
        output = run("rotate_encryption_keys", "--check")

        assert "Would re-encrypt 0 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 0 already were." in output

    def test_check_lists_the_unreadable_and_exits_1_changing_nothing(self, old_rows, settings):
        _, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new]
        before = {row.pk: row.secret.ciphertext for row in ClaudeApiKey.objects.all()}
        out = io.StringIO()

        with pytest.raises(CommandError, match="2 of 2 stored key") as failed:
            call_command("rotate_encryption_keys", "--check", stdout=out)

        assert failed.value.returncode == 1
        assert out.getvalue().splitlines()[-2:] == ["  acme", "  initech"]
        assert {row.pk: row.secret.ciphertext for row in ClaudeApiKey.objects.all()} == before

    def test_its_help_offers_check_for_scripts(self, db):
        parser = rotate_command.Command().create_parser("manage.py", "rotate_encryption_keys")
        words = " ".join(parser.format_help().split())

        assert "--check" in words
        assert "Exits 1 when any stored key is not on the first entry or cannot be decrypted" in words

    def test_its_output_never_contains_a_key(self, old_rows, settings):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        output = run("rotate_encryption_keys")

        assert CANARY_KEY not in output
        assert GOOD_KEY not in output

    def test_keys_still_work_through_the_product_after_rotation(self, old_rows, settings, world, fake_anthropic):
        old, new = old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        run("rotate_encryption_keys")
        settings.FIELD_ENCRYPTION_KEYS = [new]

        body = console(world.acme_member).get("/api/v1/orgs/acme/settings").json()
        asked = console(world.initech_member).post(
            "/api/v1/orgs/initech/insights/queries", {"query": "What is MiCAR?"}, content_type="application/json"
        )

        # "Set" alone would hold for a key nobody can read any more; it must read and reach Anthropic.
        assert (body["claudeApiKeySet"], body["claudeApiKeyStatus"]) == (True, "unverified")
        assert asked.status_code == 200
        assert fake_anthropic.keys_used == [GOOD_KEY]


class Killed(Exception):
    """The process dying part-way, as a kill or a lost database connection would stop it."""


@contextmanager
def before_batch(number: int, do):
    """Run `do()` on the command's own connection just before its `number`-th read of the key rows (one per batch):
    a database-level hook, so the command runs unchanged and the moment is exact, with no sleeping."""
    seen = 0

    def hook(execute, sql, params, many, context):
        nonlocal seen
        if sql.lstrip().upper().startswith("SELECT") and 'FROM "orgs_claudeapikey"' in sql:
            seen += 1
            if seen == number:
                do()
        return execute(sql, params, many, context)

    with connection.execute_wrapper(hook):
        yield


class TestRotateEncryptionKeysInBatches:
    """A run holds each key row only for its batch, so a save waits for one batch, not the whole run (40 to 90 s
    for 30,000 keys in one transaction on a busy machine)."""

    @pytest.fixture
    def five_old_rows(self, db, settings):
        """Five organisations' keys saved under the current (old) encryption key; returns (old, new) Fernet keys."""
        for slug in ["a-org", "b-org", "c-org", "d-org", "e-org"]:
            store_key(Organisation.objects.create(slug=slug, name=slug, plan=Plan.INSTITUTIONAL), GOOD_KEY)
        return settings.FIELD_ENCRYPTION_KEYS[0], Fernet.generate_key().decode()

    def test_a_run_over_several_batches_re_encrypts_every_key_and_counts_them_all(self, five_old_rows, settings):
        old, new = five_old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        output = run("rotate_encryption_keys", "--batch-size", "2")

        assert "Re-encrypted 5 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 0 already were." in output
        assert _slugs_opened_by(new) == {"a-org", "b-org", "c-org", "d-org", "e-org"}

    def test_unreadable_keys_across_batches_are_listed_by_slug_in_order(self, five_old_rows, settings):
        old, new = five_old_rows
        ClaudeApiKey.objects.filter(organisation__slug__in=["b-org", "e-org"]).update(
            secret=crypto.Sealed(Fernet(Fernet.generate_key()).encrypt(b"lost").decode())
        )
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        out = io.StringIO()

        with pytest.raises(CommandError, match="2 of 5 stored key"):
            call_command("rotate_encryption_keys", "--batch-size", "2", stdout=out)

        assert "Re-encrypted 3 stored key(s)" in out.getvalue()
        assert out.getvalue().splitlines()[-2:] == ["  b-org", "  e-org"]

    def test_a_key_saved_between_batches_keeps_its_new_value(self, five_old_rows, settings, world):
        # Saved under the new first entry while the run is between batches: re-encrypting what was read before the
        # save would put the old key back.
        old, new = five_old_rows
        store_key(world.acme, GOOD_KEY)  # under the old entry too, after the five, so in the third batch
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        def owner_saves() -> None:
            services.claude_api_key_set(
                membership=world.membership(world.acme_admin, world.acme), raw_key=OTHER_KEY, ip=None
            )

        with before_batch(2, owner_saves):
            output = run("rotate_encryption_keys", "--batch-size", "2")

        assert "Re-encrypted 5 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 1 already were." in output
        settings.FIELD_ENCRYPTION_KEYS = [new]
        assert ClaudeApiKey.objects.get(organisation=world.acme).secret.reveal() == OTHER_KEY

    def test_a_run_stopped_part_way_keeps_the_batches_done_and_a_second_run_finishes(self, five_old_rows, settings):
        old, new = five_old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        def dies() -> None:
            raise Killed

        with pytest.raises(Killed), before_batch(3, dies):
            run("rotate_encryption_keys", "--batch-size", "2")

        assert _slugs_opened_by(new) == {"a-org", "b-org", "c-org", "d-org"}
        assert _slugs_opened_by(old) == {"e-org"}
        output = run("rotate_encryption_keys", "--batch-size", "2")
        assert "Re-encrypted 1 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 4 already were." in output
        assert _slugs_opened_by(new) == {"a-org", "b-org", "c-org", "d-org", "e-org"}

    def test_ctrl_c_says_what_was_done_and_to_run_it_again(self, five_old_rows, settings):
        # Ctrl-C printed a bare KeyboardInterrupt traceback, and the operator could not tell what had changed.
        old, new = five_old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        out = io.StringIO()

        def ctrl_c() -> None:
            signal.raise_signal(signal.SIGINT)  # a real SIGINT, as the terminal sends, in the third batch

        with pytest.raises(CommandError) as stopped, before_batch(3, ctrl_c):
            call_command("rotate_encryption_keys", "--batch-size", "2", stdout=out)

        assert stopped.value.returncode == 130
        message = str(stopped.value)
        assert message.startswith("Interrupted: 4 stored key(s) were re-encrypted with the first ")
        assert "0 already were" in message and "run this command again to finish" in message
        assert _slugs_opened_by(new) == {"a-org", "b-org", "c-org", "d-org"}
        assert old not in out.getvalue() + message and new not in out.getvalue() + message
        output = run("rotate_encryption_keys", "--batch-size", "2")
        assert "Re-encrypted 1 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 4 already were." in output

    def test_ctrl_c_between_batches_does_not_say_a_batch_was_rolled_back(self, five_old_rows, settings, monkeypatch):
        # On SQLite the run waits between batches (letting writers in): Ctrl-C lands there most of the time, with
        # every batch so far committed and none in progress.
        old, new = five_old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]
        waits = []

        def ctrl_c_on_second_wait(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 2:
                raise KeyboardInterrupt

        monkeypatch.setattr(rotate_command.time, "sleep", ctrl_c_on_second_wait)
        monkeypatch.setattr(rotate_command, "_pauses_between_batches", lambda: True)  # on PostgreSQL too

        with pytest.raises(CommandError) as stopped:
            run("rotate_encryption_keys", "--batch-size", "2")

        message = str(stopped.value)
        assert message.startswith("Interrupted: 4 stored key(s) were re-encrypted with the first ")
        assert "rolled back" not in message and "no batch was in progress" in message
        assert _slugs_opened_by(new) == {"a-org", "b-org", "c-org", "d-org"}

    @pytest.mark.django_db(transaction=True)  # really committed, so the moment right after a commit exists
    def test_ctrl_c_right_after_a_batch_commits_counts_that_batch(self, five_old_rows, settings):
        # Ctrl-C landing after a batch's commit, before the run had counted it, said 2 keys were re-encrypted (and the
        # batch rolled back) when 4 were: the operator was told less than what had changed.
        old, new = five_old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        def ctrl_c_once_committed() -> None:
            transaction.on_commit(lambda: signal.raise_signal(signal.SIGINT))  # a real SIGINT, as the terminal sends

        handler = signal.getsignal(signal.SIGINT)

        with pytest.raises(CommandError) as stopped, before_batch(2, ctrl_c_once_committed):
            run("rotate_encryption_keys", "--batch-size", "2")

        assert stopped.value.returncode == 130
        assert signal.getsignal(signal.SIGINT) is handler  # Ctrl-C is left as it found it
        message = str(stopped.value)
        assert _slugs_opened_by(new) == {"a-org", "b-org", "c-org", "d-org"}
        assert message.startswith("Interrupted: 4 stored key(s) were re-encrypted with the first ")
        assert "rolled back" not in message and "no batch was in progress" in message

    def test_ctrl_c_during_a_dry_run_says_nothing_was_changed(self, five_old_rows, settings):
        old, new = five_old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        def ctrl_c() -> None:
            raise KeyboardInterrupt

        with pytest.raises(CommandError) as stopped, before_batch(2, ctrl_c):
            run("rotate_encryption_keys", "--dry-run", "--batch-size", "2")

        assert stopped.value.returncode == 130
        assert str(stopped.value).startswith("Interrupted: a dry run, nothing was changed")
        assert _slugs_opened_by(new) == set()

    def test_a_dry_run_over_several_batches_counts_them_all_and_changes_nothing(self, five_old_rows, settings):
        old, new = five_old_rows
        settings.FIELD_ENCRYPTION_KEYS = [new, old]

        output = run("rotate_encryption_keys", "--dry-run", "--batch-size", "2")

        assert "Would re-encrypt 5 stored key(s) with the first FIELD_ENCRYPTION_KEYS entry; 0 already were." in output
        assert _slugs_opened_by(new) == set()

    def test_a_batch_size_below_one_is_refused(self, db):
        with pytest.raises(CommandError, match="--batch-size must be a whole number of at least 1"):
            run("rotate_encryption_keys", "--batch-size", "0")


def _slugs_opened_by(key: str) -> set[str]:
    """The organisations whose stored key this entry opens, bound to each (by its signature; nothing is decrypted)."""
    with override_settings(FIELD_ENCRYPTION_KEYS=[key]):
        rows = ClaudeApiKey.objects.select_related("organisation")
        return {row.organisation.slug for row in rows if row.secret.readable()}


class TestSeedDemo:
    def test_it_refuses_with_debug_off_unless_forced(self, db, settings):
        settings.DEBUG = False

        with pytest.raises(CommandError, match="--force"):
            run("seed_demo")
        assert not Organisation.objects.exists()

    def test_it_creates_the_documented_organisations_and_users(self, db):
        output = run("seed_demo", "--force", "--password", "demo-pass-123")

        assert "seed_demo --reset" not in output  # nothing existed, so nothing was kept
        assert dict(Organisation.objects.values_list("slug", "plan")) == {
            "acme": Plan.INSTITUTIONAL,
            "globex": Plan.PROFESSIONAL,
            "initech": Plan.CUSTOM,
        }
        memberships = {
            (m.user.email, m.organisation.slug, m.role)
            for m in Membership.objects.select_related("user", "organisation")
        }
        assert memberships == {
            ("owner@acme.test", "acme", Role.OWNER),
            ("admin@acme.test", "acme", Role.ADMIN),
            ("member@acme.test", "acme", Role.MEMBER),
            ("owner@globex.test", "globex", Role.OWNER),
            ("admin@initech.test", "initech", Role.ADMIN),
        }
        staff = User.objects.get(email="staff@opsion.test")
        assert staff.is_staff and staff.is_superuser
        assert authenticate(username="admin@acme.test", password="demo-pass-123") is not None
        assert "http://127.0.0.1:8000/accounts/login/" in output
        assert "demo-pass-123" in output

    def test_the_default_password_is_opsion_demo(self, db, settings):
        settings.DEBUG = True

        run("seed_demo")

        assert authenticate(username="owner@globex.test", password="opsion-demo") is not None

    def test_run_again_it_keeps_changes_and_adds_only_what_is_missing(self, db):
        # `make run` seeds at every start: a plan changed in admin must survive a restart.
        run("seed_demo", "--force")
        Organisation.objects.filter(slug="acme").update(plan=Plan.PROFESSIONAL)
        Membership.objects.filter(user__email="member@acme.test").update(role=Role.ADMIN)
        owner = User.objects.get(email="owner@acme.test")
        owner.set_password("changed-by-hand")
        owner.save()
        Membership.objects.filter(user__email="admin@initech.test").delete()
        counts = (User.objects.count(), Organisation.objects.count(), Membership.objects.count() + 1)

        output = run("seed_demo", "--force")

        assert (User.objects.count(), Organisation.objects.count(), Membership.objects.count()) == counts
        assert Organisation.objects.get(slug="acme").plan == Plan.PROFESSIONAL
        assert Membership.objects.get(user__email="member@acme.test").role == Role.ADMIN
        assert authenticate(username="owner@acme.test", password="changed-by-hand") is not None
        assert Membership.objects.filter(user__email="admin@initech.test", organisation__slug="initech").exists()
        assert "seed_demo --reset" in output
        assert "password: opsion-demo (for the users created now; the others keep theirs)" in output

    def test_a_password_given_again_is_every_demo_users(self, db):
        run("seed_demo", "--force")

        output = run("seed_demo", "--force", "--password", "my-own-demo-pass")

        assert output.strip().endswith("password: my-own-demo-pass")
        assert authenticate(username="owner@acme.test", password="my-own-demo-pass") is not None

    def test_reset_restores_the_demo_state(self, db):
        run("seed_demo", "--force")
        Organisation.objects.filter(slug="acme").update(plan=Plan.PROFESSIONAL)
        Membership.objects.filter(user__email="member@acme.test").update(role=Role.ADMIN)

        run("seed_demo", "--force", "--reset", "--password", "back-again-1")

        assert Organisation.objects.get(slug="acme").plan == Plan.INSTITUTIONAL
        assert Membership.objects.get(user__email="member@acme.test").role == Role.MEMBER
        assert authenticate(username="owner@acme.test", password="back-again-1") is not None

    def test_reset_lets_every_demo_user_sign_in_again_with_the_documented_rights(self, db):
        # Staff may deactivate a user in admin, or make one staff; --reset puts the README's table back, and
        # a deactivated demo user could not sign in with any password.
        run("seed_demo", "--force")
        User.objects.filter(email__in=["member@acme.test", "staff@opsion.test"]).update(is_active=False)
        User.objects.filter(email="owner@globex.test").update(is_staff=True, is_superuser=True)

        run("seed_demo", "--force", "--reset", "--password", "back-again-1")

        assert authenticate(username="member@acme.test", password="back-again-1") is not None
        assert authenticate(username="staff@opsion.test", password="back-again-1") is not None
        globex_owner = User.objects.get(email="owner@globex.test")
        assert not globex_owner.is_staff and not globex_owner.is_superuser

    def test_reset_takes_back_rights_given_beyond_the_table(self, db):
        # A demo user made Owner of another demo organisation, or given a group or a permission in admin, has
        # more than the README's table says; --reset takes that back. Organisations outside the demo are untouched.
        run("seed_demo", "--force")
        member = User.objects.get(email="member@acme.test")
        globex, elsewhere = (
            Organisation.objects.get(slug="globex"),
            Organisation.objects.create(slug="real", name="Real"),
        )
        Membership.objects.create(user=member, organisation=globex, role=Role.OWNER)
        Membership.objects.create(user=member, organisation=elsewhere, role=Role.OWNER)
        member.groups.add(Group.objects.create(name="support"))
        member.user_permissions.add(Permission.objects.get(codename="change_organisation"))

        output = run("seed_demo", "--force", "--reset", "--password", "back-again-1")

        assert set(Membership.objects.filter(user=member).values_list("organisation__slug", "role")) == {
            ("acme", Role.MEMBER),
            ("real", Role.OWNER),
        }
        assert not member.groups.exists() and not member.user_permissions.exists()
        assert "member@acme.test's membership of globex was removed: it is not in the demo table." in output

    def test_reset_takes_the_staff_demo_users_groups_and_permissions_back_too(self, db):
        run("seed_demo", "--force")
        staff = User.objects.get(email="staff@opsion.test")
        staff.groups.add(Group.objects.create(name="support"))
        staff.user_permissions.add(Permission.objects.get(codename="change_organisation"))

        run("seed_demo", "--force", "--reset", "--password", "back-again-1")

        assert not staff.groups.exists() and not staff.user_permissions.exists()

    def test_run_again_without_reset_keeps_the_rights_given_beyond_the_table(self, db):
        run("seed_demo", "--force")
        member = User.objects.get(email="member@acme.test")
        Membership.objects.create(user=member, organisation=Organisation.objects.get(slug="globex"), role=Role.OWNER)
        member.groups.add(Group.objects.create(name="support"))

        run("seed_demo", "--force")

        assert Membership.objects.filter(user=member, organisation__slug="globex", role=Role.OWNER).exists()
        assert member.groups.filter(name="support").exists()
