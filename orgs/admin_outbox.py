"""Admin's outbox page (orgs.outbox): Opsion support staff answering a customer's "did you e-mail us when our key was
removed?" or "we never got it" see each security e-mail Opsion wrote, to whom, and whether it went, is still being
tried or was given up on. Registered in orgs.admin.

Read-only for everyone, superusers included: the rows are written by the changes they tell of, sent by the mail thread
and send_pending_mail, and deleted by its pruning. A row edited here would no longer say what was sent (or would send
what staff typed, to whom they typed), and one deleted would hide from the next person asking whether it went."""

from django.contrib import admin
from django.contrib.admin.utils import display_for_value
from django.db.models import Q

from orgs.admin_read_only import ReadOnlyAdmin
from orgs.models import OutboxMail

# An e-mail's states, in the words of the list's column and filter. "Waiting" is one not yet tried: its own process
# sends it once the change commits, send_pending_mail once its due time has passed (a process killed first).
STATES = {
    "waiting": "Waiting",
    "sent": "Sent",
    "failing": "Failing — retrying",
    "given_up": "Given up",
}
_UNSENT = Q(sent_at__isnull=True, given_up_at__isnull=True)
IN_STATE = {
    "waiting": _UNSENT & Q(attempts=0),
    "sent": Q(sent_at__isnull=False),
    "failing": _UNSENT & Q(attempts__gt=0),
    "given_up": Q(given_up_at__isnull=False),
}


def state_of(row: OutboxMail) -> str:
    """The key in STATES of the state `row` is in, as IN_STATE finds it."""
    if row.sent_at is not None:
        return "sent"
    if row.given_up_at is not None:
        return "given_up"
    return "failing" if row.attempts else "waiting"


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return list(STATES.items())

    def queryset(self, request, queryset):
        return queryset.filter(IN_STATE[self.value()]) if self.value() in IN_STATE else queryset


class OutboxMailAdmin(ReadOnlyAdmin):
    # What support ask first: to whom, which e-mail, whether it went. Ten columns did not fit beside the filter on a
    # laptop (static/css/admin/lists.css): what the e-mail is for (its log name, the subject says it too) and when one
    # was given up on (the state says it was) are on its own page.
    list_display = ["created_at", "state", "recipient", "subject", "attempts", "due", "sent_at", "request"]
    list_filter = [StateFilter]
    # How support hear of an e-mail: the customer's address, or the request ID of the change (on its log lines,
    # "claude api key removed e-mail to user 42 not sent", and in the X-Request-ID of the answer).
    search_fields = ["to", "request_id"]
    search_help_text = "A recipient's e-mail address, or the request ID of the change the e-mail tells of."
    # Its text holds no secret (never a key, a token or a link carrying one: tests/orgs/test_outbox.py), so its own
    # page shows it whole. Not the claim, a random value the sending process holds it by, which means nothing to staff.
    fields = [
        "created_at",
        "state",
        "recipient",
        "subject",
        "body",
        "what",
        "request",
        "attempts",
        "due",
        "sent_at",
        "given_up_at",
    ]
    readonly_fields = fields
    ordering = ["-pk"]  # newest first, by the primary key's index: created_at has none
    actions = None  # not even Django's bulk delete, whatever permission staff hold

    class Media:
        css = {"all": ["css/admin/lists.css"]}  # an address, a subject and a request ID wrap: the list fits a laptop

    @admin.display(description="State")
    def state(self, obj: OutboxMail) -> str:
        return STATES[state_of(obj)]

    @admin.display(description="Recipient", ordering="to")
    def recipient(self, obj: OutboxMail) -> str:
        return obj.to

    @admin.display(description="Request ID", ordering="request_id")
    def request(self, obj: OutboxMail) -> str:
        return obj.request_id  # empty for a change made by a command (create_api_token, changepassword)

    # When send_pending_mail takes an unsent e-mail: 5 minutes after it was written (its own process normally sends
    # it at once), or its next attempt after a failure. A sent or given-up one keeps its last such time, which beside
    # "Sent" read as if it were to go again: none is shown.
    @admin.display(description="Due at", ordering="due_at")
    def due(self, obj: OutboxMail) -> str:
        if state_of(obj) not in ("waiting", "failing"):
            return self.get_empty_value_display()
        # Formatted here, as admin formats a field: its detail page prints what a method returns as it is.
        return display_for_value(obj.due_at, self.get_empty_value_display())

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # The claim is never shown, but a filter on it (?claim__startswith=) would read it out a character at a time:
        # refused, a 400, as the API token admin refuses its hash.
        return not lookup.startswith("claim") and super().lookup_allowed(lookup, value, request)
