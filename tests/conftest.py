import pytest
from django.core.cache import cache

from tests.fake_anthropic import FakeAnthropic


@pytest.fixture(scope="session")
def _fake_anthropic_server():
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
def fake_anthropic(_fake_anthropic_server, settings):
    """The fake Anthropic server, reset, with the app pointed at it and a platform key configured."""
    _fake_anthropic_server.reset()
    settings.ANTHROPIC_BASE_URL = _fake_anthropic_server.base_url
    settings.ANTHROPIC_API_KEY = PLATFORM_KEY
    settings.ANTHROPIC_TIMEOUT_SECONDS = 2.0
    return _fake_anthropic_server


@pytest.fixture(autouse=True)
def _clear_cache():
    # django-ratelimit counters live in the cache; every test starts with none.
    cache.clear()
    yield
    cache.clear()


PLATFORM_KEY = "sk-ant-api03-PLATFORM-test-key-0000000000000000000000000000000000"


@pytest.fixture
def world(db):
    from tests.base import build_world

    return build_world()
