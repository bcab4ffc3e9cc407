"""How tests reach the app: signed-in console clients, API-token clients, the key endpoints, a dead port."""

import json
import socket

from django.test import Client

from orgs import services

KEY_API = "/api/v1/orgs/{}/settings/claude-api-key"


def console(user=None, **kwargs) -> Client:
    """A browser-like client, signed in as `user` when one is given."""
    client = Client(**kwargs)
    if user is not None:
        client.force_login(user)
    return client


def bearer(user, name: str = "tests") -> dict:
    """Request headers carrying a fresh personal API token of `user`."""
    _, raw = services.api_token_create(user=user, name=name)
    return {"Authorization": f"Bearer {raw}"}


def token_client(user) -> Client:
    """A client authenticated by a fresh personal API token, as a script would be."""
    return Client(headers=bearer(user))


def api_put_key(client: Client, slug: str, body, **headers):
    """PUT the organisation's key over the API; `body` is a JSON-able object, or raw text sent as is."""
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return client.put(KEY_API.format(slug), data=data, content_type="application/json", headers=headers)


def api_delete_key(client: Client, slug: str, **headers):
    return client.delete(KEY_API.format(slug), headers=headers)


def closed_port() -> int:
    """A local TCP port with nothing listening on it: connecting is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
