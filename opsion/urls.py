from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from opsion.api import api
from opsion.health import healthz
from orgs import account_views, password_reset
from orgs import views as org_views

handler400 = "opsion.views.bad_request"

admin.site.site_header = "Opsion staff"
admin.site.site_title = "Opsion staff"

urlpatterns = [
    path("", org_views.home, name="home"),
    path("accounts/login/", account_views.sign_in, name="login"),
    path("accounts/logout/", account_views.SignOutView.as_view(), name="logout"),
    path("accounts/password/", account_views.PasswordChangeView.as_view(), name="password_change"),
    path("accounts/password/reset/", password_reset.password_reset, name="password_reset"),
    path("accounts/password/reset/sent/", password_reset.password_reset_done, name="password_reset_done"),
    path("accounts/password/reset/done/", password_reset.password_reset_complete, name="password_reset_complete"),
    path(
        "accounts/password/reset/<uidb64>/<token>/",
        password_reset.password_reset_confirm,
        name="password_reset_confirm",
    ),
    path("accounts/tokens/<int:token_id>/revoke", org_views.account_token_revoke, name="account_token_revoke"),
    path("orgs/", include("orgs.urls")),
    path("orgs/", include("insights.urls")),
    path("api/v1/", api.urls),
    path("admin/login/", account_views.admin_sign_in),  # before admin's own: see the view
    path("admin/logout/", account_views.admin_sign_out),
    path("admin/password_change/", account_views.admin_password_change),  # with a guess limit: see the view
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages that name no icon (Django admin, raw error pages).
    path("favicon.ico", RedirectView.as_view(url=f"{settings.STATIC_URL}favicon.svg", permanent=True)),
]
