from django.urls import path

from routing import views, views_replay

app_name = "routing"
urlpatterns = [
    path("", views.index, name="index"),
    path("telemetry/", views.telemetry, name="telemetry"),
    path("replay/", views_replay.replay, name="replay"),
]
