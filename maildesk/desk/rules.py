"""The rule engine: ``[[rules]]`` validated and compiled at load, evaluated per mail.

Pure: no database, no network, no I/O.  The conditions (``when``) and the
mail as rules see it (``RuleInput``) live in ``desk/conditions.py``.

How the rest of maildesk uses it:

- **Load** (config.py): ``compile_rules(data["rules"])`` -> ``RuleSet``, or
  ``rules_from_toml(text)`` for the file ``rules_file`` names; ``RuleSet`` is
  also a pydantic field type (``rules: RuleSet = RuleSet()``), validated by
  ``compile_rules`` and dumped as the data it was given.  Then
  ``check_references(rules, queues=..., agents=..., template_kinds=...)``.
  Both raise ``RuleError`` (a ``ValueError``) with one line naming the rule
  and the key: ``rules[1] "outage to level 2": when.any[1].body.matches:
  invalid pattern (RE2 syntax): ...``.
- **Evaluate** (process.py, ``rules test``): ``evaluate(rules,
  RuleInput.from_parsed(...))`` -> ``Evaluation``: ``outcome`` (the merged
  decisions) and ``trace`` (one ``RuleTrace`` per rule, in order: name,
  status, ``matched``, ``because``, ``actions``), for the ticket's history and
  the CLI.  ``as_dict()`` on each gives plain JSON-able data.
- **Assign**: when ``outcome.assign_strategy`` is set, ``choose_agent(strategy,
  agents_of_the_queue, last_assignee=..., open_tickets=...)`` picks the agent
  from data the caller reads from the database.

Semantics: rules run in order.  A rule is skipped when ``enabled = false``,
when ``on`` ("new", the default; "followup"; "any") does not fit the mail,
or after a matching rule with ``stop = true``.  A rule whose conditions
raise is recorded as failed, with the reason, and the others still run.  Of
the matching rules, the later one wins for each scalar action (queue,
priority, assign, sla, acknowledge, status, spam); ``tags`` and ``notify``
accumulate, ``remove_tags`` takes a tag out of what earlier rules added and
asks the caller to remove it from the ticket.  No rule matched: the outcome
is empty (``is_empty``) and the caller keeps the address's queue and normal
priority.  ``spam = true`` means: store the ticket closed and do not
acknowledge it; the caller applies that over ``status`` and ``acknowledge``.
"""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from maildesk.desk.conditions import InvalidKey, RuleInput, compile_when

__all__ = [
    "Actions", "Evaluation", "Outcome", "Rule", "RuleError", "RuleInput", "RuleSet", "RuleTrace",
    "check_references", "choose_agent", "compile_rules", "evaluate", "least_open", "round_robin",
    "rules_from_toml",
]

PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("new", "open", "pending", "solved", "closed")
"""The ticket statuses of ``desk.tickets.STATUSES``, spelled out to keep config loading light."""
ASSIGN_STRATEGIES = ("round_robin", "least_open")
ON_VALUES = ("new", "followup", "any")
RULE_KEYS = ("name", "when", "then", "stop", "enabled", "on")
ACTION_KEYS = ("queue", "priority", "assign", "tags", "remove_tags", "sla", "acknowledge", "notify",
               "status", "spam")

MATCHED, NOT_MATCHED, FAILED = "matched", "not_matched", "failed"
DISABLED, NOT_ON, STOPPED = "disabled", "not_on", "stopped"
"""Statuses of a rule in a trace; the last three mean it was skipped, not evaluated."""


class RuleError(ValueError):
    """A rule the config cannot use: one line naming the rule and the key."""


@dataclass(frozen=True)
class Actions:
    """A rule's ``then``; None or empty means the rule does not touch that."""

    queue: str | None = None
    priority: str | None = None
    assign: str | None = None
    """An agent's address (lower-case), "round_robin" or "least_open"."""
    tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    sla: str | None = None
    acknowledge: bool | str | None = None
    """False: no acknowledgement; a string: the template kind to send instead of ``ack``;
    True: acknowledge as usual (undoes an earlier rule's false)."""
    notify: tuple[str, ...] = ()
    status: str | None = None
    spam: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        """The actions that are set, as plain data."""
        return {name: list(value) if isinstance(value, tuple) else value
                for name in ACTION_KEYS
                if (value := getattr(self, name)) is not None and value != ()}


@dataclass(frozen=True, eq=False)
class Rule:
    index: int
    name: str
    when: Any
    """The compiled condition tree (``conditions.compile_when``)."""
    then: Actions
    stop: bool = False
    enabled: bool = True
    on: str = "new"
    runs_on: tuple[bool, bool] = field(init=False, repr=False)
    """Whether the rule runs on a mail opening a ticket, and on a follow-up (``on`` and ``enabled``)."""

    def __post_init__(self) -> None:
        runs = (self.enabled and self.on != "followup", self.enabled and self.on != "new")
        object.__setattr__(self, "runs_on", runs)

    @property
    def label(self) -> str:
        return _label(self.index, self.name)


class RuleSet:
    """The ordered, compiled rules; iterable. Also a pydantic field type."""

    def __init__(self, rules: Sequence[Rule] = (), source: list[Any] | None = None) -> None:
        self.rules = tuple(rules)
        self.source = source if source is not None else []
        """The data the rules were compiled from (what ``model_dump`` shows)."""

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __len__(self) -> int:
        return len(self.rules)

    def __getitem__(self, index: int) -> Rule:
        return self.rules[index]

    def __repr__(self) -> str:
        return f"RuleSet({[rule.name for rule in self.rules]!r})"

    def evaluate(self, mail: RuleInput) -> Evaluation:
        return evaluate(self, mail)

    @cached_property
    def fields(self) -> frozenset[str]:
        """The fields the rules' conditions read (so a caller computes only what is needed)."""
        found: set[str] = set()

        def walk(table: Any) -> None:
            if isinstance(table, Mapping):
                for key, value in table.items():
                    found.add(str(key))
                    walk(value)
            elif isinstance(table, list):
                for item in table:
                    walk(item)

        for rule in self.source:
            if isinstance(rule, Mapping):
                walk(rule.get("when"))
        return frozenset(found)

    @classmethod
    def __get_pydantic_core_schema__(cls, source_type: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        def validate(value: Any) -> RuleSet:
            return value if isinstance(value, RuleSet) else compile_rules(value)
        return core_schema.no_info_plain_validator_function(
            validate,
            serialization=core_schema.plain_serializer_function_ser_schema(lambda rules: rules.source),
        )


def _label(index: int, name: str | None) -> str:
    return f"rules[{index}] {json.dumps(name, ensure_ascii=False)}" if name else f"rules[{index}]"


def rules_from_toml(text: str) -> RuleSet:
    """The rules of a rules file (``[[rules]]`` tables and nothing else)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RuleError(f"not valid TOML: {exc}") from None
    for key in data:
        if key != "rules":
            raise RuleError(f"{key}: unknown key (a rules file holds only [[rules]] tables)")
    return compile_rules(data.get("rules", []))


def compile_rules(data: Any) -> RuleSet:
    """Validate and compile the ``[[rules]]`` list; ``RuleError`` on the first problem."""
    if not isinstance(data, list):
        raise RuleError("rules: expected a list of tables ([[rules]])")
    rules: list[Rule] = []
    first_of_name: dict[str, int] = {}
    for index, table in enumerate(data):
        name = table.get("name") if isinstance(table, Mapping) else None
        label = _label(index, name if isinstance(name, str) and name.strip() else None)
        try:
            rule = _compile_rule(index, table)
        except InvalidKey as exc:
            raise RuleError(f"{label}: {exc}") from None
        if rule.name in first_of_name:
            raise RuleError(f"{label}: name: used twice (also rules[{first_of_name[rule.name]}])")
        first_of_name[rule.name] = index
        rules.append(rule)
    return RuleSet(rules, copy.deepcopy(data))


def _compile_rule(index: int, table: Any) -> Rule:
    if not isinstance(table, Mapping):
        raise InvalidKey("(rule)", "expected a table with name, when and then")
    for key in table:
        if key not in RULE_KEYS:
            raise InvalidKey(key, f"unknown key (keys: {', '.join(RULE_KEYS)})")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise InvalidKey("name", "missing" if name is None else "expected a non-empty string")
    if "when" not in table:
        raise InvalidKey("when", "missing (when = {} matches every mail)")
    when = compile_when(table["when"])
    then = _compile_actions(table.get("then", {}))
    on = table.get("on", "new")
    if on not in ON_VALUES:
        raise InvalidKey("on", f"expected one of {', '.join(ON_VALUES)}, got {json.dumps(on)}")
    return Rule(index, name, when, then, stop=_flag(table, "stop", False),
                enabled=_flag(table, "enabled", True), on=on)


def _flag(table: Mapping[str, Any], key: str, default: bool) -> bool:
    value = table.get(key, default)
    if not isinstance(value, bool):
        raise InvalidKey(key, f"expected true or false, got {json.dumps(value)}")
    return value


def _compile_actions(then: Any) -> Actions:
    if not isinstance(then, Mapping):
        raise InvalidKey("then", "expected a table of actions, e.g. { queue = \"billing\" }")
    values: dict[str, Any] = {}
    for key, value in then.items():
        here = f"then.{key}"
        if key not in ACTION_KEYS:
            raise InvalidKey(here, f"unknown action {key!r} (actions: {', '.join(ACTION_KEYS)})")
        shown = json.dumps(value, ensure_ascii=False)
        if key in ("queue", "sla"):
            values[key] = _text(value, here)
        elif key == "priority":
            values[key] = _choice(value, PRIORITIES, here)
        elif key == "status":
            values[key] = _choice(value, STATUSES, here)
        elif key == "assign":
            if isinstance(value, str) and value in ASSIGN_STRATEGIES:
                values[key] = value
            elif isinstance(value, str) and "@" in value:
                values[key] = _address(value, here)
            else:
                raise InvalidKey(here, f"expected an agent's address, \"round_robin\" or \"least_open\", got {shown}")
        elif key in ("tags", "remove_tags"):
            if not isinstance(value, list) or not all(isinstance(tag, str) and tag.strip() for tag in value):
                raise InvalidKey(here, f"expected a list of tags (non-empty strings), got {shown}")
            values[key] = tuple(dict.fromkeys(value))
        elif key == "notify":
            if not isinstance(value, list):
                raise InvalidKey(here, f"expected a list of addresses, got {shown}")
            values[key] = tuple(dict.fromkeys(_address(item, here) for item in value))
        elif key == "acknowledge":
            values[key] = value if isinstance(value, bool) else _text(value, here)
        else:  # spam
            if not isinstance(value, bool):
                raise InvalidKey(here, f"expected true or false, got {shown}")
            values[key] = value
    return Actions(**values)


def _text(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidKey(key, f"expected a non-empty string, got {json.dumps(value, ensure_ascii=False)}")
    return value


def _choice(value: Any, choices: tuple[str, ...], key: str) -> str:
    if value not in choices:
        raise InvalidKey(key, f"unknown {key.rpartition('.')[2]} {json.dumps(value, ensure_ascii=False)} "
                              f"({', '.join(choices)})")
    return value


def _address(value: Any, key: str) -> str:
    local, at, domain = value.rpartition("@") if isinstance(value, str) else ("", "", "")
    if not at or not local or not domain or "@" in local or any(c.isspace() for c in value):
        raise InvalidKey(key, f"{json.dumps(value, ensure_ascii=False)} is not a mail address")
    return value.lower()


def check_references(
    rules: RuleSet,
    *,
    queues: Collection[str],
    agents: Collection[str],
    template_kinds: Collection[str],
    sla_policies: Collection[str] | None = None,
) -> None:
    """Raise ``RuleError`` for the first action naming an unknown queue, agent, template kind
    (or SLA policy, when ``sla_policies`` is given); agents compare case-insensitively."""
    known_agents = {agent.lower() for agent in agents}
    for rule in rules:
        then = rule.then
        if then.queue is not None and then.queue not in queues:
            raise RuleError(f"{rule.label}: then.queue: unknown queue {then.queue!r}")
        if then.assign is not None and then.assign not in ASSIGN_STRATEGIES and then.assign not in known_agents:
            raise RuleError(f"{rule.label}: then.assign: unknown agent {then.assign!r}")
        if isinstance(then.acknowledge, str) and then.acknowledge not in template_kinds:
            raise RuleError(f"{rule.label}: then.acknowledge: unknown template kind {then.acknowledge!r}")
        if sla_policies is not None and then.sla is not None and then.sla not in sla_policies:
            raise RuleError(f"{rule.label}: then.sla: unknown SLA policy {then.sla!r}")


@dataclass(frozen=True)
class Outcome:
    """What the matching rules decided together; None or empty: nothing decided."""

    queue: str | None = None
    priority: str | None = None
    assignee: str | None = None
    """An agent's address; set only when ``assign_strategy`` is not."""
    assign_strategy: str | None = None
    """"round_robin" or "least_open": resolve with ``choose_agent`` among the queue's agents."""
    tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    sla: str | None = None
    acknowledge: bool | str | None = None
    spam: bool | None = None
    status: str | None = None
    notify: tuple[str, ...] = ()

    @property
    def is_empty(self) -> bool:
        return self == Outcome()

    def as_dict(self) -> dict[str, Any]:
        return {name: list(value) if isinstance(value, tuple) else value
                for name, value in self.__dict__.items()}


class RuleTrace:
    """What one rule did with one mail. ``because`` is worked out when first read."""

    __slots__ = ("rule", "status", "_mail", "_detail", "_because")

    def __init__(self, rule: Rule, status: str, mail: RuleInput, detail: Any = None) -> None:
        self.rule, self.status, self._mail, self._detail = rule, status, mail, detail
        self._because: str | None = None

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def matched(self) -> bool:
        return self.status == MATCHED

    @property
    def skipped(self) -> bool:
        return self.status in (DISABLED, NOT_ON, STOPPED)

    @property
    def actions(self) -> Actions | None:
        """The rule's actions when it matched (they went into the outcome), else None."""
        return self.rule.then if self.status == MATCHED else None

    @property
    def because(self) -> str:
        """The facts that decided, e.g. ``subject does not contain "outage"``, or why the rule did not run."""
        if self._because is None:
            self._because = self._explain()
        return self._because

    def _explain(self) -> str:
        rule, status = self.rule, self.status
        if status == STOPPED:
            return f"not run: {self._detail.label} matched and has stop = true"
        if status == DISABLED:
            return "not run: enabled = false"
        if status == NOT_ON:
            kind = "a follow-up" if self._mail.followup else "opens a new ticket"
            return f"not run: on = {json.dumps(rule.on)} and this mail is {kind}"
        if status == FAILED:
            return f"failed: {type(self._detail).__name__}: {self._detail}"
        try:
            facts = rule.when.explain(self._mail)[1]
        except Exception as exc:  # explain reads what test read; this only guards a bug
            return f"(cannot explain: {type(exc).__name__}: {exc})"
        return " and ".join(facts) if facts else "no conditions (every mail)"

    def as_dict(self) -> dict[str, Any]:
        actions = self.actions
        return {"index": self.rule.index, "rule": self.name, "status": self.status, "matched": self.matched,
                "because": self.because, "actions": actions.as_dict() if actions is not None else None}

    def __repr__(self) -> str:
        return f"RuleTrace({self.rule.label}, {self.status})"


class Evaluation:
    """The merged ``outcome`` and the ``trace`` (one RuleTrace per rule, in order, made when first read)."""

    __slots__ = ("outcome", "_rules", "_statuses", "_mail", "_stopped_by", "_failures", "_trace")

    def __init__(self, outcome: Outcome, rules: Sequence[Rule], statuses: list[str], mail: RuleInput,
                 stopped_by: Rule | None, failures: dict[int, Exception]) -> None:
        self.outcome = outcome
        self._rules, self._statuses, self._mail = rules, statuses, mail
        self._stopped_by, self._failures = stopped_by, failures
        self._trace: tuple[RuleTrace, ...] | None = None

    @property
    def trace(self) -> tuple[RuleTrace, ...]:
        if self._trace is None:
            self._trace = tuple(
                RuleTrace(rule, status, self._mail,
                          self._stopped_by if status == STOPPED else self._failures.get(position))
                for position, (rule, status) in enumerate(zip(self._rules, self._statuses, strict=True)))
        return self._trace

    @property
    def matched(self) -> list[RuleTrace]:
        """The rules that matched, in order: what goes into the ticket's history."""
        if self._trace is not None:
            return [step for step in self._trace if step.matched]
        return [RuleTrace(rule, MATCHED, self._mail)
                for rule, status in zip(self._rules, self._statuses, strict=True) if status == MATCHED]

    @property
    def failed(self) -> list[RuleTrace]:
        """The rules that failed at run time (skipped, the others still decided)."""
        if not self._failures:
            return []
        return [step for step in self.trace if step.status == FAILED]

    def as_dict(self) -> dict[str, Any]:
        return {"rules": [step.as_dict() for step in self.trace], "outcome": self.outcome.as_dict()}


@dataclass
class _Merge:
    values: dict[str, Any] = field(default_factory=dict)
    tags: dict[str, None] = field(default_factory=dict)
    removed: dict[str, None] = field(default_factory=dict)
    notify: dict[str, None] = field(default_factory=dict)

    def add(self, then: Actions) -> None:
        for name in ("queue", "priority", "sla", "acknowledge", "spam", "status"):
            value = getattr(then, name)
            if value is not None:
                self.values[name] = value
        if then.assign is not None:
            strategy = then.assign in ASSIGN_STRATEGIES
            self.values["assign_strategy"] = then.assign if strategy else None
            self.values["assignee"] = None if strategy else then.assign
        for tag in then.tags:
            self.tags[tag] = None
            self.removed.pop(tag, None)
        for tag in then.remove_tags:
            self.tags.pop(tag, None)
            self.removed[tag] = None
        self.notify.update(dict.fromkeys(then.notify))

    def outcome(self) -> Outcome:
        return Outcome(tags=tuple(self.tags), remove_tags=tuple(self.removed), notify=tuple(self.notify),
                       **self.values)


def evaluate(rules: Iterable[Rule], mail: RuleInput) -> Evaluation:
    """Run ``rules`` in order on ``mail``: the merged outcome and one trace entry per rule.

    Nothing is formatted here: a trace entry's ``because`` is worked out when read.
    """
    ordered = rules.rules if isinstance(rules, RuleSet) else tuple(rules)
    merge = _Merge()
    statuses: list[str] = []
    failures: dict[int, Exception] = {}
    stopped_by: Rule | None = None
    followup = bool(mail.followup)
    for position, rule in enumerate(ordered):
        if stopped_by is not None:
            statuses.append(STOPPED)
        elif not rule.runs_on[followup]:
            statuses.append(NOT_ON if rule.enabled else DISABLED)
        else:
            try:
                hit = rule.when.test(mail)
            except Exception as exc:  # one rule failing on one mail must not stop the others
                failures[position] = exc
                statuses.append(FAILED)
                continue
            if hit:
                statuses.append(MATCHED)
                merge.add(rule.then)
                if rule.stop:
                    stopped_by = rule
            else:
                statuses.append(NOT_MATCHED)
    return Evaluation(merge.outcome(), ordered, statuses, mail, stopped_by, failures)


def round_robin(agents: Sequence[str], last_assignee: str | None) -> str | None:
    """The agent after ``last_assignee`` in ``agents`` (config order, wrapping round).

    The first agent when there is no last assignee or they are no longer in
    the list; None when ``agents`` is empty.
    """
    if not agents:
        return None
    folded = [agent.lower() for agent in agents]
    if last_assignee is not None and last_assignee.lower() in folded:
        return agents[(folded.index(last_assignee.lower()) + 1) % len(agents)]
    return agents[0]


def least_open(agents: Sequence[str], open_tickets: Mapping[str, int]) -> str | None:
    """The agent with the fewest open tickets (absent from ``open_tickets``: none);
    a tie goes to the one listed first. None when ``agents`` is empty."""
    counts = {agent.lower(): count for agent, count in open_tickets.items()}
    return min(agents, key=lambda agent: counts.get(agent.lower(), 0)) if agents else None


def choose_agent(
    strategy: str,
    agents: Sequence[str],
    *,
    last_assignee: str | None = None,
    open_tickets: Mapping[str, int] | None = None,
) -> str | None:
    """``round_robin`` or ``least_open`` by name (``Outcome.assign_strategy``)."""
    if strategy == "round_robin":
        return round_robin(agents, last_assignee)
    if strategy == "least_open":
        return least_open(agents, open_tickets or {})
    raise ValueError(f"unknown assignment strategy {strategy!r} ({', '.join(ASSIGN_STRATEGIES)})")
