from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "orgs"

    def ready(self) -> None:
        from orgs import checks  # noqa: F401  (registers the system checks)
