from django.contrib import admin
from django.urls import include, path

from analytics import views as analytics_views
from orchestrator_site import views

urlpatterns = [
    path("", analytics_views.dashboard, name="dashboard"),
    path("health", views.health, name="health"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("models/", include("providers.urls")),
    path("routing/", include("routing.urls")),
    path("chat/", include("chat.urls")),
    path("reports/", include("analytics.urls")),
]

admin.site.site_header = "LLM Orchestrator"
admin.site.site_title = "LLM Orchestrator admin"
