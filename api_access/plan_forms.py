"""The usage plan forms: they parse numbers; ``api_access.usage_plans`` decides what is allowed.

Field names are the keyword arguments of the function each form's data goes to."""

from django import forms

from provisioning.models import QUOTA_PERIODS


class PlanForm(forms.Form):
    rate = forms.IntegerField(label="Rate", help_text="Requests per second, per key.")
    burst = forms.IntegerField(label="Burst", help_text="Requests at once, per key.")
    quota_limit = forms.IntegerField(label="Quota", help_text="Requests per key per period.")
    quota_period = forms.ChoiceField(label="Period", choices=QUOTA_PERIODS)


class IncreaseForm(forms.Form):
    extra = forms.IntegerField(label="Extra requests", help_text="Added to every key's quota.")
    reason = forms.CharField(label="Reason", max_length=300)
