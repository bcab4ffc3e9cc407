"""The audit log as CSV, for the records a compliance team keeps of its own."""

import csv
from collections.abc import Iterable, Iterator

from orgs.models import AuditEvent

HEADER = ("When (UTC)", "What", "Detail", "Who", "Through", "From")
_THROUGH = {"console": "Opsion console", "api": "Opsion API", "admin": "Opsion staff"}
# A cell a spreadsheet would run as a formula (CSV injection): an e-mail address or a detail can start so.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """csv.writer writes each row here and gets it back as a line to stream."""

    def write(self, value: str) -> str:
        return value


def csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    # UTF-8's byte-order mark first: without it Excel reads the file in the machine's legacy code page, and the
    # "→" of every plan or role change (and any accented name) comes out garbled.
    yield "\ufeff" + writer.writerow(HEADER)
    for event in events:
        yield writer.writerow([_cell(value) for value in _row(event)])


def _row(event: AuditEvent) -> tuple[str, ...]:
    return (
        event.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
        event.get_action_display(),
        event.detail,
        event.actor_email,
        _THROUGH.get(event.via, event.via),
        event.customer_ip or "",
    )


def _cell(value: str) -> str:
    return f"'{value}" if value.startswith(_FORMULA_STARTS) else value
