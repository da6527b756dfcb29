from django import forms
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet

from core import permissions as perms
from core.refusals import Refused
from provisioning import engine, kinds
from provisioning.models import COMPLIANCE, DECLARED, Environment, Run

COMPLIANCE_CONSEQUENCES = (
    "I understand compliance mode: nobody, not even the AWS account's root user, can delete "
    "an object of the audit bucket or shorten its retention until its days have passed, and "
    "S3 Object Lock can never be turned off on the bucket again."
)


# What is governed rather than operated, and who may change it: the usage limits as on the
# usage plan pages; retention, redaction and the secret the task role is granted by admins.
GOVERNED = {
    perms.MANAGE_API_KEYS: [
        "throttle_burst_limit",
        "throttle_rate_limit",
        "quota_limit",
        "quota_period",
    ],
    perms.CHANGE_POLICY: [
        "redaction_rules",
        "audit_retention_days",
        "raw_retention_days",
        "preview_retention_days",
        "object_lock_mode",
        "object_lock_days",
        "confirm_compliance",
        "hf_token_secret_arn",
        "gpu_hourly_price",
    ],
}


# Where each value of a real-AWS environment is found in the AWS console (in the environment's
# Region), shown beside its field; "Check this account" then tries them against the account.
AWS_CONSOLE_HELP = {
    "region": "The Region's code, such as eu-central-1: the Region menu at the top right of "
    "the AWS console lists each Region with its code.",
    "account_id": "12 digits: the account menu at the top right of the AWS console → Account "
    "ID. Required for real AWS: apply refuses to run in any other account.",
    "suffix": "Appended to every resource name: '' for production, '-staging' for staging. S3 "
    "bucket names are global: if another account owns the guide's, add a suffix.",
    "vpc_id": "VPC console → Your VPCs → VPC ID (vpc-…).",
    "subnet_ids": "Comma-separated. VPC console → Subnets, filtered by the VPC → Subnet ID "
    "(subnet-…), one per Availability Zone. Their route table (Subnets → Route table) needs "
    "0.0.0.0/0 to a NAT gateway (nat-…), or to an internet gateway (igw-…) with 'Auto-assign "
    "public IPv4 address' on.",
    "security_group_id": "VPC console → Security groups → Security group ID (sg-…), of the "
    "same VPC. Inbound rules: TCP 8000 from the VPC's IPv4 CIDR only (Your VPCs → IPv4 "
    "CIDR), for the load balancer.",
    "instance_type": "A one-GPU type offered in the subnets' zones: EC2 console → Instance "
    "types. Its vCPUs count against Service Quotas → AWS services → Amazon Elastic Compute "
    "Cloud (Amazon EC2) → Running On-Demand G and VT instances (P types: Running On-Demand P "
    "instances) → Applied account-level quota value.",
    "desired_count": "The tasks (one GPU instance each) the service starts with, between the "
    "min and max tasks; scaling moves the count from there, and an apply sets it back only "
    "if it is outside them.",
    "model_id": "The model's id on Hugging Face (publisher/name, as at the top of its page).",
    "hf_token_secret_arn": "Secrets Manager console → Secrets → the secret holding the Hugging "
    "Face token → Secret ARN. Needed for gated models (mistralai/…).",
    "source_repository": "The Git repository CodeBuild builds the inference image from. A "
    "private GitHub repository needs CodeBuild's GitHub credential in this Region.",
    "image_tag": "The tag rollouts build and run: Amazon ECR console → Private registry → "
    "Repositories → mistral8b-vllm (and the suffix) → Image tag.",
}


class EnvironmentForm(forms.ModelForm):
    """Every declared setting; the model's own validation (``Environment.clean``) is shown on
    the form, field by field. Compliance mode is saved only once its consequences are
    confirmed: it cannot be undone for what it locks. Governed settings are shown to everyone
    and changed only by those allowed: for the others they keep their value whatever is
    posted."""

    confirm_compliance = forms.BooleanField(
        required=False,
        label=COMPLIANCE_CONSEQUENCES,
        help_text="Needed to turn compliance mode on or change its days.",
    )

    class Meta:
        model = Environment
        fields = [*DECLARED, "subnet_ids", "gpu_hourly_price"]  # what an operator declares
        help_texts = AWS_CONSOLE_HELP

    def __init__(self, *args, user: AbstractBaseUser | AnonymousUser, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for permission, names in GOVERNED.items():
            if not user.has_perm(permission):
                for name in names:
                    self.fields[name].disabled = True
                    self.fields[name].help_text = " ".join(
                        [str(self.fields[name].help_text), "Only an admin changes this."]
                    ).strip()

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
        except Refused as exc:
            raise forms.ValidationError(str(exc)) from None
        return data


class RunFilterForm(forms.Form):
    environment = forms.ModelChoiceField(
        Environment.objects.all(), required=False, to_field_name="name", empty_label="any"
    )
    kind = forms.ChoiceField(choices=lambda: [("", "any"), *kinds.choices()], required=False)
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
