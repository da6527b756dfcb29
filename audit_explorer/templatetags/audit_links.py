from django import template
from django.urls import reverse
from django.utils.http import urlencode

from provisioning.models import Environment

register = template.Library()


@register.simple_tag
def traffic_url(dimension: str, value: str, environment: Environment, **more: str) -> str:
    """The traffic page of a project or user of ``environment``. The value goes in the query
    string: in the path, a project named ``../../environments/prod/destroy/`` made a link
    that browsers resolve to the destroy page (issue 21, item 8)."""
    query = {"environment": environment.name, dimension: value, **more}
    return f"{reverse('audit_explorer:traffic')}?{urlencode(query)}"
