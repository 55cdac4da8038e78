from django.urls import path

from providers import views

app_name = "providers"
urlpatterns = [
    path("", views.model_list, name="models"),
]
