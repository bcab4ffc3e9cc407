from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.core.exceptions import FieldError, ValidationError
from django.db import models
from django.utils import timezone

from opsion.reporting import holds_secret
from orgs.crypto import EncryptedTextField, Sealed


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra):
        if not email:
            raise ValueError("Users need an e-mail address.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    # Its name is in the password validators' words: "The password is too similar to the e-mail address."
    email = models.EmailField("e-mail address", unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    # Where signing in lands (orgs.access.landing_organisation). Written by the console's pages only when it
    # changes (services.organisation_opened), never by the API, so a request in the same organisation writes nothing.
    last_organisation = models.ForeignKey(
        "orgs.Organisation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        # Stored lower-cased whichever way a user is made (create_user, the admin's forms), because the
        # sign-in form lower-cases what is typed; the uniqueness check then runs on the stored form.
        super().clean()
        self.email = self.email.lower()

    def get_full_name(self) -> str:
        return self.name or self.email

    def get_short_name(self) -> str:
        return self.name or self.email


class Plan(models.TextChoices):
    STARTER = "starter", "Starter"
    PROFESSIONAL = "professional", "Professional"
    INSTITUTIONAL = "institutional", "Institutional"
    CUSTOM = "custom", "Custom"


BYOM_PLANS = frozenset({Plan.INSTITUTIONAL, Plan.CUSTOM})
SLUG_LIKE_A_SECRET = "A slug cannot look like a Claude API key (sk-ant-…) or an API token (opsn_…)."


class Organisation(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=60, unique=True)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.PROFESSIONAL)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        # Addresses are lower case: `ACME` beside `acme` would be two customers one letter apart.
        self.slug = self.slug.lower()
        # Log lines hide a key's or a token's form wherever it appears, and a console address carrying one in a
        # parameter (a search, a sign-in's next) is refused (opsion.middleware): such a slug would be blanked in its
        # organisation's own log lines, and refused there.
        if holds_secret(self.slug):
            raise ValidationError({"slug": SLUG_LIKE_A_SECRET})

    @property
    def allows_byom(self) -> bool:
        return self.plan in BYOM_PLANS


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


MANAGING_ROLES = frozenset({Role.OWNER, Role.ADMIN})  # may save and remove the organisation's key


class MembershipQuerySet(models.QuerySet):
    def for_user(self, user) -> "MembershipQuerySet":
        """The user's memberships with their organisations, by name, then by slug: names are not unique, and two of
        one name must keep one order (the header's switcher, the API's list)."""
        memberships = self.filter(user=user).select_related("organisation")
        return memberships.order_by("organisation__name", "organisation__slug")


class Membership(models.Model):
    # No index of its own: the unique (user, organisation) constraint's index leads with it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships", db_index=False
    )
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = MembershipQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "organisation"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} — {self.organisation} ({self.get_role_display()})"

    @property
    def can_manage(self) -> bool:
        return self.role in MANAGING_ROLES


class KeyStatus(models.TextChoices):
    UNVERIFIED = "unverified", "Saved, not yet used"
    VALID = "valid", "Accepted by Anthropic"
    INVALID = "invalid", "Rejected by Anthropic"


class ClaudeApiKey(models.Model):
    """An organisation's own Anthropic key, encrypted. Removing the key deletes this row."""

    organisation = models.OneToOneField(Organisation, on_delete=models.CASCADE, related_name="claude_api_key")
    secret = EncryptedTextField()
    status = models.CharField(max_length=12, choices=KeyStatus.choices, default=KeyStatus.UNVERIFIED)
    saved_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    saved_at = models.DateTimeField(default=timezone.now)
    status_changed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "Claude API key"

    def __str__(self) -> str:
        return f"Claude API key for {self.organisation}"

    @classmethod
    def from_db(cls, db, field_names, values):
        row = super().from_db(db, field_names, values)
        # Its secret opens only for its own organisation: a ciphertext copied from another organisation's row does not
        # (orgs.crypto), and reads as a key no entry opens.
        if isinstance(row.__dict__.get("secret"), Sealed):
            if "organisation_id" not in row.__dict__:
                # Reading the deferred column would cost a query per row, unseen (`.only("secret")`): refused instead.
                raise FieldError(
                    "ClaudeApiKey.secret is bound to its row's organisation_id (orgs.crypto): load the two together, "
                    'e.g. .only("secret", "organisation")'
                )
            row.secret = row.secret.bound_to(row.organisation_id)
        return row

    def refresh_from_db(self, using=None, fields=None, from_queryset=None):
        """A deferred secret is loaded with the organisation_id that binds it, in the same query (from_db refuses it
        alone); the organisation loaded with the row is kept while the id is unchanged."""
        if fields is None or "secret" not in fields:
            return super().refresh_from_db(using, fields, from_queryset)
        organisation = self._state.fields_cache.get("organisation")
        super().refresh_from_db(using, {*fields, "organisation_id"}, from_queryset)
        if organisation is not None and organisation.pk == self.organisation_id:
            self._state.fields_cache["organisation"] = organisation


# A token expiring within this is called out on the pages listing it, so its owner replaces it in time.
TOKEN_EXPIRING_SOON = timedelta(days=7)
# How long an expired token stays listed: its owner sees what stopped working, and revokes it or lets it go. Then
# services.api_tokens_prune deletes it: at the owner's next new token, or at the daily `manage.py prune_api_tokens`,
# whichever comes first. Until then it stays stored (refused, no longer listed), and staff find it with admin's
# "expired" filter.
EXPIRED_TOKENS_LISTED_FOR = timedelta(days=30)
ACTIVE_TOKENS_MAX = 20  # per user; expired tokens do not count
# What revoking (or asking to revoke) a token that is not the user's, or no longer exists, says either way.
TOKEN_NOT_FOUND = "That token does not exist or was already revoked."


class ApiTokenQuerySet(models.QuerySet):
    def active(self, now: datetime) -> "ApiTokenQuerySet":
        """Tokens the API still accepts at `now`: not yet expired, or made before tokens expired (no expiry)."""
        return self.filter(models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now))

    def expired(self, now: datetime) -> "ApiTokenQuerySet":
        return self.filter(expires_at__lte=now)

    def count_working(self, user, now: datetime) -> int:
        """How many of `user`'s tokens the API still accepts at `now`: the cap counts them, a new password's form
        offers to revoke them, its e-mail says how many keep working."""
        return self.filter(user=user).active(now).count()


class ApiToken(models.Model):
    """A personal API token. Only its SHA-256 hash is stored; the token is shown once."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Chosen at creation, at most a year. Null only for tokens made before tokens expired: they keep working, so no
    # customer's integration stops without its owner choosing to, and the console asks for them to be replaced.
    expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        verbose_name = "API token"
        # The prune's batches find the long-expired tokens by it (services.api_tokens_prune), not by reading them all.
        indexes = [models.Index(fields=["expires_at"], name="orgs_apitoken_expires_at")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_expired(self, now: datetime) -> bool:
        return self.expires_at is not None and self.expires_at <= now

    def expires_soon(self, now: datetime) -> bool:
        """Still accepted, but not for more than TOKEN_EXPIRING_SOON."""
        return self.expires_at is not None and now < self.expires_at <= now + TOKEN_EXPIRING_SOON


class AuditAction(models.TextChoices):
    # The first key, or one saved when none was stored: rows recorded before `replaced` existed say `saved` either way.
    KEY_SAVED = "claude_api_key.saved", "Claude API key saved"
    KEY_REPLACED = "claude_api_key.replaced", "Claude API key replaced"  # another key was stored: a rotation
    KEY_REMOVED = "claude_api_key.removed", "Claude API key removed"
    # Made by Opsion staff in admin; they change who may manage the key, or whether it is used.
    # Added in admin: the plan it began on, before any change of it was recorded.
    ORGANISATION_CREATED = "organisation.created", "Organisation created"
    PLAN_CHANGED = "organisation.plan_changed", "Plan changed"
    MEMBER_ADDED = "membership.added", "Member added"
    ROLE_CHANGED = "membership.role_changed", "Role changed"
    MEMBER_REMOVED = "membership.removed", "Member removed"
    # A deactivated account cannot sign in: an Owner or Admin deactivated no longer manages the key.
    ACCOUNT_DEACTIVATED = "membership.deactivated", "Member's account deactivated"
    ACCOUNT_REACTIVATED = "membership.reactivated", "Member's account reactivated"


class AuditEvent(models.Model):
    # No index of its own: the (organisation, -created_at) index leads with it.
    organisation = models.ForeignKey(
        Organisation, on_delete=models.CASCADE, related_name="audit_events", db_index=False
    )
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    actor_email = models.EmailField(blank=True)
    action = models.CharField(max_length=40, choices=AuditAction.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=20, default="console")
    detail = models.CharField(max_length=300, blank=True)  # e.g. "Institutional → Professional"
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["organisation", "-created_at"])]

    def __str__(self) -> str:
        return f"{self.get_action_display()} by {self.actor_email or 'unknown'}"

    @property
    def description(self) -> str:
        """The action in words, with what changed when the row says (`Plan changed: Institutional → Professional`):
        as the console's audit log shows it and the API's listAuditEvents gives it."""
        return self.get_action_display() + (f": {self.detail}" if self.detail else "")

    @property
    def customer_ip(self) -> str | None:
        """Where the change came from, as the customer sees it (page, CSV, API): staff's own network stays
        with Opsion, in admin."""
        return None if self.via == "admin" else self.ip


class OutboxMail(models.Model):
    """A security e-mail (orgs.notifications) written in the transaction of the change it tells of, kept until sent.

    Only what the e-mail says: one recipient, its subject and its text, none of which holds a secret (never a key, a
    token or a link carrying one; the password reset e-mail, whose link is one, never comes here)."""

    to = models.EmailField()
    subject = models.CharField(max_length=300)
    body = models.TextField()
    what = models.CharField(max_length=120)  # for the log: "claude api key saved e-mail to user 42", no address
    request_id = models.CharField(max_length=64, blank=True)  # the request that made the change, for support
    created_at = models.DateTimeField(default=timezone.now)
    # Unsent rows go out once due_at is past. A process sending one holds it (claim, its own random value) with
    # due_at moved on by the lease; a failed send moves due_at on by the backoff and lets the row go.
    due_at = models.DateTimeField()
    claim = models.CharField(max_length=32, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    given_up_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "outbox e-mail"
        indexes = [
            models.Index(
                fields=["due_at"],
                name="orgs_outbox_waiting_due",
                condition=models.Q(sent_at__isnull=True, given_up_at__isnull=True),
            ),
            # send_pending_mail's prune, every minute, finds the rows grown old here instead of reading every row
            # kept (a week of sent e-mails, a month of given-up ones); each index holds only the rows it looks at.
            models.Index(fields=["sent_at"], name="orgs_outbox_sent_at", condition=models.Q(sent_at__isnull=False)),
            models.Index(
                fields=["given_up_at"], name="orgs_outbox_given_up_at", condition=models.Q(given_up_at__isnull=False)
            ),
        ]

    def __str__(self) -> str:
        # Admin's title and breadcrumb for the e-mail's own page: which e-mail, to whom. Log lines name `what`, which
        # holds no address.
        return f"{self.subject}, to {self.to}"
