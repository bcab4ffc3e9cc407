"""The load: API clients of several organisations asking questions and reading their usage.

Each simulated user acts for one organisation with one of its members' tokens. A query answered
(200) or refused at the limit (429) is a success; any 5xx, or anything else unexpected, is a
failure. Per-organisation status counts are written to $LOADTEST_RESULT when the run ends.
"""

import itertools
import json
import os
import random
import threading
from collections import Counter, defaultdict

from locust import HttpUser, between, events, task

WORLD = json.loads(open(os.environ["LOADTEST_WORLD"]).read())  # noqa: SIM115
QUESTIONS = [
    "What must a CASP do to obtain authorisation under MiCAR Article 59?",
    "What goes into a MiCAR crypto-asset white paper?",
    "How does DORA apply to a CASP authorised under MiCAR?",
    "What does the travel rule require for crypto-asset transfers?",
]

_statuses: dict[str, Counter] = defaultdict(Counter)
_lock = threading.Lock()
_next_org = itertools.count()


def _count(slug: str, what: str, status: int) -> None:
    with _lock:
        _statuses[slug][f"{what} {status}"] += 1


class ApiClient(HttpUser):
    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        # Round robin, so every organisation gets its share of the users.
        org = WORLD[next(_next_org) % len(WORLD)]
        self.slug = org["slug"]
        self.client.headers["Authorization"] = f"Bearer {random.choice(org['tokens'])}"

    def _call(self, method: str, path: str, what: str, ok: tuple[int, ...], **kwargs) -> None:
        with self.client.request(
            method, f"/api/v1/orgs/{self.slug}{path}", name=what, catch_response=True, **kwargs
        ) as response:
            _count(self.slug, what, response.status_code)
            if response.status_code in ok:
                response.success()
            else:
                response.failure(f"unexpected {response.status_code}")

    @task(6)
    def ask(self) -> None:
        self._call("POST", "/insights/queries", "POST queries", (200, 429), json={"query": random.choice(QUESTIONS)})

    @task(2)
    def usage(self) -> None:
        self._call("GET", "/insights/usage", "GET usage", (200,))

    @task(1)
    def history(self) -> None:
        self._call("GET", "/insights/queries?limit=10", "GET history", (200,))

    @task(1)
    def settings(self) -> None:
        self._call("GET", "/settings", "GET settings", (200,))


@events.quitting.add_listener
def _write_result(environment, **kwargs) -> None:
    path = os.environ.get("LOADTEST_RESULT")
    if path:
        with open(path, "w") as out:
            json.dump({slug: dict(counts) for slug, counts in _statuses.items()}, out, indent=2)
