from django import forms
from django.db.models import QuerySet

from provisioning import engine
from provisioning.models import COMPLIANCE, DECLARED, Environment, Run

COMPLIANCE_CONSEQUENCES = (
    "I understand compliance mode: nobody, not even the AWS account's root user, can delete "
    "an object of the audit bucket or shorten its retention until its days have passed, and "
    "S3 Object Lock can never be turned off on the bucket again."
)


class EnvironmentForm(forms.ModelForm):
    """Every declared setting; the model's own validation (``Environment.clean``) is shown on
    the form, field by field. Compliance mode is saved only once its consequences are
    confirmed: it cannot be undone for what it locks."""

    confirm_compliance = forms.BooleanField(
        required=False,
        label=COMPLIANCE_CONSEQUENCES,
        help_text="Needed to turn compliance mode on or change its days.",
    )

    class Meta:
        model = Environment
        fields = [*DECLARED, "subnet_ids"]  # what an operator declares

    def clean(self) -> dict:
        data = super().clean()
        lock = (data.get("object_lock_mode"), data.get("object_lock_days"))
        # The instance still holds what was saved: the form's values reach it after clean().
        saved = (self.instance.object_lock_mode, self.instance.object_lock_days)
        changed = self.instance.pk is None or lock != saved
        if lock[0] == COMPLIANCE and changed and not data.get("confirm_compliance"):
            self.add_error(
                "confirm_compliance",
                "Compliance mode cannot be undone for what it locks: tick the box to confirm.",
            )
        return data


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
