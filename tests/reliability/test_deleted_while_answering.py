"""Rows deleted while an answer is being written: Opsion staff delete the organisation (offboarding, erasure) in
admin, or the query's row goes some other way (admin refuses while the limit counts it). The reader still gets the
answer Anthropic is writing, never a server error, and nothing is written back for the rows that are gone."""

import json
import threading
import time

import pytest
from django.db import connections
from django.urls import reverse

from insights.models import InsightQuery
from orgs.models import Organisation
from tests.conftest import PLATFORM_KEY

from ..insights.helpers import parse_sse, sse_events

QUESTION = "What does MiCAR Article 59 require?"


def wait_for(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("deleted", ["organisation", "query"])
def test_a_streamed_answer_ends_with_done_when_staff_delete_its_rows_meanwhile(world, console, fake_anthropic, deleted):
    fake_anthropic.behave(PLATFORM_KEY, "hold")  # one delta, then the fake waits
    response = console(world.globex_member).post(
        reverse("insights:query", args=["globex"]), {"query": QUESTION}, HTTP_ACCEPT="text/event-stream"
    )
    chunks = iter(response.streaming_content)
    assert parse_sse(next(chunks))[0] == "start"
    assert parse_sse(next(chunks))[0] == "delta"
    row = InsightQuery.objects.get()
    if deleted == "organisation":
        url = f"/admin/orgs/organisation/{world.globex.pk}/delete/"
        assert console(world.staff).post(url, {"post": "yes"}).status_code == 302
    else:  # admin refuses to delete a query the limit still counts: an operator at the database, say
        InsightQuery.objects.filter(pk=row.pk).delete()
    assert not InsightQuery.objects.exists()

    fake_anthropic.release.set()
    names = [name for name, _ in sse_events(chunks)]

    assert names[-2:] == ["done", "usage"]
    assert not InsightQuery.objects.exists()  # nothing written back for a row that is gone


@pytest.mark.django_db(transaction=True)  # the API call runs in a thread, on its own connection
def test_an_api_answer_is_returned_when_staff_delete_the_organisation_meanwhile(world, api_client, fake_anthropic):
    fake_anthropic.behave(PLATFORM_KEY, "hold")
    client, answered = api_client(world.globex_member), {}

    def ask():
        body = json.dumps({"query": QUESTION})
        try:
            answered["response"] = client.post("/api/v1/orgs/globex/insights/queries", body, "application/json")
        finally:
            connections.close_all()  # this thread's own connection: the test database can then be dropped

    asking = threading.Thread(target=ask)
    asking.start()
    wait_for(lambda: fake_anthropic.requests)
    Organisation.objects.filter(pk=world.globex.pk).delete()
    fake_anthropic.release.set()
    asking.join(30)

    response = answered["response"]
    assert response.status_code == 200, response.content
    assert response.json()["answer"] == fake_anthropic.answer_text
    assert not InsightQuery.objects.exists()
