"""The benchmark database: a dedicated PostgreSQL database or a temporary SQLite file, migrated.

Runs before Django is set up, because the database URL is part of the settings.
"""

import os
import tempfile
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql


def prepare(vendor: str, postgres_url: str) -> str:
    """Create an empty database for `vendor` and return its DATABASE_URL."""
    if vendor == "sqlite":
        directory = tempfile.mkdtemp(prefix="opsion-bench-")
        return f"sqlite:///{os.path.join(directory, 'bench.sqlite3')}"
    name = urlsplit(postgres_url).path.lstrip("/")
    if name in ("", "postgres", "template0", "template1"):
        raise SystemExit(f"Refusing to drop {name!r}: point --postgres-url at a dedicated database.")
    with psycopg.connect(maintenance_url(postgres_url), autocommit=True, connect_timeout=5) as conn:
        # A fresh database every run: no bloat, no leftover rows from an interrupted run.
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return postgres_url


def maintenance_url(postgres_url: str) -> str:
    """The same server's `postgres` database, from which others are created and dropped."""
    return urlunsplit(urlsplit(postgres_url)._replace(path="/postgres"))


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def reset_rows(*, org_ids: list[int], above_id: int) -> None:
    """Delete the queries a round inserted, so every round starts from the same window."""
    from insights.models import InsightQuery

    InsightQuery.objects.filter(organisation_id__in=org_ids, id__gt=above_id).delete()


def last_query_id() -> int:
    from insights.models import InsightQuery

    return InsightQuery.objects.order_by("-id").values_list("id", flat=True).first() or 0
