import django_rq
from django import template
from redis import RedisError

from audit_explorer import demo
from provisioning.models import Environment

register = template.Library()


@register.simple_tag
def demo_load(environment: Environment | None) -> demo.Load | None:
    """The last load of demo traffic into ``environment`` (None: none, or Redis is down,
    which the dashboard's badges report)."""
    if environment is None:
        return None
    try:
        return demo.progress(django_rq.get_connection("default"), environment.name)
    except RedisError:
        return None
