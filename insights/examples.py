"""Examples the OpenAPI document shows for askQuestion: a question, its answer and its 429s, as the API gives them.

Built from the settings and refusals in force, so the limits and messages they show are the server's own. They hold no
key and no token: a client's author copies examples, and a credential-shaped one would be copied into code.
"""

from django.conf import settings

from insights import services
from insights.models import KeySource, StopReason
from insights.ratelimit import RateLimited, Window

QUESTION = "Which reserve rules apply to issuers of asset-referenced tokens under MiCAR?"

ANSWER = (
    "## Reserve of assets\n\n"
    "Issuers of asset-referenced tokens must constitute and at all times maintain a reserve of assets "
    "(Article 36 MiCAR):\n\n"
    "- **Segregation**: the reserve is kept apart from the issuer's own estate and from other tokens' reserves, "
    "for the holders' benefit (Article 36).\n"
    "- **Custody**: reserve assets sit with a credit institution, crypto-asset service provider or investment firm "
    "(Article 37).\n"
    "- **Investment**: only in highly liquid financial instruments with minimal market, credit and concentration "
    "risk (Article 38; the RTS specify which).\n"
    "- **Audit**: an independent audit every six months (Article 36(9)).\n"
)

# Counted in this request's window: 13 queries so far, the oldest leaving it in 35 minutes 40 seconds.
_WINDOW = Window(
    limit=settings.INSIGHTS_BYOM_LIMIT, window_seconds=settings.INSIGHTS_WINDOW_SECONDS, used=13, reset_seconds=2140
)
_FULL = Window(
    limit=settings.INSIGHTS_BYOM_LIMIT,
    window_seconds=settings.INSIGHTS_WINDOW_SECONDS,
    used=settings.INSIGHTS_BYOM_LIMIT,
    reset_seconds=754,
)
REQUEST_ID = "9f1c2b7e4d5a4c03b8e6a1f2d3c4b5a6"  # as a request's ID is: 32 hex digits

QUESTION_EXAMPLES = {"question": {"summary": "A compliance question", "value": {"query": QUESTION}}}

ANSWER_EXAMPLES = {
    "answered": {
        "summary": "Answered on the organisation's own key",
        "value": {
            "id": 1042,
            "query": QUESTION,
            "answer": ANSWER,
            "model": settings.ANTHROPIC_MODEL,
            "keySource": KeySource.ORGANISATION.value,
            "stopReason": StopReason.COMPLETE.value,
            "usage": {"inputTokens": 412, "outputTokens": 187},
            "rateLimit": {
                "limit": _WINDOW.limit,
                "remaining": _WINDOW.remaining,
                "resetSeconds": _WINDOW.reset_seconds,
            },
        },
    }
}


def _error(refused) -> dict:
    return {"error": {"code": refused.code, "message": refused.message}, "requestId": REQUEST_ID}


TOO_MANY_EXAMPLES = {
    "rate_limited": {
        "summary": "The organisation's rolling limit reached (Retry-After: when the next query fits)",
        "value": _error(RateLimited(_FULL)),
    },
    "upstream_rate_limited": {
        "summary": "Anthropic rate-limits the organisation's own account",
        "value": _error(services.UpstreamRateLimited(30)),
    },
}
