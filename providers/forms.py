"""Admin forms: the API key is write-only, and nothing key-like is ever rendered back."""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from providers.credentials import ENV_VAR_NAME, credential_encrypt
from providers.models import BASELINE_UNIQUE_MESSAGE, Provider


class EnvVarNameInput(forms.TextInput):
    """Shows a value back only when it looks like a variable name: a key pasted into this
    field by mistake is refused by validation and must not reappear in the re-rendered form."""

    def format_value(self, value: Any) -> str | None:
        text = super().format_value(value)
        if text and ENV_VAR_NAME.fullmatch(text):
            return text
        return None


def _form_field(field: models.Field[Any, Any], **kwargs: Any) -> forms.Field | None:
    # A base URL typed without a scheme is a cloud API far more often than a local server.
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class ProviderForm(forms.ModelForm):
    credential_secret = forms.CharField(
        label="API key (stored encrypted)",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Write-only. Leave blank to keep the current credential. Prefer an "
        "environment variable name above; a key stored here is encrypted with CREDENTIALS_KEY.",
    )
    credential_clear = forms.BooleanField(label="Remove the stored API key", required=False)

    class Meta:
        model = Provider
        fields = (
            "name",
            "kind",
            "base_url",
            "locality",
            "enabled",
            "follows_credential_env",
            "credential_env",
            "connect_timeout_s",
            "read_timeout_s",
        )
        widgets = {"credential_env": EnvVarNameInput}
        formfield_callback = _form_field

    def clean_credential_env(self) -> str:
        value: str = self.cleaned_data.get("credential_env", "").strip()
        if value and not ENV_VAR_NAME.fullmatch(value):
            raise forms.ValidationError(
                "Letters, digits and underscores only, not starting with a digit. If this is "
                "the key itself, put it in the API key field instead."
            )
        return value

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        secret = cleaned.get("credential_secret", "")
        if secret and cleaned.get("credential_env"):
            raise forms.ValidationError(
                "Give either an environment variable name or an API key to store, not both."
            )
        if secret and cleaned.get("credential_clear"):
            raise forms.ValidationError("Either store a new API key or remove it, not both.")
        if secret:
            try:
                credential_encrypt("")
            except ImproperlyConfigured as error:
                self.add_error("credential_secret", str(error))
        return cleaned


class LLMModelInlineFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        marked = [
            form
            for form in self.forms
            if getattr(form, "cleaned_data", {}).get("is_baseline")
            and not form.cleaned_data.get("DELETE")
        ]
        if len(marked) > 1:
            raise forms.ValidationError(BASELINE_UNIQUE_MESSAGE)
