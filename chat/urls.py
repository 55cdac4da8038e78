from django.urls import path

from chat import views

app_name = "chat"
urlpatterns = [
    path("", views.index, name="index"),
    path("new/", views.conversation_new, name="new"),
    path("<int:conversation_id>/", views.index, name="conversation"),
    path("<int:conversation_id>/rename/", views.conversation_rename_view, name="rename"),
    path("<int:conversation_id>/delete/", views.conversation_delete_view, name="delete"),
    path("messages/<int:message_id>/feedback/", views.message_feedback, name="feedback"),
    path("messages/<int:message_id>/prefer/", views.message_prefer, name="prefer"),
]
