"""README's API examples, run as a client developer would paste them: bash and curl against a real server (gunicorn
on the test database and the fake Anthropic), the token made by the management command the first line calls."""

import json
import re
import shutil
import subprocess
import sys

import pytest
from django.conf import settings

from insights.models import InsightQuery
from tests.reliability.app_servers import server_environment, servers

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the server and the command read what the test committed
    pytest.mark.skipif(not shutil.which("curl"), reason="README's examples call curl"),
]

README_SERVER = "http://127.0.0.1:8000"  # `make run`'s address, as the examples give it


def readme_examples() -> str:
    """The first shell block of README's API section."""
    readme = (settings.BASE_DIR / "README.md").read_text()
    section = readme[readme.index("## The JSON API") : readme.index("## Design notes")]
    return re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)


def answers(output: str) -> list[dict]:
    """The JSON bodies curl printed one after another."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(output):
        body, at = decoder.raw_decode(output, at)
        found.append(body)
        while at < len(output) and output[at].isspace():
            at += 1
    return found


@pytest.fixture
def server(world, fake_anthropic, tmp_path):
    env = server_environment(fake_anthropic)
    for base_urls in servers(env, tmp_path, 1):
        yield base_urls[0], env


def test_the_readmes_api_examples_answer_as_the_readme_says(server, fake_anthropic):
    base_url, env = server
    examples = readme_examples()
    assert README_SERVER in examples and ".venv/bin/python " in examples
    # Only where they run differs: this server's address, and the interpreter running the tests (the checkout's
    # .venv's under `make test`).
    script = examples.replace(README_SERVER, base_url).replace(".venv/bin/python ", f"{sys.executable} ")

    ran = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert ran.returncode == 0, ran.stderr
    organisations, usage, answer, history, audit = answers(ran.stdout)
    assert not [body for body in (organisations, usage, answer, history, audit) if "error" in body]
    assert [item["slug"] for item in organisations["items"]] == ["acme"]
    assert (usage["limit"], usage["used"]) == (20, 0)
    assert answer["answer"] == fake_anthropic.answer_text and answer["rateLimit"]["remaining"] == 19
    assert [item["id"] for item in history["items"]] == [answer["id"]]
    assert audit["items"] == [] and audit["limit"] == 50
    assert InsightQuery.objects.get().idempotency_key == "0f6b3d1e-6c2a-4e8b-9a57-2d4c8e1f7a90"
