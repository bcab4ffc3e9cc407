"""Reads both surfaces share (orgs.selectors): what the console's Settings page and the API's getSettings say of the
stored key comes from one place, so the two cannot disagree."""

import pytest

from insights import keys
from orgs import selectors
from orgs.models import Organisation
from tests.base import GOOD_KEY
from tests.orgs.helpers import ELIGIBLE, PLANS, store_key


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("stored", [True, False])
def test_the_key_is_in_use_exactly_when_queries_run_on_it(db, plan, stored):
    org = Organisation.objects.create(name="Plan test", slug="plan-test", plan=plan)
    if stored:
        store_key(org, GOOD_KEY)

    state = selectors.claude_api_key_state(org)

    assert state.in_use is (stored and plan in ELIGIBLE)
    assert state.in_use is keys.resolve(org).uses_org_key
