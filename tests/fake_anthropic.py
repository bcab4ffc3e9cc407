"""A fake Anthropic Messages API: a real HTTP server on 127.0.0.1 that the real SDK reaches
through its base URL. It speaks JSON and SSE streaming, Anthropic's error shape, and records
which key every request carried, so a test can prove which key was used.

Behaviour is chosen per API key (`fake.behave(key, "auth_error")`) or for every key
(`fake.default = "overloaded"`):

- "ok": answers (streamed or not) with `fake.answer_text`;
- "auth_error" (401), "permission_error" (403), "rate_limited" (429 + retry-after),
  "billing_error" (402), "credit_exhausted" and "spend_limit" (400s naming the account's credit or
  spend limit), "server_error" (500),
  "overloaded" (529);
- "slow": sleeps `fake.delay` seconds before answering (to trip the client's timeout);
- "midstream_error": streams part of the answer, then an `error` event;
- "dropped": streams part of the answer, then closes the connection (no error, no `message_stop`: a connection
  lost part-way, which a reply whose end is the connection's end cannot tell from its end but by what it lacks);
- "max_tokens": writes the first half of the answer, cut mid-sentence, and ends it with `stop_reason: "max_tokens"`
  and as many output tokens as the request's `max_tokens` (Claude stopped at the length cap);
- "refusal": writes the answer's first words and ends it with `stop_reason: "refusal"` (Claude declined: newer
  models' safety classifiers stop a reply so, even part-way);
- "hold": streams the first delta, then waits until `fake.release` is set (to prove streaming);
- "pings": opens the stream, sends only `ping` events (Anthropic's keep-alives) for `fake.delay` seconds,
  then answers;
- "redirect": a 307 to another path of the fake (which a client must not follow).
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DEFAULT_ANSWER = (
    "## Authorisation under MiCAR\n\n"
    "A crypto-asset service provider must be **authorised by the competent authority** of its home "
    "Member State (Article 59).\n\n- Submit the application under Article 62\n- Meet prudential "
    "requirements (Article 67)\n"
)

ERRORS = {
    "auth_error": (401, "authentication_error", "invalid x-api-key"),
    "permission_error": (
        403,
        "permission_error",
        "Your API key does not have permission to use this resource.",
    ),
    "rate_limited": (
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
    ),
    # The account cannot pay: Anthropic's 402, and the 400s it sends when credit runs out or a spend limit is hit.
    "billing_error": (402, "billing_error", "There is an issue with your account's billing."),
    "credit_exhausted": (
        400,
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or "
        "purchase credits.",
    ),
    "spend_limit": (
        400,
        "invalid_request_error",
        "You have reached your specified API usage limits. You will regain access on 2026-12-01 at 00:00 UTC.",
    ),
    "server_error": (500, "api_error", "Internal server error"),
    "overloaded": (529, "overloaded_error", "Overloaded"),
}


class FakeAnthropic:
    def __init__(self, port: int = 0) -> None:
        self.requests: list[dict] = []
        self.behaviours: dict[str, str] = {}
        self.default = "ok"
        self.answer_text = DEFAULT_ANSWER
        self.retry_after = "30"
        # Real Anthropic marks 429/529 as retryable; "true" lets a test prove the SDK does not retry.
        self.should_retry = "false"
        self.delay = 5.0
        self.release = threading.Event()
        self.chunk_pause = 0.0
        self.midstream_error = "overloaded_error"  # the error event's type for "midstream_error"
        self.set_cookie = ""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def keys_used(self) -> list[str]:
        return [r["key"] for r in self.requests]

    def behave(self, key: str, behaviour: str) -> None:
        self.behaviours[key] = behaviour

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
        self.behaviours.clear()
        self.default = "ok"
        self.answer_text = DEFAULT_ANSWER
        self.retry_after = "30"
        self.should_retry = "false"
        self.release = threading.Event()
        self.chunk_pause = 0.0
        self.midstream_error = "overloaded_error"
        self.set_cookie = ""

    def start(self) -> "FakeAnthropic":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()

    def _record(self, entry: dict) -> None:
        with self._lock:
            self.requests.append(entry)

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

            def handle(self) -> None:
                # A client that gave up (our timeout, a closed stream) is expected, not an error.
                try:
                    super().handle()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                auth = self.headers.get("authorization", "")
                key = auth[7:] if auth.lower().startswith("bearer ") else self.headers.get("x-api-key", "")
                fake._record({"key": key, "path": self.path, "body": body, "cookie": self.headers.get("cookie")})
                if not self.path.startswith("/v1/messages"):
                    return self._error(404, "not_found_error", "Not found")
                behaviour = fake.behaviours.get(key, fake.default)
                if behaviour == "slow":
                    time.sleep(fake.delay)
                if behaviour in ERRORS:
                    return self._error(*ERRORS[behaviour])
                if behaviour == "redirect":  # as a hijacked DNS name or a misconfigured proxy might
                    return self._json(307, {}, {"location": f"{fake.base_url}/elsewhere{self.path}"})
                if body.get("stream"):
                    return self._stream(body, behaviour)
                text, stop_reason = _ending(behaviour, fake.answer_text)
                message = _message(body, text, stop_reason)
                if stop_reason == "max_tokens":
                    message["usage"]["output_tokens"] = body.get("max_tokens", 0)
                return self._json(200, message)

            def _cookie(self) -> None:
                if fake.set_cookie:  # as a CDN or load balancer in front of the API might
                    self.send_header("set-cookie", fake.set_cookie)

            def _json(self, status: int, payload: dict, headers: dict | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", "req_fake")
                self._cookie()
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def _error(self, status: int, kind: str, message: str) -> None:
                headers = {"retry-after": fake.retry_after} if status == 429 else {}
                headers["x-should-retry"] = fake.should_retry
                self._json(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)

            def _event(self, event: str, data: dict) -> None:
                self.wfile.write(f"event: {event}\ndata: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

            def _stream(self, body: dict, behaviour: str) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self._cookie()
                self.send_header("connection", "close")
                self.end_headers()
                text, stop_reason = _ending(behaviour, fake.answer_text)
                message = _message(body, "")
                message["usage"] = {"input_tokens": _count(body), "output_tokens": 1}
                self._event("message_start", {"type": "message_start", "message": message})
                self._event(
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": 0,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
                if behaviour == "pings":
                    until = time.monotonic() + fake.delay
                    while time.monotonic() < until:
                        self._event("ping", {"type": "ping"})
                        time.sleep(0.2)
                chunks = _chunks(text)
                for i, chunk in enumerate(chunks):
                    self._event(
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": 0,
                            "delta": {"type": "text_delta", "text": chunk},
                        },
                    )
                    if behaviour == "hold" and i == 0:
                        fake.release.wait(30)
                    if behaviour == "dropped" and i == 1:
                        self.close_connection = True
                        return
                    if behaviour == "midstream_error" and i == 1:
                        self._event(
                            "error",
                            {"type": "error", "error": {"type": fake.midstream_error, "message": "Stream failed"}},
                        )
                        self.close_connection = True
                        return
                    if fake.chunk_pause:
                        time.sleep(fake.chunk_pause)
                self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
                self._event(
                    "message_delta",
                    {
                        "type": "message_delta",
                        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                        "usage": {
                            "output_tokens": body.get("max_tokens", 0)
                            if stop_reason == "max_tokens"
                            else len(text.split())
                        },
                    },
                )
                self._event("message_stop", {"type": "message_stop"})
                self.close_connection = True

        return Handler


def _count(body: dict) -> int:
    return sum(len(str(m.get("content", "")).split()) for m in body.get("messages", [])) + 10


def _chunks(text: str, size: int = 24) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _ending(behaviour: str, text: str) -> tuple[str, str]:
    """The text a behaviour writes and the `stop_reason` it ends with."""
    if behaviour == "max_tokens":
        return text[: len(text) // 2], "max_tokens"
    if behaviour == "refusal":
        return text[:48], "refusal"
    return text, "end_turn"


def _message(body: dict, text: str, stop_reason: str = "end_turn") -> dict:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "claude-fake"),
        "content": [{"type": "text", "text": text}] if text else [],
        "stop_reason": stop_reason if text else None,
        "stop_sequence": None,
        "usage": {"input_tokens": _count(body), "output_tokens": len(text.split())},
    }


BEHAVIOURS = ["ok", *ERRORS, "slow", "pings", "midstream_error", "dropped", "max_tokens", "refusal", "redirect"]


def _key_behaviour(text: str) -> tuple[str, str]:
    key, _, behaviour = text.rpartition("=")
    if not key or behaviour not in BEHAVIOURS:
        raise ValueError(text)
    return key, behaviour


if __name__ == "__main__":
    # A standalone server, for `make run` (README), `make loadtest` and `make bench`:
    # python tests/fake_anthropic.py --port 8765 [--default overloaded] [--key sk-ant-…=auth_error]
    import argparse

    parser = argparse.ArgumentParser(description="Serve the fake Anthropic Messages API on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--chunk-pause", type=float, default=0.0, help="seconds between streamed chunks")
    parser.add_argument(
        "--default", choices=BEHAVIOURS, default="ok", help="how every key not named by --key is answered"
    )
    parser.add_argument(
        "--key",
        type=_key_behaviour,
        action="append",
        default=[],
        metavar="KEY=BEHAVIOUR",
        help=f"answer this key so ({', '.join(BEHAVIOURS)}); repeatable",
    )
    options = parser.parse_args()
    server = FakeAnthropic(port=options.port)
    server.chunk_pause = options.chunk_pause
    server.default = options.default
    for key, behaviour in options.key:
        server.behave(key, behaviour)
    print(f"fake Anthropic listening on {server.base_url}", flush=True)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
