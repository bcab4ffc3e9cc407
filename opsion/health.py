"""GET /healthz: whether this process can serve, for load balancers."""

import logging

from django.conf import settings
from django.contrib.staticfiles.storage import staticfiles_storage
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.db import connection
from django.db.utils import DatabaseError
from django.dispatch import receiver
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from opsion.errors import method_not_allowed

log = logging.getLogger("opsion")

# base.html links it on every page: a name the storage cannot resolve makes every page a 500.
PAGE_STYLESHEET = "css/opsion.css"
NO_STATIC_FILES = (
    "The static files manifest is missing or unreadable, so every page would fail: run collectstatic, then restart."
)

# Once the storage has resolved a page's file it keeps doing so (it reads its manifest once, when first used), so
# the good result is kept for the process and later probes cost nothing. A bad one is looked at again on each probe,
# but logged once: a probe every few seconds would otherwise fill the log with the same line.
_static_files_ok = False
_static_files_failure_logged = False


@csrf_exempt  # it reads no body and changes nothing: another method meets the JSON 405 below, not the HTML 403
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and pages can be rendered; 503, saying which is not so, otherwise."""
    if request.method not in ("GET", "HEAD"):
        # As the API answers a method an address does not take: a probe sent as POST or OPTIONS (a misconfigured
        # load balancer) is told so, rather than answered 200 as if the method were one.
        return method_not_allowed(request.method, "GET, HEAD")
    database = _database_answers()
    static_files = _static_files_resolve()
    body = {"status": "ok" if database and static_files else "unavailable", "database": database}
    body["staticFiles"] = static_files
    if not static_files:
        body["reason"] = NO_STATIC_FILES
    # The API's media type (opsion.api), charset named: JsonResponse's default names none.
    return JsonResponse(
        body, status=200 if database and static_files else 503, content_type="application/json; charset=utf-8"
    )


def _database_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        return False
    return True


def _static_files_resolve() -> bool:
    """Whether the static files storage resolves a name every page refers to, as rendering the page would. With
    STATIC_MANIFEST on that needs collectstatic's manifest, read when this process first used the storage: one
    written after that serves nobody until a restart. Plain storage (STATIC_MANIFEST off) always resolves."""
    global _static_files_ok, _static_files_failure_logged
    if _static_files_ok:
        return True
    failure = static_files_failure()
    if failure is not None:
        if not _static_files_failure_logged:
            _static_files_failure_logged = True
            log.error(
                "/healthz answers 503: the static files storage cannot resolve %s (%s: %s). Run collectstatic so "
                "that STATIC_ROOT (%s) holds staticfiles.json, then restart.",
                PAGE_STYLESHEET,
                type(failure).__name__,
                failure,
                settings.STATIC_ROOT,
            )
        return False
    _static_files_ok = True
    return True


def static_files_failure() -> Exception | None:
    """Why the static files storage cannot resolve a name every page refers to, or None when it can."""
    try:
        staticfiles_storage.url(PAGE_STYLESHEET)
    # No entry in the manifest (none there); a corrupt or unreadable one; a storage Django refuses to set up.
    except (ValueError, OSError, ImproperlyConfigured) as failure:
        return failure
    return None


@receiver(setting_changed)
def _forget_static_files_result(setting: str, **kwargs) -> None:
    # Tests swap the storage and its root; Django resets its staticfiles_storage the same way.
    global _static_files_ok, _static_files_failure_logged
    if setting in ("STORAGES", "STATIC_ROOT", "STATIC_URL"):
        _static_files_ok = _static_files_failure_logged = False
