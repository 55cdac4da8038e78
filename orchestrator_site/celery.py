"""The Celery app: Redis broker in production, eager in-process tasks in the zero-setup default."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orchestrator_site.settings")

app = Celery("orchestrator")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Ten priority levels on the Redis broker (kombu's default folds them into four), each its own
# list, emptied in order: on Redis the level consumed first is 0 (see `broker_priority`).
app.conf.broker_transport_options = {
    "priority_steps": list(range(10)),
    "sep": ":",
    "queue_order_strategy": "priority",
}
app.autodiscover_tasks()
app.autodiscover_tasks(["orchestrator_site"])
