from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from analytics import views as analytics_views
from gateway import anthropic as anthropic_door
from gateway import api as native_api
from gateway import (
    gemini,
    gemini_models,
    ollama,
    ollama_models,
    openai_completions,
    openai_embeddings,
    openai_responses,
)
from gateway import openai as openai_door
from orchestrator_site import views
from orchestrator_site.forms import ThrottledAdminAuthenticationForm, ThrottledAuthenticationForm

urlpatterns = [
    path("", analytics_views.dashboard, name="dashboard"),
    path("health", views.health, name="health"),
    # The Ollama door's paths, before the native API's include so that they answer exactly
    # these paths (tests/gateway/test_ollama_door.py fails on any two routes for one path).
    path("api/chat", ollama.chat, name="ollama-chat"),
    path("api/generate", ollama.generate, name="ollama-generate"),
    path("api/tags", ollama_models.tags, name="ollama-tags"),
    path("api/show", ollama_models.show, name="ollama-show"),
    path("api/version", ollama_models.version, name="ollama-version"),
    path("api/", native_api.api.urls),
    re_path(r"^api/.+", native_api.unknown_endpoint, name="api-unknown"),
    path("v1/chat/completions", openai_door.chat_completions, name="openai-chat"),
    path("v1/models", openai_door.models_list, name="openai-models"),
    path("v1/embeddings", openai_embeddings.embeddings, name="openai-embeddings"),
    path("v1/completions", openai_completions.completions, name="openai-completions"),
    path("v1/responses", openai_responses.responses, name="openai-responses"),
    # A stored response, by id: the one /v1 path that carries a value (resolved apart, as the
    # Gemini door's are).
    re_path(
        r"^v1/responses/(?P<response_id>[^/]+)$",
        openai_responses.response_resource,
        name="openai-response",
    ),
    path("v1/messages", anthropic_door.messages, name="anthropic-messages"),
    path("v1/messages/count_tokens", anthropic_door.count_tokens, name="anthropic-count-tokens"),
    # The Gemini door (gateway/gemini.py): the model is part of the path, and every other path
    # under /v1beta/ answers in Google's error shape.
    re_path(r"^v1beta/models$", gemini_models.models_list, name="gemini-models"),
    re_path(r"^v1beta/models/(?P<target>.+)$", gemini.model_resource, name="gemini-model"),
    re_path(r"^v1beta/(?P<rest>.*)$", gemini.unknown_path, name="gemini-unknown"),
    path("metrics", native_api.metrics_view, name="metrics"),
    path("metrics/prometheus", native_api.metrics_prometheus_view, name="metrics-prometheus"),
    path("models", native_api.models_view, name="models-status"),
    path("models/<path:name>/status", native_api.model_status_view, name="model-status"),
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
