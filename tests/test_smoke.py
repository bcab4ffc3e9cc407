import json

from tests.base import GOOD_KEY, PASSWORD


def test_admin_saves_key_then_asks(client, world, fake_anthropic):
    assert client.login(email="admin@acme.test", password=PASSWORD)
    r = client.get("/orgs/acme/settings/")
    assert r.status_code == 200
    assert "AI Insights — Bring Your Own Model" in r.content.decode()
    r = client.post("/orgs/acme/settings/claude-api-key/save", {"api_key": GOOD_KEY})
    assert r.status_code == 302
    r = client.get("/orgs/acme/settings/")
    assert "sk-ant-••••••••••••••••" in r.content.decode()
    r = client.post(
        "/api/v1/orgs/acme/insights/queries",
        json.dumps({"query": "hi"}),
        content_type="application/json",
        headers={"X-CSRFToken": "x"},
    )
    print(r.status_code, r.content)
    r = client.get("/api/v1/orgs/acme/settings")
    print(r.json())
    r = client.post("/orgs/acme/insights/", {"query": "What is MiCAR?"}, headers={"Accept": "text/event-stream"})
    print(r.status_code, b"".join(r.streaming_content)[:2000])
    assert fake_anthropic.keys_used == [GOOD_KEY]
