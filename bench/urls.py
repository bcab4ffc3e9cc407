"""The production URLs plus a baseline endpoint that only calls Anthropic (the fake) through the SDK.

The baseline does what any Claude-backed endpoint must do and nothing else: parse the body, call
`insights.claude.stream_answer` (the same SDK client the real endpoint uses) and return the
answer as JSON. The real endpoint minus the baseline is Opsion's own cost per query.
"""

import json

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from insights import claude
from opsion.urls import urlpatterns as production_urlpatterns

BASELINE_KEY = "sk-ant-api03-bench-baseline-0000000000000000000000000000000000000000"


class _BaselineKey:
    def reveal(self) -> str:
        return BASELINE_KEY


@csrf_exempt
@require_POST
def baseline(request: HttpRequest) -> JsonResponse:
    query = json.loads(request.body)["query"]
    parts = [part for part in claude.stream_answer(secret=_BaselineKey(), query=query) if isinstance(part, str)]
    return JsonResponse({"answer": "".join(parts)})


urlpatterns = [*production_urlpatterns, path("bench/baseline", baseline)]
