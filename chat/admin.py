from django.contrib import admin

from chat.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    fields = ("role", "status", "model_ref", "request_id", "content")
    readonly_fields = fields
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ("title", "owner", "model_choice", "sticky_model", "updated_at")
    list_filter = ("model_choice",)
    search_fields = ("title", "owner__username")
    raw_id_fields = ("owner", "sticky_model")
    inlines = [MessageInline]
