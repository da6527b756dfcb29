from django import forms
from django.db.models import QuerySet

from provisioning import engine
from provisioning.models import DECLARED, Environment, Run


class EnvironmentForm(forms.ModelForm):
    """Every declared setting; the model's own validation (``Environment.clean``) is shown on
    the form, field by field."""

    class Meta:
        model = Environment
        fields = [*DECLARED, "subnet_ids"]  # what an operator declares


class DestroyForm(forms.Form):
    confirm = forms.CharField(label="Type the environment's name to destroy it")
    delete_data = forms.BooleanField(
        required=False, label="Also delete the audit data (buckets and table)"
    )
    confirm_data = forms.CharField(required=False, label="To delete the audit data, type")

    def __init__(self, *args, environment: Environment, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.environment = environment
        self.fields["confirm_data"].help_text = engine.data_confirmation(environment.name)

    def clean(self) -> dict:
        data = super().clean()
        try:
            engine.check_destroy_confirmed(
                self.environment.name,
                data.get("confirm", ""),
                delete_data=data.get("delete_data", False),
                confirm_data=data.get("confirm_data", ""),
            )
        except engine.Refused as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


class RunFilterForm(forms.Form):
    environment = forms.ModelChoiceField(
        Environment.objects.all(), required=False, to_field_name="name", empty_label="any"
    )
    kind = forms.ChoiceField(choices=[("", "any"), *Run.Kind.choices], required=False)
    status = forms.ChoiceField(choices=[("", "any"), *Run.Status.choices], required=False)
    person = forms.CharField(required=False, max_length=150)

    def filter(self, runs: QuerySet) -> QuerySet:
        data = self.cleaned_data if self.is_valid() else {}
        if data.get("environment"):
            runs = runs.filter(environment=data["environment"])
        if data.get("kind"):
            runs = runs.filter(kind=data["kind"])
        if data.get("status"):
            runs = runs.filter(status=data["status"])
        if data.get("person"):
            runs = runs.filter(started_by_name__icontains=data["person"])
        return runs
