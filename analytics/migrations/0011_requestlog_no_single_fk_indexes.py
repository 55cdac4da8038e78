"""The request log's `model` and `user` lose their single-column indexes: the (model, created_at)
and (user, created_at) indexes lead with the same column and serve the same lookups, and every
request's insert updated both.

Only the indexes go. Django's own `AlterField` would also drop and re-add each foreign key, and
re-adding one checks every row of the log under a lock that holds back the gateway's writes for
as long as the check takes (minutes at millions of rows). On Postgres the indexes are dropped
`CONCURRENTLY`, so writes go on meanwhile.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

INDEXES = {
    "analytics_requestlog_model_id_ada62cee": "model_id",
    "analytics_requestlog_user_id_96d75cef": "user_id",
}


def drop_indexes(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for name in INDEXES:
        schema_editor.execute(
            f"DROP INDEX{concurrently} IF EXISTS {schema_editor.quote_name(name)}"
        )


def create_indexes(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    for name, column in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX{concurrently} IF NOT EXISTS {schema_editor.quote_name(name)}"
            f" ON analytics_requestlog ({schema_editor.quote_name(column)})"
        )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("analytics", "0010_responses_door"),
        ("providers", "0006_llmmodel_embeddings"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="requestlog",
                    name="model",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to="providers.llmmodel",
                    ),
                ),
                migrations.AlterField(
                    model_name="requestlog",
                    name="user",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            database_operations=[migrations.RunPython(drop_indexes, create_indexes)],
        ),
    ]
