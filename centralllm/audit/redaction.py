"""Redaction of the previews the ingest writes to DynamoDB (the S3 objects are left as they are).

An environment declares its rules as one JSON list in ``REDACTION_RULES``: built-in rule names
and custom rules, ``["email", "card", {"name": "ticket", "pattern": "TCK-\\\\d+"}]``. Empty or
unset: nothing is redacted. Each match becomes ``[redacted:<rule>]``. A pattern with a group
named ``value`` redacts only that group (``key=[redacted:api_key]`` keeps its ``key=``).

Every caller can put any text in a prompt, so every pattern runs in linear time. The built-in
ones are written for Python's engine so that they do; custom ones run on RE2 (the
``google-re2`` package), which guarantees it for any pattern it accepts: a pattern RE2 cannot
take (a backreference, a lookaround) is refused with RE2's reason. Python's engine takes
exponential time on ``(a+)+$`` and cubic on ``\\d*\\d*x`` (68 s on 2,560 digits), which no
check of a pattern's shape catches in full.
"""

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import accumulate
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")  # kept short and plain: it goes into the marker


class RedactionRulesError(ValueError):
    """A rule set that cannot be used; the message says which rule and why."""


_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # a digit doubled, its two digits added


def _card_number(text: str) -> tuple[int, int] | None:
    """The longest run of whole digit groups in ``text`` that is a card number, if any: a
    number glued to an expiry or a reference ("4111 1111 1111 1111 12/27") is still found.

    Each candidate's Luhn sum comes from running sums (one per parity, plain and doubled), so
    text made of digit groups costs a few steps per candidate, not a pass over its digits."""
    groups = list(re.finditer(r"\d+", text))
    values = [int(digit) for group in groups for digit in group.group()]
    before = list(accumulate((len(group.group()) for group in groups), initial=0))
    # sums[parity][doubled][i]: the digits before index i of that parity, plain or doubled.
    sums = [[[0], [0]], [[0], [0]]]
    for index, value in enumerate(values):
        for parity in (0, 1):
            own = parity == index % 2
            sums[parity][0].append(sums[parity][0][-1] + (value if own else 0))
            sums[parity][1].append(sums[parity][1][-1] + (_DOUBLED[value] if own else 0))
    for first in range(len(groups)):
        for last in range(len(groups) - 1, first - 1, -1):
            start, end = before[first], before[last + 1]
            if end - start < 13:
                break  # shorter still as ``last`` comes down
            if end - start > 19:
                continue
            # Luhn doubles every second digit from the right: those of the other parity.
            right = (end - 1) % 2
            total = sums[right][0][end] - sums[right][0][start]
            total += sums[1 - right][1][end] - sums[1 - right][1][start]
            if total % 10 == 0:
                return groups[first].start(), groups[last].end()
    return None


@dataclass(frozen=True)
class Rule:
    name: str
    patterns: tuple[Any, ...]  # compiled: re's for the built-in rules, RE2's for custom ones
    # The part of a match to redact (start, end), or None to leave it: for checks a pattern
    # cannot make, like the card number's Luhn digit.
    narrow: Callable[[str], tuple[int, int] | None] | None = None


# Each pattern runs in linear time on Python's engine: a match starts only where a run of its
# characters starts (a lookbehind), and no quantifier gives back what it took (possessive
# ``++``, ``*+``) unless what follows cannot be taken by it. Measured by bench/redaction.py on
# 1 MB of adversarial text.
BUILT_IN = {
    rule.name: rule
    for rule in (
        Rule(
            "email",
            (
                re.compile(
                    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]++@"
                    r"(?:[A-Za-z0-9-]++\.)+[A-Za-z]{2,}+(?![A-Za-z0-9-])"
                ),
            ),
        ),
        Rule(
            "api_key",
            (
                re.compile(r"\bsk-[A-Za-z0-9_-]{16,}+"),
                re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
                re.compile(r"(?i)\bbearer\s++(?P<value>[A-Za-z0-9._~+/-]{8,}+=*+)"),
                # A long token after "key", "token" or "secret" (api_key=..., X-Api-Key: ...,
                # "access_token": "..."), holding a digit in its first 256 characters so that
                # long plain words are left.
                re.compile(
                    r"(?i)(?:key|token|secret)[\"']?\s*+[:=]?\s*+[\"']?"
                    r"(?P<value>(?<![A-Za-z0-9+/_-])(?=[A-Za-z+/_-]{0,256}\d)"
                    r"[A-Za-z0-9+/_-]{16,}+={0,2})"
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
    return Rule(name, (_re2(name, pattern),))


def _re2(name: str, pattern: str) -> Any:
    """``pattern`` compiled by RE2 (imported here: the Lambda zip's build of it is for the
    Lambda's Python, and only custom rules need it)."""
    import re2

    options = re2.Options()
    options.log_errors = False  # the reason is in the error raised
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if isinstance(exc.args[0], bytes) else str(exc)
        raise RedactionRulesError(
            f"rule {name!r}: RE2 cannot take pattern {pattern!r}: {reason} (custom rules run "
            "on RE2, in linear time: no backreferences, lookarounds, possessive or atomic "
            "repetitions)"
        ) from None


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
                # By number: RE2's matches take no group names.
                start, end = match.span(pattern.groupindex.get("value", 0))
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
