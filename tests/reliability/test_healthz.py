"""GET /healthz tells a load balancer whether this server can reach its database and serve its pages."""

import logging

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import Client

from tests.reliability.conftest import database_unreachable, postgres_only


@pytest.mark.django_db
def test_healthz_answers_200_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "staticFiles": True}
    # The media type of every other JSON answer, charset named (RFC 8259 needs none, but the API's say it).
    assert response["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.django_db
def test_healthz_answers_head_as_get(client):
    response = client.head("/healthz")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response.content == b""


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_healthz_refuses_any_other_method_with_a_json_405(method):
    # As a client meets it, CSRF checked: a POST was the console's HTML 403 (CSRF), an OPTIONS ran the probe and
    # answered 200, where every /healthz answer is JSON and a GET-only address answers 405 naming GET and HEAD.
    client = Client(enforce_csrf_checks=True)

    response = client.generic(method, "/healthz", "{}", "application/json")

    assert response.status_code == 405
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Allow"] == "GET, HEAD"
    assert response.json()["error"] == {
        "code": "method_not_allowed",
        "message": f"{method} is not allowed here. Use GET, HEAD.",
    }
    assert response.json()["requestId"] == response["X-Request-ID"]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_while_postgresql_is_unreachable_and_200_once_it_is_back(client):
    with database_unreachable():
        down = client.get("/healthz")

    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": False, "staticFiles": True}
    assert client.get("/healthz").status_code == 200
    assert connection.is_usable()


# Deployed without `collectstatic` (STATIC_MANIFEST on, the production default), every page is a 500: each refers to
# hashed file names that only the manifest knows. /healthz renders no page, so it must look for itself.
MANIFEST_STORAGE = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
NO_STATIC_FILES = (
    "The static files manifest is missing or unreadable, so every page would fail: run collectstatic, then restart."
)


@pytest.fixture
def manifest_storage(settings, tmp_path):
    """Production's static files storage, over a STATIC_ROOT of its own (empty: collectstatic not run)."""
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    settings.STORAGES = MANIFEST_STORAGE
    settings.WHITENOISE_USE_FINDERS = False
    return settings.STATIC_ROOT


def assert_no_static_files(response) -> None:
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "database": True,
        "staticFiles": False,
        "reason": NO_STATIC_FILES,
    }


@pytest.mark.django_db
def test_healthz_answers_503_when_collectstatic_was_not_run_and_logs_it_once(client, manifest_storage, caplog):
    with caplog.at_level(logging.ERROR, logger="opsion"):
        first, second = client.get("/healthz"), client.get("/healthz")

    assert_no_static_files(first)
    assert_no_static_files(second)
    page = Client(raise_request_exception=False).get("/accounts/login/")
    assert page.status_code == 500  # what a load balancer trusting a 200 would keep routing to
    logged = [r for r in caplog.records if r.name == "opsion" and r.levelno == logging.ERROR]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert "staticfiles.json" in logged[0].getMessage()


@pytest.mark.django_db
def test_healthz_answers_503_when_the_manifest_is_unreadable(client, manifest_storage):
    manifest_storage.mkdir()
    (manifest_storage / "staticfiles.json").write_text("{not json")

    assert_no_static_files(client.get("/healthz"))


@pytest.mark.django_db
def test_healthz_answers_200_once_collectstatic_has_run(client, manifest_storage):
    # Only the site's own files: admin's and ninja's, hashed and compressed, would take a minute and prove nothing more.
    call_command("collectstatic", interactive=False, verbosity=0, ignore_patterns=["admin", "ninja"])

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True, "staticFiles": True}
    assert client.get("/accounts/login/").status_code == 200
