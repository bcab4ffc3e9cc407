from django.urls import path

from insights import views

app_name = "insights"

urlpatterns = [
    path("<slug:slug>/insights/", views.query_page, name="query"),
    path("<slug:slug>/insights/usage", views.usage_read, name="usage"),
]
