from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('providers', '0004_llmmodel_accepts_images'),
    ]

    operations = [
        migrations.AddField(
            model_name='llmmodel',
            name='accepts_tools',
            field=models.BooleanField(default=False, help_text="The model calls tools (functions) its provider's protocol carries. Requests that offer tools or carry tool calls are routed only to such models."),
        ),
        migrations.AddField(
            model_name='llmmodel',
            name='accepts_json_output',
            field=models.BooleanField(default=False, help_text='The model answers in JSON on request (response_format json_object or json_schema). Requests that ask for a JSON answer are routed only to such models.'),
        ),
    ]
