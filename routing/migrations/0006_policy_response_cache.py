from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("routing", "0005_policy_router"),
    ]

    operations = [
        migrations.AddField(
            model_name="routingpolicy",
            name="response_cache",
            field=models.CharField(
                choices=[
                    ("deterministic", "Deterministic requests only (temperature 0)"),
                    ("always", "Every request"),
                    ("off", "Never"),
                ],
                default="deterministic",
                help_text="Which answers the response cache may keep and serve (docs/guards.md).",
                max_length=16,
            ),
        ),
    ]
