"""Redaction of the previews the ingest writes to DynamoDB (the S3 objects are left as they are).

An environment declares its rules as one JSON list in ``REDACTION_RULES``: built-in rule names
and custom rules, ``["email", "card", {"name": "ticket", "pattern": "TCK-\\\\d+"}]``. Empty or
unset: nothing is redacted. Each match becomes ``[redacted:<rule>]``. A pattern with a group
named ``value`` redacts only that group (``key=[redacted:api_key]`` keeps its ``key=``).
"""

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")  # kept short and plain: it goes into the marker


class RedactionRulesError(ValueError):
    """A rule set that cannot be used; the message says which rule and why."""


def _luhn(digits: str) -> bool:
    total = 0
    for position, digit in enumerate(reversed(digits)):
        value = int(digit) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def _card_number(text: str) -> tuple[int, int] | None:
    """The longest run of whole digit groups in ``text`` that is a card number, if any: a
    number glued to an expiry or a reference ("4111 1111 1111 1111 12/27") is still found."""
    groups = [match.span() for match in re.finditer(r"\d+", text)]
    for first in range(len(groups)):
        for last in range(len(groups) - 1, first - 1, -1):
            start, end = groups[first][0], groups[last][1]
            digits = re.sub(r"\D", "", text[start:end])
            if 13 <= len(digits) <= 19 and _luhn(digits):
                return start, end
    return None


@dataclass(frozen=True)
class Rule:
    name: str
    patterns: tuple[re.Pattern, ...]
    # The part of a match to redact (start, end), or None to leave it: for checks a pattern
    # cannot make, like the card number's Luhn digit.
    narrow: Callable[[str], tuple[int, int] | None] | None = None


BUILT_IN = {
    rule.name: rule
    for rule in (
        Rule(
            "email",
            (re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),),
        ),
        Rule(
            "api_key",
            (
                re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
                re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
                re.compile(r"(?i)\bbearer\s+(?P<value>[A-Za-z0-9._~+/-]{8,}=*)"),
                # A long token after "key", "token" or "secret" (api_key=..., X-Api-Key: ...,
                # "access_token": "..."), holding a digit so that long plain words are left.
                re.compile(
                    r"(?i)(?:key|token|secret)[\"']?\s*[:=]?\s*[\"']?"
                    r"(?P<value>(?=[A-Za-z+/_-]*\d)[A-Za-z0-9+/_-]{16,}={0,2})"
                ),
            ),
        ),
        # 13-19 digits, single spaces or dashes between them, Luhn-valid.
        Rule("card", (re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)"),), _card_number),
    )
}


def parse_rules(text: str | None) -> tuple[Rule, ...]:
    """The rules of a ``REDACTION_RULES`` value; raises RedactionRulesError saying what is wrong."""
    if not (text or "").strip():
        return ()
    try:
        entries = json.loads(text)
    except ValueError as exc:
        raise RedactionRulesError(f"not valid JSON: {exc}") from None
    if not isinstance(entries, list):
        raise RedactionRulesError("must be a JSON list of rule names and {name, pattern} rules")
    rules = [_rule(entry) for entry in entries]
    names = [rule.name for rule in rules]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RedactionRulesError(f"rule {repeated[0]!r} is listed twice")
    return tuple(rules)


def _rule(entry: object) -> Rule:
    if isinstance(entry, str):
        if entry not in BUILT_IN:
            raise RedactionRulesError(
                f"unknown rule {entry!r} (built-in: {', '.join(BUILT_IN)}; a custom rule is"
                ' {"name": ..., "pattern": ...})'
            )
        return BUILT_IN[entry]
    if not isinstance(entry, dict) or set(entry) != {"name", "pattern"}:
        raise RedactionRulesError(f'{entry!r}: a custom rule is {{"name": ..., "pattern": ...}}')
    name, pattern = entry["name"], entry["pattern"]
    if not isinstance(name, str) or not NAME.match(name):
        raise RedactionRulesError(f"rule name {name!r}: 1-40 letters, digits, '_', '.' or '-'")
    if name in BUILT_IN:
        raise RedactionRulesError(f"rule name {name!r} is a built-in rule's")
    if not isinstance(pattern, str) or not pattern:
        raise RedactionRulesError(f"rule {name!r}: the pattern must be a non-empty string")
    try:
        return Rule(name, (re.compile(pattern),))
    except re.error as exc:
        raise RedactionRulesError(f"rule {name!r}: bad pattern {pattern!r}: {exc}") from None


@lru_cache(maxsize=4)
def _parsed(text: str) -> tuple[Rule, ...]:
    return parse_rules(text)


def rules_from_env() -> tuple[Rule, ...]:
    """The rules in ``REDACTION_RULES``, compiled once per value."""
    try:
        return _parsed(os.environ.get("REDACTION_RULES", ""))
    except RedactionRulesError as exc:
        raise RedactionRulesError(f"REDACTION_RULES: {exc}") from None


def _spans(text: str, rules: Iterable[Rule]) -> list[tuple[int, int, int, str]]:
    """Every match as (start, rule order, end, rule name), in text order."""
    found = []
    for order, rule in enumerate(rules):
        for pattern in rule.patterns:
            for match in pattern.finditer(text):
                start, end = match.span("value" if "value" in pattern.groupindex else 0)
                if rule.narrow is not None:
                    part = rule.narrow(text[start:end])
                    if part is None:
                        continue
                    start, end = start + part[0], start + part[1]
                if end > start:
                    found.append((start, order, end, rule.name))
    return sorted(found)


def redact(text: str, rules: Iterable[Rule]) -> tuple[str, dict[str, int]]:
    """``text`` with every match replaced by ``[redacted:<rule>]``, and the matches per rule.

    Overlapping matches become one marker covering them all, so no part of either is left;
    it names the rule of the match that starts first (on a tie, the rule listed first).
    """
    merged: list[list] = []  # [start, end, rule]
    for start, _, end, name in _spans(text, rules):
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end, name])
    parts, counts, position = [], {}, 0
    for start, end, name in merged:
        parts += [text[position:start], f"[redacted:{name}]"]
        counts[name] = counts.get(name, 0) + 1
        position = end
    parts.append(text[position:])
    return "".join(parts), counts
