"""The fake Anthropic server run standalone, as the README shows for trying failures by hand."""

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import anthropic
import pytest

from tests.fake_anthropic import FakeAnthropic

ROOT = Path(__file__).resolve().parent.parent
REVOKED = "sk-ant-api03-revoked-demo-key-000000000000000000000000000000000000"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status_for(port: int, key: str) -> int:
    deadline = time.monotonic() + 15
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            body = json.dumps({"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "Hi"}]})
            conn.request("POST", "/v1/messages", body, {"Authorization": f"Bearer {key}"})
            return conn.getresponse().status
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_behaviours_are_chosen_on_the_command_line():
    port = _free_port()
    argv = [sys.executable, "tests/fake_anthropic.py", "--port", str(port), "--default", "overloaded"]
    server = subprocess.Popen([*argv, "--key", f"{REVOKED}=auth_error"], cwd=ROOT, stdout=subprocess.DEVNULL)
    try:
        assert _status_for(port, REVOKED) == 401
        assert _status_for(port, "sk-ant-api03-any-other-key") == 529
    finally:
        server.terminate()
        server.wait(10)


@pytest.mark.parametrize(
    "behaviour, stop_reason", [("ok", "end_turn"), ("max_tokens", "max_tokens"), ("refusal", "refusal")]
)
def test_the_real_sdk_reads_how_the_answer_ended_streamed_or_not(behaviour, stop_reason):
    server = FakeAnthropic().start()
    server.default = behaviour
    client = anthropic.Anthropic(api_key="sk-ant-api03-any", base_url=server.base_url, max_retries=0)
    request = {"model": "m", "max_tokens": 77, "messages": [{"role": "user", "content": "Hi"}]}
    try:
        whole = client.messages.create(**request)
        with client.messages.stream(**request) as stream:
            streamed = stream.get_final_message()
    finally:
        server.stop()

    for message in (whole, streamed):
        assert message.stop_reason == stop_reason
        assert (message.usage.output_tokens == 77) == (behaviour == "max_tokens")
    assert whole.content[0].text == streamed.content[0].text


def test_an_unknown_behaviour_is_refused():
    result = subprocess.run(
        [sys.executable, "tests/fake_anthropic.py", "--key", "sk-ant-x=explode"], cwd=ROOT, capture_output=True
    )

    assert result.returncode == 2 and b"--key" in result.stderr
