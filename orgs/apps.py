from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "orgs"
    verbose_name = "Organisations"  # admin's index and breadcrumbs said "Orgs"

    def ready(self) -> None:
        from orgs import checks, recent_auth  # noqa: F401  (register the system checks; the sign-in receiver)
