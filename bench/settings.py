"""Settings for benchmark processes: the production settings plus the bench-only URLconf."""

from opsion.settings import *  # noqa: F403

# Adds the baseline endpoint beside the real API; production URLs never include it.
ROOT_URLCONF = "bench.urls"
