"""GET /healthz tells a load balancer whether this server can reach its database."""

import pytest
from django.db import connection

from tests.reliability.conftest import database_unreachable, postgres_only


@pytest.mark.django_db
def test_healthz_answers_200_when_the_database_answers(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": True}


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_healthz_answers_503_while_postgresql_is_unreachable_and_200_once_it_is_back(client):
    with database_unreachable():
        down = client.get("/healthz")

    assert down.status_code == 503
    assert down.json() == {"status": "unavailable", "database": False}
    assert client.get("/healthz").status_code == 200
    assert connection.is_usable()
