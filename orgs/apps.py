from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "orgs"

    def ready(self) -> None:
        from orgs import checks, recent_auth  # noqa: F401  (register the system checks; the sign-in receiver)
