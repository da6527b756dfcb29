from django import template

from centralllm.audit import contract

register = template.Library()


@register.filter
def flag_meaning(flag: str) -> str:
    """What a record's flag says, in words (``contract.FLAGS``)."""
    return contract.FLAGS.get(flag, "")
