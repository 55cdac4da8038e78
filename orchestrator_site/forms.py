"""The login forms of the site and the admin, with login throttling
(orchestrator_site/login_throttle.py)."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from orchestrator_site.login_throttle import (
    lockout_message,
    login_failure_record,
    login_failures_clear,
    login_lock_remaining_s,
)


class ThrottledLoginMixin:
    """Refuses a locked-out username + address before the password is checked, counts wrong
    passwords, and clears the count on success."""

    locked_message: str = ""

    def clean(self) -> dict[str, Any]:
        form: Any = self
        username = form.cleaned_data.get("username") or ""
        address = form.request.META.get("REMOTE_ADDR", "") if form.request else ""
        remaining_s = login_lock_remaining_s(username=username, address=address)
        if remaining_s is not None:
            self.locked_message = lockout_message(remaining_s)
            raise forms.ValidationError(self.locked_message, code="locked_out")
        try:
            cleaned: dict[str, Any] = super().clean()  # type: ignore[misc]
        except forms.ValidationError as exc:
            if getattr(exc, "code", None) == "invalid_login" and form.user_cache is None:
                lockout_s = login_failure_record(username=username, address=address)
                if lockout_s is not None:
                    self.locked_message = lockout_message(lockout_s)
                    raise forms.ValidationError(self.locked_message, code="locked_out") from exc
            raise
        login_failures_clear(username=username, address=address)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLoginMixin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLoginMixin, AdminAuthenticationForm):
    pass
