"""The mail as rules see it (``RuleInput``) and the ``when`` of a rule, compiled.

Pure: no database, no network, no I/O.  ``compile_when()`` turns the
admin's ``when`` table into a tree of nodes once, at load; every node has

- ``test(mail) -> bool``: the fast path ``evaluate()`` runs for every mail;
- ``explain(mail) -> (bool, facts)``: the same answer, with the facts that
  decide it (``from_domain "bigcorp.example" in [...]``, ``subject does not
  contain "outage"``); only run when someone reads a trace's ``because``.

Comparing: every string comparison ignores case (``casefold``), ``matches``
too (RE2, linear time; write ``(?-i)`` in a pattern for a case-sensitive
part).  A field with several values (``to``, ``cc``, ``header.NAME``,
``attachment_name``, ``attachment_type``) matches when any value does; a
``not_`` operator is the plain negation, so it holds when no value does.
``exists`` means "has a value": a header that is present, a list that is
not empty, a string that is not empty.  A mail field is case-folded (or
encoded for RE2) at most once per ``RuleInput``, on first use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from operator import index
from typing import TYPE_CHECKING, Any

from maildesk.patterns import compile_pattern

if TYPE_CHECKING:
    from maildesk.mail.parse import ParsedMail

AUTOMATED_CLASSES = ("normal", "auto_reply", "auto_generated", "bounce", "list", "loop")
"""The classifier's classes (``maildesk.mail.classify``), spelled out to keep config loading light."""
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
OPERATORS = ("equals", "contains", "starts_with", "ends_with", "matches", "in", "exists", "at_least", "at_most")
TEXT_OPERATORS = ("equals", "contains", "starts_with", "ends_with", "matches", "in", "exists")
NUMBER_OPERATORS = ("equals", "in", "at_least", "at_most")
BOOL_OPERATORS = ("equals",)
_SHOWN_LENGTH = 60
_MISSING = object()


class InvalidKey(ValueError):
    """A key of a rule that cannot be used; ``key`` is its dotted path (``when.any[1].body.matches``)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"{key}: {reason}")
        self.key = key
        self.reason = reason


@dataclass(frozen=True, eq=False)
class RuleInput:
    """One mail and its context, as the rules see it. Build it with ``from_parsed``.

    ``from_domain``, ``has_attachment``, ``weekday`` (1 = Monday ... 7 =
    Sunday) and ``hour`` are derived from ``sender``, ``attachment_names``
    and ``arrived`` (already in ``desk.timezone``).
    """

    address: str
    """The support address the mail came to (envelope recipient)."""
    sender: str
    """The From address (rule field ``from``)."""
    to: tuple[str, ...]
    cc: tuple[str, ...]
    subject: str
    body: str
    """The new text (quoted history and signature removed)."""
    text: str
    """The whole text."""
    headers: tuple[tuple[str, str], ...]
    attachment_names: tuple[str, ...]
    attachment_types: tuple[str, ...]
    automated: str
    """The classifier's class: normal, auto_reply, auto_generated, bounce, list or loop."""
    sender_is_agent: bool
    previous_tickets: int
    arrived: datetime
    followup: bool
    """True: the mail joins an existing ticket; False: it opens a new one."""
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def from_parsed(
        cls,
        parsed: ParsedMail,
        *,
        address: str,
        automated: str,
        sender_is_agent: bool,
        previous_tickets: int,
        arrived: datetime,
        followup: bool,
    ) -> RuleInput:
        """The input for ``parsed``; ``automated`` is ``Classification.kind``.

        Attachments are the parsed ones except images the HTML body shows
        through ``cid:`` (signature logos), so ``has_attachment`` means a file
        the sender attached.
        """
        html = parsed.html or ""
        attached = [
            a for a in parsed.attachments
            if not (a.content_id and f"cid:{a.content_id}" in html)
        ]
        return cls(
            address=address,
            sender=parsed.sender.address,
            to=tuple(a.address for a in parsed.to if a.address),
            cc=tuple(a.address for a in parsed.cc if a.address),
            subject=parsed.subject,
            body=parsed.new_text,
            text=parsed.text,
            headers=tuple(parsed.headers),
            attachment_names=tuple(a.filename or a.safe_filename for a in attached),
            attachment_types=tuple(a.content_type for a in attached),
            automated=automated,
            sender_is_agent=sender_is_agent,
            previous_tickets=previous_tickets,
            arrived=arrived,
            followup=followup,
        )

    @property
    def from_domain(self) -> str:
        local, at, domain = self.sender.rpartition("@")
        return domain if at else ""

    @property
    def has_attachment(self) -> bool:
        return bool(self.attachment_names)

    @property
    def weekday(self) -> int:
        return self.arrived.isoweekday()

    @property
    def hour(self) -> int:
        return self.arrived.hour

    def header(self, folded_name: str) -> tuple[str, ...]:
        """Every value of the header named ``folded_name`` (case-folded), in order."""
        by_name = self._cache.get(" headers")
        if by_name is None:
            by_name = {}
            for name, value in self.headers:
                by_name.setdefault(name.casefold(), []).append(value)
            by_name = self._cache[" headers"] = {name: tuple(values) for name, values in by_name.items()}
        return by_name.get(folded_name, ())


def _shown(value: Any) -> str:
    if isinstance(value, str) and len(value) > _SHOWN_LENGTH:
        value = value[:_SHOWN_LENGTH] + "…"
    return json.dumps(value, ensure_ascii=False)


def _shown_list(values: tuple[str, ...]) -> str:
    shown = [_shown(v) for v in values[:5]] + (["…"] if len(values) > 5 else [])
    return f"[{', '.join(shown)}]"


def _whole_number(low: int, high: int | None) -> Callable[[Any], int]:
    def parse(constant: Any) -> int:
        if isinstance(constant, bool) or not isinstance(constant, int) or constant < low or (
                high is not None and constant > high):
            upper = f" to {high}" if high is not None else " or more"
            raise ValueError(f"expected a whole number from {low}{upper}, got {_shown(constant)}")
        return constant
    return parse


def _weekday_number(constant: Any) -> int:
    if isinstance(constant, str):
        folded = constant.casefold()
        for names in (WEEKDAYS, FULL_WEEKDAYS):
            if folded in names:
                return names.index(folded) + 1
    elif isinstance(constant, int) and not isinstance(constant, bool) and 1 <= constant <= 7:
        return constant
    raise ValueError(f"expected a weekday (mon ... sun, or 1 = Monday ... 7 = Sunday), got {_shown(constant)}")


@dataclass(frozen=True)
class FieldSpec:
    """A field rules can test: how to read it from a RuleInput and how to compare it."""

    name: str
    kind: str
    """"text", "bool" or "number"."""
    read: Callable[[RuleInput], Any]
    many: bool = False
    """The value is a tuple; the field matches when any element does."""
    shows_value: bool = True
    """False for long text: the trace names the field but does not quote it."""
    choices: tuple[str, ...] = ()
    """Constants that ``equals`` and ``in`` accept, if limited."""
    number: Callable[[Any], int] = _whole_number(0, None)
    show: Callable[[Any], str] = _shown
    exists_words: tuple[str, str] = ("is empty", "is not empty")

    @property
    def operators(self) -> tuple[str, ...]:
        return {"text": TEXT_OPERATORS, "bool": BOOL_OPERATORS, "number": NUMBER_OPERATORS}[self.kind]


FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in (
    FieldSpec("address", "text", lambda m: m.address),
    FieldSpec("from", "text", lambda m: m.sender),
    FieldSpec("from_domain", "text", lambda m: m.from_domain),
    FieldSpec("to", "text", lambda m: m.to, many=True),
    FieldSpec("cc", "text", lambda m: m.cc, many=True),
    FieldSpec("subject", "text", lambda m: m.subject, shows_value=False),
    FieldSpec("body", "text", lambda m: m.body, shows_value=False),
    FieldSpec("text", "text", lambda m: m.text, shows_value=False),
    FieldSpec("has_attachment", "bool", lambda m: m.has_attachment),
    FieldSpec("attachment_name", "text", lambda m: m.attachment_names, many=True),
    FieldSpec("attachment_type", "text", lambda m: m.attachment_types, many=True),
    FieldSpec("automated", "text", lambda m: m.automated, choices=AUTOMATED_CLASSES),
    FieldSpec("sender_is_agent", "bool", lambda m: m.sender_is_agent),
    FieldSpec("previous_tickets", "number", lambda m: m.previous_tickets),
    FieldSpec("weekday", "number", lambda m: m.weekday, number=_weekday_number,
              show=lambda day: _shown(WEEKDAYS[day - 1])),
    FieldSpec("hour", "number", lambda m: m.hour, number=_whole_number(0, 23), show=str),
)}


def header_field(name: str, key: str) -> FieldSpec:
    """The field ``header.NAME``: every value of that header, any case of its name."""
    if not name or any(not 33 <= ord(c) <= 126 or c == ":" for c in name):
        raise InvalidKey(key, f"{name!r} is not a header name")
    folded = name.casefold()
    return FieldSpec(f"header.{name}", "text", lambda m: m.header(folded), many=True,
                     exists_words=("does not exist", "exists"))


def _cached(key: str, make: Callable[[RuleInput], Any]) -> Callable[[RuleInput], Any]:
    def value_of(mail: RuleInput) -> Any:
        cache = mail._cache
        value = cache.get(key, _MISSING)
        if value is _MISSING:
            value = cache[key] = make(mail)
        return value
    return value_of


def _folded(spec: FieldSpec) -> Callable[[RuleInput], Any]:
    read = spec.read
    if spec.many:
        return _cached(spec.name.casefold(), lambda m: tuple(v.casefold() for v in read(m)))
    return _cached(spec.name.casefold(), lambda m: read(m).casefold())


def _encoded(spec: FieldSpec) -> Callable[[RuleInput], Any]:
    read = spec.read
    if spec.many:
        return _cached("utf-8 " + spec.name.casefold(),
                       lambda m: tuple(v.encode("utf-8", "surrogatepass") for v in read(m)))
    return _cached("utf-8 " + spec.name.casefold(), lambda m: read(m).encode("utf-8", "surrogatepass"))


_TRUE_VERBS = {"equals": "equals", "contains": "contains", "starts_with": "starts with",
               "ends_with": "ends with", "matches": "matches", "in": "in",
               "at_least": "is at least", "at_most": "is at most"}
_FALSE_VERBS = {"equals": "does not equal", "contains": "does not contain",
                "starts_with": "does not start with", "ends_with": "does not end with",
                "matches": "does not match", "in": "not in", "at_least": "is below", "at_most": "is above"}


class Leaf:
    """One operator on one field (``subject = { not_contains = "x" }``)."""

    def __init__(self, spec: FieldSpec, op: str, negated: bool, predicate: Callable[[Any], bool],
                 source: Callable[[RuleInput], Any], shown_constant: str) -> None:
        self.spec, self.op, self.negated = spec, op, negated
        self.predicate, self.source, self.shown_constant = predicate, source, shown_constant
        self.per_element = spec.many and op != "exists"
        if self.per_element:
            def test(mail: RuleInput) -> bool:
                for element in source(mail):
                    if predicate(element):
                        return not negated
                return negated
        else:
            def test(mail: RuleInput) -> bool:
                return predicate(source(mail)) != negated
        self.test = test

    def explain(self, mail: RuleInput) -> tuple[bool, list[str]]:
        value = self.source(mail)
        witness = None
        if self.per_element:
            witness = next((i for i, element in enumerate(value) if self.predicate(element)), None)
            fact = witness is not None
        else:
            fact = bool(self.predicate(value))
        return fact != self.negated, [self._statement(mail, fact, witness)]

    def _statement(self, mail: RuleInput, fact: bool, witness: int | None) -> str:
        spec, op = self.spec, self.op
        if op == "exists":
            return f"{spec.name} {spec.exists_words[fact]}"
        raw = spec.read(mail)
        if spec.kind == "bool":
            return f"{spec.name} is {json.dumps(raw)}"
        verb = (_TRUE_VERBS if fact else _FALSE_VERBS)[op]
        if spec.many:
            if not raw:
                return f"{spec.name} {spec.exists_words[False]}"
            if not fact and len(raw) > 1:
                return f"none of {spec.name} {_shown_list(raw)} {_TRUE_VERBS[op]} {self.shown_constant}"
            raw = raw[witness if fact else 0]
        subject = f"{spec.name} {spec.show(raw)}" if spec.shows_value else spec.name
        return f"{subject} {verb} {self.shown_constant}"


class AllOf:
    """Every part holds (a table of conditions, or ``all = [...]``); no part: always."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        tests = [part.test for part in parts]

        def test(mail: RuleInput) -> bool:
            for part_test in tests:
                if not part_test(mail):
                    return False
            return True
        self.test = tests[0] if len(tests) == 1 else test

    def explain(self, mail: RuleInput) -> tuple[bool, list[str]]:
        facts: list[str] = []
        for part in self.parts:
            holds, why = part.explain(mail)
            if not holds:
                return False, why
            facts.extend(why)
        return True, facts


class AnyOf:
    """At least one part holds (``any = [...]``)."""

    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts
        tests = [part.test for part in parts]

        def test(mail: RuleInput) -> bool:
            for part_test in tests:
                if part_test(mail):
                    return True
            return False
        self.test = test

    def explain(self, mail: RuleInput) -> tuple[bool, list[str]]:
        facts: list[str] = []
        for part in self.parts:
            holds, why = part.explain(mail)
            if holds:
                return True, why
            facts.extend(why)
        return False, facts


class NoneOf:
    """The part does not hold (``not = {...}``)."""

    def __init__(self, part: Any) -> None:
        self.part = part
        part_test = part.test
        self.test = lambda mail: not part_test(mail)

    def explain(self, mail: RuleInput) -> tuple[bool, list[str]]:
        holds, why = self.part.explain(mail)
        return not holds, why


def compile_when(table: Any, key: str = "when") -> AllOf | AnyOf | NoneOf | Leaf:
    """The condition tree of a ``when`` table; ``InvalidKey`` names the key at fault."""
    if not isinstance(table, Mapping):
        raise InvalidKey(key, "expected a table of conditions, e.g. { subject = { contains = \"x\" } }")
    parts: list[Any] = []
    for name, value in table.items():
        here = f"{key}.{name}"
        if name in ("any", "all"):
            if not isinstance(value, list) or not value:
                raise InvalidKey(here, "expected a non-empty list of condition tables")
            children = [compile_when(item, f"{here}[{n}]") for n, item in enumerate(value)]
            parts.append(AnyOf(children) if name == "any" else AllOf(children))
        elif name == "not":
            parts.append(NoneOf(compile_when(value, here)))
        elif name == "header":
            if not isinstance(value, Mapping) or not value:
                raise InvalidKey(here, "expected a table of header names, e.g. header.List-Id = { exists = true }")
            for header_name, operators in value.items():
                spec = header_field(str(header_name), f"{here}.{header_name}")
                parts.extend(_compile_field(spec, operators, f"{here}.{header_name}"))
        elif name.startswith("header."):
            parts.extend(_compile_field(header_field(name[len("header."):], here), value, here))
        elif name in FIELDS:
            parts.extend(_compile_field(FIELDS[name], value, here))
        else:
            raise InvalidKey(here, f"unknown field {name!r} (fields: {', '.join(FIELDS)}, header.NAME; "
                                   "combinators: any, all, not)")
    return parts[0] if len(parts) == 1 else AllOf(parts)


def _compile_field(spec: FieldSpec, operators: Any, key: str) -> list[Leaf]:
    if not isinstance(operators, Mapping) or not operators:
        raise InvalidKey(key, "expected a table of operators, e.g. { equals = ... }")
    leaves = []
    for op_name, constant in operators.items():
        here = f"{key}.{op_name}"
        negated = op_name.startswith("not_")
        op = op_name[len("not_"):] if negated else op_name
        if op not in OPERATORS:
            raise InvalidKey(here, f"unknown operator {op_name!r} (operators: {', '.join(OPERATORS)}, "
                                   "each also with not_ before it)")
        if op not in spec.operators:
            raise InvalidKey(here, f"operator {op_name!r} does not apply to {spec.name} "
                                   f"(a {spec.kind} field: {', '.join(spec.operators)})")
        try:
            leaves.append(_leaf(spec, op, negated, constant))
        except ValueError as exc:
            raise InvalidKey(here, str(exc)) from None
    return leaves


def _leaf(spec: FieldSpec, op: str, negated: bool, constant: Any) -> Leaf:
    shown = json.dumps(constant, ensure_ascii=False)
    if op == "exists":
        if not isinstance(constant, bool):
            raise ValueError(f"expected true or false, got {shown}")
        return Leaf(spec, op, negated == constant, bool, spec.read, shown)
    if spec.kind == "bool":
        if not isinstance(constant, bool):
            raise ValueError(f"expected true or false, got {shown}")
        return Leaf(spec, op, negated, lambda value: _truth(value) is constant, spec.read, shown)
    if spec.kind == "number":
        if op == "in":
            if not isinstance(constant, list) or not constant:
                raise ValueError(f"expected a non-empty list, got {shown}")
            numbers = frozenset(spec.number(c) for c in constant)
            return Leaf(spec, op, negated, lambda value: index(value) in numbers, spec.read, shown)
        number = spec.number(constant)
        predicate = {
            "equals": lambda value: index(value) == number,
            "at_least": lambda value: index(value) >= number,
            "at_most": lambda value: index(value) <= number,
        }[op]
        return Leaf(spec, op, negated, predicate, spec.read, shown)
    if op == "matches":
        if not isinstance(constant, str):
            raise ValueError(f"expected a pattern (a string), got {shown}")
        try:
            regex = compile_pattern(constant)
        except ValueError as exc:
            raise ValueError(f"invalid pattern (RE2 syntax): {exc}") from None
        return Leaf(spec, op, negated, lambda value: regex.search(value) is not None, _encoded(spec), shown)
    if op == "in":
        if not isinstance(constant, list) or not constant or not all(isinstance(c, str) for c in constant):
            raise ValueError(f"expected a non-empty list of strings, got {shown}")
        for choice in constant:
            _check_choice(spec, choice)
        return Leaf(spec, op, negated, frozenset(c.casefold() for c in constant).__contains__, _folded(spec), shown)
    if not isinstance(constant, str):
        raise ValueError(f"expected a string, got {shown}")
    if op == "equals":
        _check_choice(spec, constant)
    folded = constant.casefold()
    predicate = {
        "equals": folded.__eq__,
        "contains": lambda value: folded in value,
        "starts_with": lambda value: value.startswith(folded),
        "ends_with": lambda value: value.endswith(folded),
    }[op]
    return Leaf(spec, op, negated, predicate, _folded(spec), shown)


def _truth(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{value!r} is not true or false")
    return value


def _check_choice(spec: FieldSpec, constant: str) -> None:
    if spec.choices and constant.casefold() not in spec.choices:
        raise ValueError(f"unknown {spec.name} value {constant!r} ({', '.join(spec.choices)})")
