import json
import time
from django.test import Client
from tests.base import GOOD_KEY

def test_probe(world):
    t=time.time()
    c = Client()
    c.force_login(world.acme_admin)
    r = c.post("/orgs/acme/settings/claude-api-key/save", {"api_key": "sk-ant-" + "a"*(1024*1024)})
    print("console 1MB", r.status_code, r.content[:300])
    r = c.put("/api/v1/orgs/acme/settings/claude-api-key", data=json.dumps({"apiKey": "sk-ant-"+"a"*(1024*1024)}), content_type="application/json")
    print("api 1MB", r.status_code, r.content[:300])
    r = c.put("/api/v1/orgs/acme/settings/claude-api-key", data="notjson", content_type="application/json")
    print("api notjson", r.status_code, r.content[:300])
    r = c.put("/api/v1/orgs/acme/settings/claude-api-key", data=json.dumps({}), content_type="application/json")
    print("api missing", r.status_code, r.content[:300])
    r = c.put("/api/v1/orgs/acme/settings/claude-api-key", data=json.dumps({"apiKey": 5}), content_type="application/json")
    print("api int", r.status_code, r.content[:300])
    r = c.put("/api/v1/orgs/acme/settings/claude-api-key", data=json.dumps(["x"]), content_type="application/json")
    print("api list", r.status_code, r.content[:300])
    c2 = Client(enforce_csrf_checks=True); c2.force_login(world.acme_admin)
    r = c2.put("/api/v1/orgs/acme/settings/claude-api-key", data=json.dumps({"apiKey": GOOD_KEY}), content_type="application/json")
    print("api csrf", r.status_code, r.content[:300])
    r = c2.delete("/api/v1/orgs/acme/settings/claude-api-key")
    print("api csrf del", r.status_code, r.content[:300])
    r = Client().get("/api/v1/orgs/acme/settings")
    print("anon", r.status_code, r.content[:300])
    r = Client().get("/api/v1/orgs/acme/settings", HTTP_AUTHORIZATION="Bearer junk")
    print("bad token", r.status_code, r.content[:300])
    print(time.time()-t)
