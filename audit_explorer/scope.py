"""Which environment's audit trail the audit pages read: the one a page asks for, else the one
the user chose last (kept across sessions), else the only one there is."""

from audit_explorer.models import ChosenEnvironment
from provisioning.models import Environment


def environment_for(user, asked: str = "") -> Environment | None:
    """The environment ``user``'s audit pages read. ``asked`` (a name, from the page's selector
    or a link) is remembered for the user. None when ``asked`` names no environment, when
    there is none, or several and the user never chose one: the pages then ask to choose."""
    chosen = ChosenEnvironment.objects.filter(user=user).select_related("environment").first()
    if asked:
        environment = Environment.objects.filter(name=asked).first()
        if environment is not None and (chosen is None or chosen.environment != environment):
            ChosenEnvironment.objects.update_or_create(
                user=user, defaults={"environment": environment}
            )
        return environment
    if chosen is not None:
        return chosen.environment
    only = list(Environment.objects.all()[:2])
    return only[0] if len(only) == 1 else None
