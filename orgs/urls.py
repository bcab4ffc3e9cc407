from django.urls import path
from django.views.generic import RedirectView

from orgs import views

app_name = "orgs"

urlpatterns = [
    # Addresses typed by trimming a page's own lead on rather than to "Page not found"; the page they lead to checks
    # who may see it (a redirect answers any slug the same way, so it tells nothing of which organisations exist).
    path("", RedirectView.as_view(pattern_name="home"), name="index"),
    path("<slug:slug>/", RedirectView.as_view(pattern_name="insights:query"), name="organisation"),
    path("<slug:slug>/settings/", views.settings_page, name="settings"),
    path("<slug:slug>/settings/claude-api-key/save", views.byom_save, name="byom_save"),
    path("<slug:slug>/settings/claude-api-key/remove", views.byom_remove, name="byom_remove"),
    path("<slug:slug>/settings/audit-log/", views.audit_log, name="audit_log"),
    path("<slug:slug>/settings/audit-log.csv", views.audit_log_csv, name="audit_log_csv"),
    path("<slug:slug>/settings/tokens/create", views.token_create, name="token_create"),
    path("<slug:slug>/settings/tokens/<int:token_id>/revoke", views.token_revoke, name="token_revoke"),
]
