"""The budget arithmetic property (tests/routing/budget_property.py) on the zero-setup site.

Run by tests/routing/test_budget_arithmetic.py in a child process on SQLite (see
tests/sqlite_site.py): `python -m tests.routing.sqlite_budget_run`. Prints one JSON object.
"""

from __future__ import annotations

import json

import django

django.setup()

from django.contrib.auth.models import User  # noqa: E402

from tests.routing.budget_property import budget_property_check  # noqa: E402


def main() -> dict[str, object]:
    user = User.objects.create_user("ana")
    try:
        budget_property_check(user_id=user.pk)
    except Exception as failure:  # the falsifying example is on stderr
        return {"holds": False, "failure": f"{type(failure).__name__}: {failure}"}
    return {"holds": True}


if __name__ == "__main__":
    print(json.dumps(main()))
