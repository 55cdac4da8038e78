from django.urls import path

from routing import views

app_name = "routing"
urlpatterns = [
    path("", views.index, name="index"),
    path("telemetry/", views.telemetry, name="telemetry"),
]
