"""Abuse guards for the console and the API (django-ratelimit, counters in the shared cache).

If the cache (Redis) is unreachable or refuses (a database number above the server's limit, a wrong
password) the guards fail open: a broken cache must not take sign-in and key management down with it,
and every write is still role-checked and audited. The trade is that brute-force counting pauses until
Redis answers again. Each guard says so once, at ERROR, with Redis's reason, and once more, at WARNING,
when it counts again: a line per request would bury the reason in a flood. `check --deploy` asks Redis
before start-up (opsion.W006).
"""

import hashlib
import ipaddress
import logging
import threading
from functools import wraps

import redis
from django.core.cache import cache
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django_ratelimit import core as ratelimit_core
from django_ratelimit.core import get_usage

from opsion.errors import Refused
from opsion.http import client_ip

log = logging.getLogger("opsion.guards")

SIGN_IN_WINDOW_SECONDS = 15 * 60
SIGN_IN_RATE = f"10/{SIGN_IN_WINDOW_SECONDS}s"
KEY_WRITE_RATE = "10/m"
TOKEN_CREATE_RATE = "10/h"
FORM_ONCE_SECONDS = 24 * 3600


class TooManyAttempts(Refused):
    code, status = "too_many_attempts", 429


def _account(_group, request: HttpRequest) -> str:
    return (request.POST.get("username") or "").strip().lower()


def _ip(_group, request: HttpRequest) -> str:
    # The same address the audit log records: behind the trusted proxy (BEHIND_PROXY=1) django-ratelimit's
    # own "ip" key would see only the proxy, and ten failures by anyone would lock everyone out.
    return _network(client_ip(request) or "")


def _network(ip: str) -> str:
    """An IPv6 address's /64, as django-ratelimit's own "ip" key counts it: anyone with IPv6 holds a whole
    /64 and could take a fresh address for every guess. An IPv4 address (mapped into IPv6 by a dual-stack
    server, too) is itself."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if address.version == 4:
        return str(address)
    if address.ipv4_mapped:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Address(int(address) >> 64 << 64))


def _ip_account(_group, request: HttpRequest) -> str:
    # The address and the account together: how many of an address's failures were at one account, which is all
    # that account's reset may forgive the address (reset_forgiven). Counted, never a lock of its own.
    return f"{_ip(None, request)} {_account(None, request)}"


_SIGN_IN_KEYS = (("ip", _ip), ("account", _account))


# The guards whose last run found the cache failing, in this process: each is logged once as it fails and once as
# it counts again. Forgotten when the cache settings change (tests swap them).
_failing: set[str] = set()
_failing_lock = threading.Lock()


def _fail_open(default):
    def decorate(guard):
        @wraps(guard)
        def run(*args, **kwargs):
            try:
                result = guard(*args, **kwargs)
            except TooManyAttempts:
                _counted(guard.__name__)
                raise
            except Exception as exc:  # the cache client's own errors (redis.ConnectionError, timeouts…)
                _skipped(guard.__name__, exc)
                return default
            _counted(guard.__name__)
            return result

        return run

    return decorate


def cache_failure(exc: Exception) -> str:
    """What went wrong, for the log: a Redis error's type and message ("ResponseError: DB index is out of range"),
    which name at most the host and port, never the URL or its password (tests hold them to that); any other
    error's type alone, as its text could hold whatever the guard was handed (the e-mail address typed)."""
    if isinstance(exc, redis.RedisError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def _skipped(name: str, exc: Exception) -> None:
    with _failing_lock:
        first = name not in _failing
        _failing.add(name)
    if first:
        log.error(
            "abuse guard %s skipped: cache unavailable (%s); it lets every attempt through until the cache answers",
            name,
            cache_failure(exc),
        )


def _counted(name: str) -> None:
    if name not in _failing:  # the usual case, read without the lock
        return
    with _failing_lock:
        recovered = name in _failing
        _failing.discard(name)
    if recovered:
        log.warning("abuse guard %s counting again: the cache answers", name)


@receiver(setting_changed)
def _forget_failing_guards(setting: str, **kwargs) -> None:
    if setting == "CACHES":
        with _failing_lock:
            _failing.clear()


@_fail_open(None)
def sign_in_attempt(request: HttpRequest) -> int | None:
    """Count this sign-in attempt before its password is checked; None when it may go on, and when it must be
    refused (this IP or this account has had 10 attempts in 15 minutes that did not succeed) the seconds until
    the counters counted let one through, its Retry-After (a locked address is told nothing of the account's).

    Every attempt is counted up front, with an atomic increment, and a success is counted apart
    (`sign_in_succeeded`), so an attempt still in progress counts as failed. Checking first and counting
    failures afterwards would let every guess already in flight through: 40 parallel guesses, 40 checked.
    """
    # What the address tried at this account is counted as the address's own count is, locked or not: a reset
    # forgives the address that much (reset_forgiven), and no less than the lock went on counting, or someone who
    # kept trying their own password well past the lock would still be locked out after resetting it.
    get_usage(request, group="sign-in-ip-account", key=_ip_account, rate=SIGN_IN_RATE, increment=True)
    full = []
    for name, key in _SIGN_IN_KEYS:  # the address first: a locked address adds nothing to any account's count,
        # or one address could lock out every account it names, staff included, without checking a password
        tried = get_usage(request, group=f"sign-in-{name}", key=key, rate=SIGN_IN_RATE, increment=True)
        succeeded = get_usage(request, group=f"sign-in-{name}-ok", key=key, rate=SIGN_IN_RATE, increment=False)
        if tried is None or (name == "ip" and _reset_here(_ip_account(None, request), tried)):
            continue  # counted against the address all the same: its lock still holds for every other account
        failed = tried["count"] - (succeeded or {}).get("count", 0) - _forgiven(name, key(None, request), tried)
        # The next attempt counts one more failure: a counter at its limit refuses it too, until its window ends.
        full += [tried] if failed >= tried["limit"] else []
        if failed > tried["limit"]:
            return _wait(full)  # see _count: nothing read of the account a locked address names
    return None


def _forgiveness_key(name: str, value: str) -> str:
    return "sign-in-forgiven:" + hashlib.sha256(f"{name}:{value}".encode()).hexdigest()


def _window_end(usage: dict) -> int:
    # By django-ratelimit's own clock, the one its windows are cut by. Only nearly: it read its clock for
    # `time_left` a moment ago (a cache round trip), and a second may have begun since.
    return int(ratelimit_core.time.time()) + usage["time_left"]


def _reset_pass_key(ip_account: str) -> str:
    return "sign-in-reset-here:" + hashlib.sha256(ip_account.encode()).hexdigest()


def _reset_here(ip_account: str, tried: dict) -> bool:
    """Whether the account named was reset from this address in the address's current window (`reset_forgiven`)."""
    reset = cache.get(_reset_pass_key(ip_account))
    return bool(reset) and abs(reset["window_end"] - _window_end(tried)) < SIGN_IN_WINDOW_SECONDS // 2


def _forgiven(name: str, value: str, tried: dict) -> int:
    """The attempts a password reset forgave in this window (`reset_forgiven`); none in a later one."""
    forgiven = cache.get(_forgiveness_key(name, value))
    # The same window if their ends are within a few seconds: another window's is a whole window away.
    same_window = forgiven and abs(forgiven["window_end"] - _window_end(tried)) < SIGN_IN_WINDOW_SECONDS // 2
    return forgiven["failed"] if same_window else 0


@_fail_open(None)
def reset_forgiven(request: HttpRequest, *, user) -> None:
    """A new password set by a reset link lifts the sign-in lock on its account and on the address it was set from:
    someone who forgot their password, guessed, then followed the e-mailed link, is not told to wait out the lock
    with the password they have just chosen. The link proves the mailbox, which any locked-out user could reset the
    password from anyway. Only the failures so far are forgiven: ten more wrong guesses lock the account again.

    The address is forgiven only the failures it made at this account: the mailbox proves nothing about guesses at
    other people's accounts, and anyone with an account of their own could otherwise reset its password to unlock
    an address that sprayed guesses at others, ten more for every reset. An address still locked for its failures
    at other accounts (an office whose colleagues mistyped, behind one address) lets this account through all the
    same, for the rest of the address's window: its lock is there to stop guesses at other people's accounts, and
    guesses at this one are still stopped by the account's own lock, ten more wrong passwords from anywhere.

    The failures are remembered beside django-ratelimit's counters, for their window only, and subtracted as
    successes are; its counters themselves are left alone.

    The reset also lifts the limit on checking the password while signed in (changing it, confirming it for a new
    API token): it signed out every session, a guessing one's too, so its owner may use the new password at once."""
    ip, account = _ip(None, request), user.get_username().strip().lower()
    at_account = _failures("ip-account", f"{ip} {account}")
    for name, value in (("ip", ip), ("account", account)):
        usage = _failures(name, value)
        if usage is None:
            continue
        tried, failed = usage
        if name == "ip":
            failed = min(failed, at_account[1] if at_account else 0)
            reset_here = {"window_end": _window_end(tried)}
            cache.set(_reset_pass_key(f"{ip} {account}"), reset_here, tried["time_left"] + 1)
        # Never less than a reset earlier in this window forgave (another account's, from the same address).
        failed = max(failed, _forgiven(name, value, tried))
        _forgive(name, value, tried, failed)
    checks = _password_checks(user, increment=False)
    if checks is not None and checks["time_left"] > 0:
        _forgive("password-check", _checker(user), checks, checks["count"])


def _forgive(name: str, value: str, tried: dict, failed: int) -> None:
    """Remember that `failed` of the attempts `tried` counts are forgiven, until its window ends."""
    if failed > 0:
        remembered = {"window_end": _window_end(tried), "failed": failed}
        cache.set(_forgiveness_key(name, value), remembered, tried["time_left"] + 1)


def _failures(name: str, value: str) -> tuple[dict, int] | None:
    """The sign-in counter `name` for `value` in its current window, and its attempts that did not succeed."""
    key = lambda _g, _r: value  # noqa: E731
    tried = get_usage(None, group=f"sign-in-{name}", key=key, rate=SIGN_IN_RATE, increment=False)
    succeeded = get_usage(None, group=f"sign-in-{name}-ok", key=key, rate=SIGN_IN_RATE, increment=False)
    if tried is None or tried["time_left"] <= 0:
        return None
    return tried, tried["count"] - (succeeded or {}).get("count", 0)


@_fail_open(None)
def sign_in_succeeded(request: HttpRequest) -> None:
    """Successes are not failures: an office's many sign-ins from one address never lock it."""
    for name, key in (*_SIGN_IN_KEYS, ("ip-account", _ip_account)):
        get_usage(request, group=f"sign-in-{name}-ok", key=key, rate=SIGN_IN_RATE, increment=True)


@_fail_open(None)
def password_check_attempt(*, user) -> int | None:
    """Count this attempt at typing one's password while signed in (changing it, in the console or admin, or
    confirming it before a new API token) before the password is checked; None when it may go on, and when it must
    be refused (10 attempts in 15 minutes, all three together) the seconds until one can go through, its
    Retry-After. Someone holding a borrowed or stolen session could otherwise guess the password, which outlives the
    session. Every attempt counts (a real one is rare), as sign-in counts them."""
    usage = _password_checks(user, increment=True)
    if usage is None or usage["count"] - _forgiven("password-check", _checker(user), usage) <= usage["limit"]:
        return None
    return _wait([usage])


def _checker(user) -> str:
    return f"user:{user.pk}"


def _password_checks(user, *, increment: bool) -> dict | None:
    """The signed-in password checks' counter for `user` in its current window (counting one more with `increment`)."""
    key = lambda _g, _r: _checker(user)  # noqa: E731
    return get_usage(None, group="password-change", key=key, rate=SIGN_IN_RATE, increment=increment)


def _reset_address(_group, request: HttpRequest) -> str:
    return (request.POST.get("email") or "").strip().lower()


_PASSWORD_RESET_KEYS = (("ip", _ip, "20/h"), ("address", _reset_address, "5/h"))


@_fail_open(None)
def password_reset_request(request: HttpRequest) -> int | None:
    """Count this request for a password reset e-mail before any account is looked up or any mail sent; None when
    it may go on, and when it must be refused (20 requests in an hour from this address, an IPv6 client's /64, or 5
    for the e-mail address typed) the seconds until one can go through, its Retry-After. The e-mail address's limit
    keeps Opsion from flooding an inbox, the network's a sweep through many addresses. Both are keyed by what was
    typed and where from, never by whether an account exists, so a refusal, and its wait, say nothing about one. The
    network is counted first: a refused one adds nothing to any e-mail address's count, or one network could keep
    every address it names from getting its link."""
    return _count(request, [(f"password-reset-{name}", key, rate) for name, key, rate in _PASSWORD_RESET_KEYS])


def refusal(message: str, wait: int) -> TooManyAttempts:
    """A guard's refusal: `message` formatted with `{wait}`, the wait in words, and `wait` its Retry-After."""
    return TooManyAttempts(message.format(wait=_in_words(wait)), retry_after=wait)


def _guard(group: str, rate: str, keys: list[str], message: str) -> None:
    """Count one attempt against every key in `keys` in turn; raise TooManyAttempts at the first over its limit,
    `message` formatted with `{wait}`, the wait its Retry-After gives in words."""
    # Keyed by values, not by the request: the services call these after their access checks.
    wait = _count(None, [(group, lambda _g, _r, v=value: v, rate) for value in keys])
    if wait is not None:
        raise refusal(message, wait)


def _count(request: HttpRequest | None, counters: list[tuple]) -> int | None:
    """Count one attempt against each counter (group, key, rate) in turn, up to the first over its limit; None when
    none is, else the seconds until the counters counted let the next attempt through (`_wait`)."""
    full = []
    for group, key, rate in counters:
        usage = get_usage(request, group=group, key=key, rate=rate, increment=True)
        if usage is None:
            continue
        # The next attempt counts one more: a counter at its limit refuses it too, until its window ends.
        full += [usage] if usage["count"] >= usage["limit"] else []
        if usage["count"] > usage["limit"]:
            # The counters after a refusing one are neither counted nor read. Their state would lengthen the wait
            # when full, and so tell someone refused on a network whether an account or an e-mail address they
            # name has been tried, or asked for, by others: their wait is their own counters'. The next attempt
            # may then meet a later counter's limit, and be told its own wait.
            return _wait(full)
    return None


def _wait(full: list[dict]) -> int:
    """The seconds until every counter in `full` (each one that would refuse the next attempt) has started its next
    window: when the next attempt goes through."""
    return max(_seconds_until_next_window(usage) for usage in full)


def _seconds_until_next_window(usage: dict) -> int:
    # django-ratelimit's window ends at a whole second, `time_left` from its clock's whole seconds (int(time())), and
    # that second still belongs to it: the next window begins one second later. Rounded up, never early (at least 1).
    return max(usage["time_left"], 0) + 1


def _in_words(seconds: int) -> str:
    """A wait in words: seconds under a minute, else whole minutes rounded up (never sooner than the wait ends)."""
    count, unit = (seconds, "second") if seconds < 60 else (-(-seconds // 60), "minute")
    return f"{count} {unit}" if count == 1 else f"{count} {unit}s"


@_fail_open(None)
def key_write(*, user, org_slug: str) -> None:
    """10 key saves/removals a minute per user and per organisation. Raises TooManyAttempts, whose Retry-After (and
    message) is when the counters' fixed windows end, at most a minute.

    Called by the key services after the role (and plan) checks, so a Member's refused attempts
    never count against the organisation: they cannot lock its Owners out of rotating the key.
    """
    _guard(
        "byom-key-write",
        KEY_WRITE_RATE,
        [f"user:{user.pk}", f"org:{org_slug}"],
        "Too many changes to this key in a short time. Please try again in {wait}.",
    )


def form_id(*parts: str) -> str:
    """What a form's submission is known by in the session and the shared cache: a digest of its parts (the
    page's one-time value, what the form sends), which come from the request and could be of any length."""
    joined = "".join(f"{len(part)}:{part}" for part in parts)
    return hashlib.sha256(joined.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@_fail_open(True)
def claim_form(*, user, form_id: str) -> bool:
    """True the first time this user submits the one-time form value `form_id`, False after.

    The claim is one atomic cache add(), so two submissions racing (a double click: both read the
    session before either writes it) cannot both win. Fails open: the session's own list still
    catches a reload.
    """
    return cache.add(f"form-once:{user.pk}:{form_id}", 1, timeout=FORM_ONCE_SECONDS)


@_fail_open(None)
def release_form(*, user, form_id: str) -> None:
    """Undo `claim_form` for a submission that was refused before it did anything, so the form may be sent again."""
    cache.delete(f"form-once:{user.pk}:{form_id}")


@_fail_open(None)
def token_create(*, user) -> None:
    """10 new API tokens an hour per user. Raises TooManyAttempts, whose Retry-After is when the hour's fixed window
    ends."""
    _guard(
        "api-token-create",
        TOKEN_CREATE_RATE,
        [f"user:{user.pk}"],
        "Too many new API tokens in a short time. Please try again in {wait}.",
    )
