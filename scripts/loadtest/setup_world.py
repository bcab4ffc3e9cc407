"""Create the load test's organisations, people and API tokens in a freshly migrated database.

Half the organisations are on the Institutional plan with their own (fake) Anthropic key, so they
run at the BYOM limit; the rest use the platform key at the platform limit. Writes a JSON file the
locustfile and the checks read: for each organisation its slug, key source, limit and tokens.
"""

import argparse
import json
import os
import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "opsion.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from orgs import services  # noqa: E402
from orgs.models import Membership, Organisation, Plan, Role, User  # noqa: E402

ROLES = (Role.OWNER, Role.ADMIN, Role.MEMBER)


def build(count: int) -> list[dict]:
    world = []
    for i in range(1, count + 1):
        byom = i % 2 == 1
        org = Organisation.objects.create(
            name=f"Load test {i}", slug=f"load-{i}", plan=Plan.INSTITUTIONAL if byom else Plan.PROFESSIONAL
        )
        tokens, memberships = [], {}
        for role in ROLES:
            user = User.objects.create_user(email=f"{role}@load-{i}.test", password=None)
            memberships[role] = Membership.objects.create(user=user, organisation=org, role=role)
            tokens.append(services.api_token_create(user=user, name="load test")[1])
        if byom:
            key = f"sk-ant-api03-loadtest-org{i:02d}-" + "0" * 40
            services.claude_api_key_set(membership=memberships[Role.OWNER], raw_key=key, ip=None, via="console")
        world.append(
            {
                "slug": org.slug,
                "key_source": "organisation" if byom else "platform",
                "limit": settings.INSIGHTS_BYOM_LIMIT if byom else settings.INSIGHTS_PLATFORM_LIMIT,
                "tokens": tokens,
            }
        )
    return world


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=6)
    parser.add_argument("--out", type=Path, required=True)
    options = parser.parse_args()
    options.out.write_text(json.dumps(build(options.orgs), indent=2))
    print(f"created {options.orgs} organisations; world written to {options.out}")
