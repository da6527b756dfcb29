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
from itertools import accumulate
from re import _constants, _parser  # the pattern's parse tree, to judge it before it runs
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
    patterns: tuple[re.Pattern, ...]
    # The part of a match to redact (start, end), or None to leave it: for checks a pattern
    # cannot make, like the card number's Luhn digit.
    narrow: Callable[[str], tuple[int, int] | None] | None = None


# Every caller can put any text in a prompt, so each pattern runs in linear time: a match
# starts only where a run of its characters starts (a lookbehind), and no quantifier gives back
# what it took (possessive ``++``, ``*+``) unless what follows cannot be taken by it. Measured
# by bench/redaction.py on 1 MB of adversarial text.
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
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise RedactionRulesError(f"rule {name!r}: bad pattern {pattern!r}: {exc}") from None
    slow = _exponential(pattern)
    if slow:
        raise RedactionRulesError(
            f"rule {name!r}: pattern {pattern!r} has {slow}, which can take exponential time "
            "on text any caller can send: write it without, or make the inner repetition "
            "possessive (a++) or atomic ((?>...)) so that it never gives back what it took"
        )
    return Rule(name, (compiled,))


# Repetitions that give back what they took when what follows fails; possessive ones and
# atomic groups do not, so nothing inside them is tried again.
_BACKTRACKING = (_constants.MAX_REPEAT, _constants.MIN_REPEAT)


def _exponential(pattern: str) -> str:
    """What makes ``pattern`` backtrack exponentially on some text (a repetition inside a
    repetition, as in ``(a+)+``, alternatives inside one, as in ``(a|aa)+``, or a
    backreference), or "" when it has none. Python's engine backtracks; these are the classic
    ways a pattern gets stuck on hostile input. Cautious: some patterns refused are safe, and
    a possessive or atomic form of each is accepted."""

    def walk(items: Iterable, repeated: bool) -> str:
        for op, value in items:
            if op in _BACKTRACKING:
                _, high, inner = value
                if high > 1 and repeated:
                    return "a repetition inside a repetition"
                found = walk(inner, repeated or high > 1)
            elif op is _constants.POSSESSIVE_REPEAT:
                found = walk(value[2], False)
            elif op is _constants.ATOMIC_GROUP:
                found = walk(value, False)
            elif op in (_constants.GROUPREF, _constants.GROUPREF_EXISTS):
                return "a backreference"
            elif op is _constants.BRANCH and repeated:
                # (a|aa)+ tries every way of splitting the text between the alternatives.
                return "alternatives inside a repetition"
            else:
                found = next(
                    (why for inner in _inner(op, value) if (why := walk(inner, repeated))), ""
                )
            if found:
                return found
        return ""

    return walk(_parser.parse(pattern), False)


def _inner(op: object, value: Any) -> list:
    """The sub-patterns of one parsed item (groups, alternatives, lookarounds)."""
    if op is _constants.SUBPATTERN:
        return [value[3]]
    if op is _constants.BRANCH:
        return list(value[1])
    if op in (_constants.ASSERT, _constants.ASSERT_NOT):
        return [value[1]]
    return []


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
