from contextlib import AbstractContextManager, nullcontext
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

from opsion.reporting import holds_secret


def trusts_proxy_headers() -> bool:
    """Whether requests come through one trusted proxy (BEHIND_PROXY=1), whose X-Forwarded-* headers (and
    X-Request-ID) are believed; without one, any client could write them."""
    return settings.SECURE_PROXY_SSL_HEADER is not None


def client_ip(request: HttpRequest) -> str | None:
    """The caller's IP. Behind a trusted proxy (BEHIND_PROXY=1) the last X-Forwarded-For hop it added."""
    if trusts_proxy_headers():
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[-1].strip() or None
    return request.META.get("REMOTE_ADDR") or None


def without_secret(url: str) -> str:
    """`url` (a sign-in's `next`) as it may be sent back, in a redirect or a form: without its query string when that
    holds a Claude API key or an API token (anything log lines redact), and "" (the default page) when its path does.
    Sent on, it would come back (opsion.middleware refuses such an address)."""
    if not url or not holds_secret(url):
        return url
    path = urlsplit(url).path
    return "" if holds_secret(path) else path


def atomic_for_post(request: HttpRequest) -> AbstractContextManager:
    """A transaction for a POST, which writes, and none for any other method: on SQLite a transaction takes the
    database's write lock (BEGIN IMMEDIATE), which a page's GET would hold while it renders, holding back every
    other write (a query counted, a key saved)."""
    return transaction.atomic() if request.method == "POST" else nullcontext()
