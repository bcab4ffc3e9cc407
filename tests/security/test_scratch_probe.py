import json
from django.test import Client
from tests.base import GOOD_KEY, PASSWORD

def show(label, r):
    print(label, r.status_code, r.get("Content-Type"), r.content[:250])

def test_probe(world):
    c = Client()
    c.force_login(world.acme_admin)
    u = "/api/v1/orgs/acme/settings/claude-api-key"
    show("patch", c.patch(u, data="{}", content_type="application/json"))
    show("post", c.post(u, data="{}", content_type="application/json"))
    show("xml", c.put(u, data="<a/>", content_type="application/xml"))
    show("form", c.put(u, data="apiKey=x", content_type="application/x-www-form-urlencoded"))
    show("badutf8", c.put(u, data=b'{"apiKey": "sk-ant-\xff\xfe"}', content_type="application/json"))
    show("big", c.put(u, data=json.dumps({"apiKey": "x" * 100000}), content_type="application/json"))
    show("nul", c.put(u, data=json.dumps({"apiKey": GOOD_KEY + "\x00"}), content_type="application/json"))
    show("other org", c.get("/api/v1/orgs/globex/settings"))
    show("unknown route", c.get("/api/v1/nope"))
    show("q badutf8", c.post("/api/v1/orgs/acme/insights/queries", data=b'{"query": "\xff"}', content_type="application/json"))
    show("q nul", c.post("/api/v1/orgs/acme/insights/queries", data=json.dumps({"query": "a\x00b"}), content_type="application/json"))
    show("list bad", c.get("/api/v1/orgs/acme/insights/queries?limit=abc"))
    show("list huge", c.get("/api/v1/orgs/acme/insights/queries?limit=99999999999999999999999"))
    show("console big", c.post("/orgs/acme/settings/claude-api-key/save", {"api_key": "x" * 100000}))
    show("console badutf8", c.post("/orgs/acme/settings/claude-api-key/save", data=b"api_key=%ff%fe", content_type="application/x-www-form-urlencoded"))
    show("console get save", c.get("/orgs/acme/settings/claude-api-key/save"))
    show("get openapi", c.get("/api/v1/openapi.json"))
    for i in range(12):
        r = c.put(u, data=json.dumps({"apiKey": GOOD_KEY}), content_type="application/json")
    show("ratelimited", r)
    a = Client()
    for i in range(11):
        r = a.post("/accounts/login/", {"username": "member@acme.test", "password": "wrong"})
    show("login locked", r)
    print(r.headers)
