"""Sections other apps add to an environment's page (the audit app: its trail), registered
from their ``AppConfig.ready()``, so provisioning imports none of them."""

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest
from django.template.loader import render_to_string

from provisioning.models import Environment


@dataclass(frozen=True)
class Section:
    template: str  # rendered with the page's context and what ``context`` adds
    context: Callable[[Environment], dict]


_sections: list[Section] = []


def register(section: Section) -> None:
    _sections.append(section)


def rendered(request: HttpRequest, page: dict) -> list[str]:
    environment = page["environment"]
    return [
        render_to_string(section.template, {**page, **section.context(environment)}, request)
        for section in _sections
    ]
