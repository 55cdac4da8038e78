from typing import Any

from django.db import migrations, models

# The cloud providers `bootstrap_local` created before this field existed: they follow their key.
DEMO_CLOUD = (
    ("openai", "OPENAI_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("gemini", "GEMINI_API_KEY"),
)


def demo_cloud_follow(apps: Any, schema_editor: Any) -> None:
    Provider = apps.get_model("providers", "Provider")
    for name, env_var in DEMO_CLOUD:
        Provider.objects.filter(name=name, credential_env=env_var, credential_encrypted="").update(
            follows_credential_env=True
        )


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0002_provider_health_and_price_units"),
    ]

    operations = [
        migrations.AddField(
            model_name="provider",
            name="follows_credential_env",
            field=models.BooleanField(
                default=False,
                help_text="On every start, enabled when its environment variable is set and "
                "disabled when it is not (the demo configuration's cloud providers start this "
                "way). Turning the provider on or off by hand clears it.",
                verbose_name="follows its key",
            ),
        ),
        migrations.RunPython(demo_cloud_follow, migrations.RunPython.noop),
    ]
