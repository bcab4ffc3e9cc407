"""The organisations, people, keys and tokens the benchmarks use."""

from dataclasses import dataclass

from insights.models import KeySource
from orgs import services
from orgs.models import ClaudeApiKey, Membership, Organisation, Plan, Role, User

BYOM_KEY = "sk-ant-api03-bench-organisation-key-000000000000000000000000000000000"
QUESTION = "What does Article 59 of MiCAR require before a CASP may offer services?"


@dataclass
class Bench:
    user: User
    token: str  # a raw personal API token for `user`
    api_org: Organisation  # Institutional, with a stored BYOM key: the full pipeline

    def row(self) -> dict:
        """The row a decision inserts, as insights.services.start builds it."""
        return {"user": self.user, "key_source": KeySource.ORGANISATION, "query": QUESTION, "model": "claude-bench"}


def make_orgs(prefix: str, count: int, *, member: User | None = None) -> list[Organisation]:
    """`count` Institutional organisations, each with `member` as a Member if given (a decision checks its asker is
    one: insights.ratelimit.acquire's `member_id`)."""
    orgs = Organisation.objects.bulk_create(
        Organisation(name=f"{prefix} {i}", slug=f"{prefix}-{i}", plan=Plan.INSTITUTIONAL) for i in range(count)
    )
    orgs = list(Organisation.objects.filter(slug__startswith=f"{prefix}-").order_by("id"))[: len(orgs)]
    if member is not None:
        Membership.objects.bulk_create(Membership(user=member, organisation=org, role=Role.MEMBER) for org in orgs)
    return orgs


def build() -> Bench:
    user = User.objects.create_user(email="bench@opsion.test", password="bench-password-not-secret")
    org = Organisation.objects.create(name="Bench API", slug="bench-api", plan=Plan.INSTITUTIONAL)
    Membership.objects.create(user=user, organisation=org, role=Role.MEMBER)
    ClaudeApiKey.objects.create(organisation=org, secret=BYOM_KEY)
    _, token = services.api_token_create(user=user, name="bench")
    return Bench(user=user, token=token, api_org=org)
