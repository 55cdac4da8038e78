from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from analytics import views as analytics_views
from orchestrator_site import views
from orchestrator_site.forms import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm
from routing import api as gateway
from routing import openai_api

urlpatterns = [
    path("", analytics_views.dashboard, name="dashboard"),
    path("health", views.health, name="health"),
    path("api/", gateway.api.urls),
    path("v1/chat/completions", openai_api.chat_completions, name="openai-chat"),
    path("v1/models", openai_api.models_list, name="openai-models"),
    path("metrics", gateway.metrics_view, name="metrics"),
    path("metrics/prometheus", gateway.metrics_prometheus_view, name="metrics-prometheus"),
    path("models", gateway.models_view, name="models-status"),
    path("models/<path:name>/status", gateway.model_status_view, name="model-status"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=ThrottledAuthenticationForm),
        name="login",
    ),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("models/", include("providers.urls")),
    path("routing/", include("routing.urls")),
    path("chat/", include("chat.urls")),
    path("reports/", include("analytics.urls")),
]

admin.site.site_header = "LLM Orchestrator"
admin.site.login_form = ThrottledAdminAuthenticationForm
admin.site.site_title = "LLM Orchestrator admin"
