"""The config file: its schema, where it is found, how it is validated.

One TOML file, found in this order: ``-c PATH``, ``$MAILDESK_CONFIG``,
``./maildesk.toml``; with none of them the embedded defaults run a working
desk (SQLite under ``./var/``, SMTP on 127.0.0.1:2525, outbound mail as
``.eml`` files under ``./var/outbox/``). Every key is documented in
``maildesk.example.toml``. An unknown key, a wrong type or a bad address
stops start-up with one line naming the key (``ConfigError``).
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from maildesk.desk.calendars import CalendarConfig, TimeZoneName
from maildesk.desk.rules import RuleError, RuleSet, check_references, rules_from_toml
from maildesk.desk.sla import SlaConfig, SlaPolicyConfig, check_policies
from maildesk.errors import ConfigError
from maildesk.patterns import compile_robot_pattern
from maildesk.templating import template_names

ENV_VAR = "MAILDESK_CONFIG"
DEFAULT_FILE = Path("maildesk.toml")


def _check_address(value: str) -> str:
    value = value.strip().lower()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in value) or "@" in local:
        raise ValueError(f"{value!r} is not a mail address (expected local@domain)")
    return value


MailAddress = Annotated[str, AfterValidator(_check_address)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, not ignored."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class DatabaseConfig(Section):
    url: str = "sqlite:///var/maildesk.db"
    """SQLAlchemy URL: sqlite:///PATH (relative to the working directory) or
    postgresql+psycopg://user@host/db."""
    busy_timeout_seconds: float = Field(default=10.0, gt=0)
    auto_migrate: bool = True
    sqlite_synchronous: Literal["full", "normal"] = "full"
    """SQLite only: "full" fsyncs the WAL on every commit, so an accepted message
    survives a power loss; "normal" survives only a crash of maildesk itself."""


class AddressConfig(Section):
    """One address maildesk serves, and the queue its tickets go to."""

    address: MailAddress
    queue: str = "support"
    display_name: str = "Support"
    language: Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")] = "en"
    """Language of the mail sent for this address's queue ("en", "id"; "id-ID" falls back to "id", then "en")."""


class DeskConfig(Section):
    timezone: TimeZoneName = "UTC"
    """The desk's time zone: rules' ``weekday`` and ``hour`` are read in it."""
    domain: str = "localhost"
    """Our own domain: used for the Message-IDs of the mail we send."""
    tag_prefix: str = ""
    """Subject tag is ``[#123]``; with prefix ``ACME`` it is ``[ACME #123]``."""
    reopen_window_days: float = Field(default=30.0, ge=0)
    """A reply to a ticket closed longer ago than this opens a new linked ticket."""
    note_address: MailAddress | None = None
    secret_file: Path | None = None
    """A file of at least 32 random bytes that signs agent reply addresses; unset: maildesk
    makes a secret once and keeps it in the database."""
    agent_auth: Literal["reply", "dmarc"] = "reply"
    """"reply": an agent's mail must answer a notification (reply address or Message-ID);
    "dmarc": it must also pass DMARC or DKIM by our own border MTA's Authentication-Results."""
    authserv_id: str | None = None
    """The authserv-id our border MTA writes in Authentication-Results (needed with agent_auth = "dmarc")."""

    @model_validator(mode="after")
    def _dmarc_needs_authserv_id(self) -> DeskConfig:
        if self.agent_auth == "dmarc" and not self.authserv_id:
            raise ValueError('agent_auth = "dmarc" needs authserv_id (the name your MTA writes in '
                             'Authentication-Results)')
        return self


class QueueConfig(Section):
    """One queue (``[[queues]]``): where tickets wait, at a support level."""

    name: str = Field(min_length=1)
    display_name: str = ""
    """Shown to customers in the From of the queue's mail; defaults to the name."""
    level: int = Field(default=1, ge=1, le=3)
    """The support tier: 1 answers first, 2 and 3 take what level 1 cannot."""
    escalate_to: str | None = None
    """The queue a ticket moves to when it is escalated."""
    sla: str | None = None
    """The SLA policy of the queue's tickets (a name, kept for the SLA clocks)."""


class AgentConfig(Section):
    """One agent (``[[agents]]``): a person who answers tickets of some queues."""

    address: MailAddress
    name: str = ""
    queues: list[str] = Field(default_factory=list)


class SmtpLogin(Section):
    """One account allowed to AUTH to the listener; the password is read from a file."""

    username: str = Field(min_length=1)
    password_file: Path


class SmtpConfig(Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=2525, ge=0, le=65535)
    """0 lets the system pick a free port (tests)."""
    protocol: Literal["smtp", "lmtp"] = "smtp"
    max_message_size: int = Field(default=25 * 1024 * 1024, gt=0)
    max_recipients: int = Field(default=100, gt=0)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    """PEM certificate chain and key: with both, STARTTLS is offered."""
    require_tls: bool = False
    auth: list[SmtpLogin] = Field(default_factory=list)
    """With any entry, every sender must AUTH (after STARTTLS) before MAIL FROM."""
    max_connections: int = Field(default=100, gt=0)
    idle_timeout_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _tls_consistent(self) -> SmtpConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        if self.tls_cert is None and self.require_tls:
            raise ValueError("require_tls needs tls_cert and tls_key")
        if self.tls_cert is None and self.auth:
            raise ValueError("auth needs tls_cert and tls_key (passwords never travel in clear)")
        return self


class ProcessorConfig(Section):
    enabled: bool = True
    """False: `serve` only accepts mail into the spool; another daemon sharing the
    database (or this one, restarted with true) processes it."""


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


class OutboundConfig(Section):
    transport: Literal["file", "smtp"] = "file"
    directory: Path = Path("var/outbox")
    host: str = "127.0.0.1"
    port: int = Field(default=25, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    tls: Literal["ssl", "starttls", "none"] = "none"
    """"ssl" (implicit TLS, port 465), "starttls" (port 587) or "none" (a local MTA)."""
    timeout_seconds: float = Field(default=30.0, gt=0)
    oauth2_token_command: str | None = None
    """A command printing an OAuth2 access token; used with username for AUTH XOAUTH2."""
    max_attempts: int = Field(default=10, ge=1)
    max_age_hours: float = Field(default=48.0, gt=0)
    backoff_seconds: float = Field(default=60.0, gt=0)
    """Wait after the first temporary failure; doubled after each further one."""
    backoff_max_seconds: float = Field(default=3600.0, gt=0)
    robot_pattern: str | None = None
    """RE2 regex matching the whole address of those who never get automatic mail
    (default: mailer-daemon, postmaster, noreply...); RE2 runs in linear time."""
    templates: Path | None = None
    """Directory of template overrides: [QUEUE/][LANG/]KIND/{subject.txt,body.txt,body.html}."""

    @field_validator("robot_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            compile_robot_pattern(value)  # ValueError with RE2's reason
        return value

    @model_validator(mode="after")
    def _credentials_consistent(self) -> OutboundConfig:
        if self.password is not None and self.oauth2_token_command is not None:
            raise ValueError("give password or oauth2_token_command, not both")
        secret = "password" if self.password is not None else (
            "oauth2_token_command" if self.oauth2_token_command is not None else None)
        if secret is not None and not self.username:
            raise ValueError(f"{secret} needs username")
        if secret is not None and self.tls == "none" and self.host not in LOOPBACK_HOSTS:
            raise ValueError(f"{secret} with tls = \"none\" would send credentials in clear to {self.host}; "
                             "use tls = \"ssl\" or \"starttls\"")
        return self


class LimitsConfig(Section):
    """Caps on automatic customer mail (ack, update, solved), so auto-responders cannot loop."""

    per_recipient: int = Field(default=5, ge=0)
    per_recipient_minutes: float = Field(default=60.0, gt=0)
    per_ticket: int = Field(default=3, ge=0)
    per_ticket_minutes: float = Field(default=10.0, gt=0)


IMAP_CREDENTIALS = ("password", "password_file", "password_command", "oauth2_token_command")


class ImapConfig(Section):
    """One IMAP mailbox the poller takes mail from (``[[imap]]``)."""

    name: str = Field(min_length=1)
    """Names the mailbox in logs, counters and `maildesk imap status`; keep it stable."""
    host: str
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default: 993 with tls = "ssl", 143 otherwise."""
    tls: Literal["ssl", "starttls", "none"] = "ssl"
    tls_ca_file: Path | None = None
    """PEM file of the CAs to trust instead of the system's (a private CA)."""
    username: str
    password: SecretStr | None = None
    password_file: Path | None = None
    password_command: str | None = None
    oauth2_token_command: str | None = None
    """A command printing an OAuth2 access token: XOAUTH2 login (Microsoft 365, Gmail)."""
    folder: str = "INBOX"
    after: Literal["move", "flag", "delete"] = "move"
    processed_folder: str = "Processed"
    support_address: MailAddress | None = None
    """The address this box serves; unset: To/Cc decide, as for any mail."""
    import_existing: bool = True
    """False: on first connect ignore the mail already in the folder."""
    notify: bool = True
    """False: tickets from this mailbox are made without mailing the customer (an import box)."""
    ack_max_age_days: float = Field(default=2.0, ge=0)
    """Mail that reached the server longer ago than this gets no acknowledgement."""
    idle: bool = True
    poll_interval_seconds: float = Field(default=60.0, gt=0)
    idle_timeout_seconds: float = Field(default=5 * 60.0, gt=0, le=29 * 60.0)
    """Longest IDLE before the folder is searched again: the bound on how late mail
    arrives when a server fails to announce it (servers do)."""
    batch_size: int = Field(default=50, ge=1, le=1000)
    timeout_seconds: float = Field(default=60.0, gt=0)
    reconnect_min_seconds: float = Field(default=1.0, gt=0)
    reconnect_max_seconds: float = Field(default=300.0, gt=0)
    max_fetch_attempts: int = Field(default=3, ge=1)
    """A message the server fails to deliver this many times is skipped (UID recorded)."""

    @model_validator(mode="after")
    def _one_credential(self) -> ImapConfig:
        given = [key for key in IMAP_CREDENTIALS if getattr(self, key) is not None]
        if len(given) != 1:
            found = ", ".join(given) if given else "none"
            raise ValueError(
                f"mailbox {self.name!r}: give exactly one of {', '.join(IMAP_CREDENTIALS)} (found: {found})"
            )
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            raise ValueError(f"mailbox {self.name!r}: reconnect_min_seconds is above reconnect_max_seconds")
        return self


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Config(Section):
    database: DatabaseConfig = DatabaseConfig()
    desk: DeskConfig = DeskConfig()
    addresses: list[AddressConfig] = Field(
        default_factory=lambda: [AddressConfig(address="support@localhost")]
    )
    smtp: SmtpConfig = SmtpConfig()
    processor: ProcessorConfig = ProcessorConfig()
    outbound: OutboundConfig = OutboundConfig()
    limits: LimitsConfig = LimitsConfig()
    logging: LoggingConfig = LoggingConfig()
    imap: list[ImapConfig] = Field(default_factory=list)
    http: HttpConfig = Field(default_factory=lambda: HttpConfig())
    service: ServiceConfig = Field(default_factory=lambda: ServiceConfig())
    queues: list[QueueConfig] = Field(default_factory=list)
    """With none, each queue named by [[addresses]] exists at level 1."""
    agents: list[AgentConfig] = Field(default_factory=list)
    calendars: list[CalendarConfig] = Field(default_factory=list)
    sla_policies: list[SlaPolicyConfig] = Field(default_factory=list)
    sla: SlaConfig = SlaConfig()
    rules: RuleSet = RuleSet()
    rules_file: Path | None = None
    """A TOML file of [[rules]] tables, read instead of [[rules]] here (relative to the config file)."""

    @model_validator(mode="after")
    def _directory_consistent(self) -> Config:
        if not self.queues:
            implicit = dict.fromkeys(a.queue for a in self.addresses)
            self.queues = [QueueConfig(name=name) for name in implicit]
        names = [queue.name for queue in self.queues]
        for queue in self.queues:
            if names.count(queue.name) > 1:
                raise ValueError(f"queues: queue {queue.name!r} defined twice")
            if queue.escalate_to is not None and queue.escalate_to not in names:
                raise ValueError(f"queues.{queue.name}.escalate_to: unknown queue {queue.escalate_to!r}")
        for n, entry in enumerate(self.addresses):
            if entry.queue not in names:
                raise ValueError(f"addresses[{n}].queue: unknown queue {entry.queue!r} (address {entry.address})")
        agents = [agent.address for agent in self.agents]
        for n, agent in enumerate(self.agents):
            if agents.count(agent.address) > 1:
                raise ValueError(f"agents: agent {agent.address} listed twice")
            for queue in agent.queues:
                if queue not in names:
                    raise ValueError(f"agents[{n}].queues: unknown queue {queue!r} (agent {agent.address})")
        if self.rules_file is not None:
            if len(self.rules):
                raise ValueError("rules_file: give [[rules]] here or rules_file, not both")
            self.rules = _rules_from_file(self.rules_file)
        policies = [policy.name for policy in self.sla_policies]
        check_policies(self.sla_policies, self.calendars, self.sla.defaults)
        for queue in self.queues:
            if queue.sla is not None and queue.sla not in policies:
                raise ValueError(f"queues.{queue.name}.sla: unknown SLA policy {queue.sla!r}")
        check_references(self.rules, queues=names, agents=agents,
                         template_kinds=template_names(self.outbound.templates), sla_policies=policies)
        return self

    @model_validator(mode="after")
    def _imap_mailboxes_valid(self) -> Config:
        names = [box.name for box in self.imap]
        for box in self.imap:
            if names.count(box.name) > 1:
                raise ValueError(f"imap: mailbox name {box.name!r} used twice")
            if box.support_address and self.address_for(box.support_address) is None:
                raise ValueError(
                    f"imap: mailbox {box.name!r}: support_address {box.support_address} is not in [[addresses]]"
                )
        return self

    @model_validator(mode="after")
    def _addresses_unique(self) -> Config:
        if not self.addresses:
            raise ValueError("at least one support address is needed")
        seen = [a.address for a in self.addresses]
        duplicates = sorted({a for a in seen if seen.count(a) > 1})
        if duplicates:
            raise ValueError(f"address listed twice: {', '.join(duplicates)}")
        return self

    def address_for(self, address: str) -> AddressConfig | None:
        """The served address matching ``address`` (``support+tag@`` matches ``support@``)."""
        local, _, domain = address.lower().rpartition("@")
        base = f"{local.split('+', 1)[0]}@{domain}"
        for entry in self.addresses:
            if entry.address in (address.lower(), base):
                return entry
        return None

    @property
    def default_address(self) -> AddressConfig:
        return self.addresses[0]

    def queue(self, name: str) -> QueueConfig | None:
        return next((queue for queue in self.queues if queue.name == name), None)

    def agent(self, address: str) -> AgentConfig | None:
        address = address.lower()
        return next((agent for agent in self.agents if agent.address == address), None)

    def agents_of(self, queue: str) -> list[AgentConfig]:
        """The queue's agents, in config order (round robin and ties follow it)."""
        return [agent for agent in self.agents if queue in agent.queues]


def _rules_from_file(path: Path) -> RuleSet:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    try:
        return rules_from_toml(text)
    except RuleError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _describe(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith("rules[") or (key == "(top level)" and message.split(" ", 1)[0].endswith(":")):
        return message  # a check across sections (or the rule engine) names the key itself
    return f"{key}: {message}"


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        raise ConfigError(f"{source}: {_describe(first)}{more}") from None


def find_config_file(explicit: str | os.PathLike[str] | None) -> Path | None:
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    if DEFAULT_FILE.exists():
        return DEFAULT_FILE
    return None


def load_config(explicit: str | os.PathLike[str] | None = None) -> Config:
    """Load, validate and return the config; raise ConfigError with one clear line."""
    path = find_config_file(explicit)
    if path is None:
        return Config()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    if isinstance(data.get("rules_file"), str):  # relative to the config file, not to where maildesk runs
        data["rules_file"] = str(path.parent / data["rules_file"])
    return parse_config(data, str(path))


def masked(config: Config) -> dict[str, Any]:
    """The effective config as plain data, secrets replaced by asterisks."""
    data = config.model_dump(mode="json")
    password = config.outbound.password
    if password is not None:
        data["outbound"]["password"] = "********"
    data["database"]["url"] = _mask_url_password(config.database.url)
    for box, shown in zip(config.imap, data["imap"], strict=True):
        if box.password is not None:
            shown["password"] = "********"
    return data


def _mask_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:********@{host}"


# -- running as a service: [http] and [service] ---------------------------------------


class HttpConfig(Section):
    """The observability endpoint: ``/healthz`` and ``/metrics`` (off unless enabled)."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=0, le=65535)
    """0 lets the system pick a free port (tests)."""


class ServiceConfig(Section):
    """How ``maildesk serve`` runs as a service: its pid file and how long it may take to stop."""

    pid_file: Path | None = None
    """Where ``serve`` writes its pid for ``maildesk reload``; default ``$RUNTIME_DIRECTORY/maildesk.pid``
    when systemd sets RUNTIME_DIRECTORY, else ``var/maildesk.pid``."""
    stop_timeout_seconds: float = Field(default=20.0, gt=0)
    """On SIGTERM, the time allowed to finish the work in hand before exiting anyway."""

    def pid_path(self) -> Path:
        if self.pid_file is not None:
            return self.pid_file
        runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
        return Path(runtime) / "maildesk.pid" if runtime else Path("var/maildesk.pid")


Config.model_rebuild()  # Config names HttpConfig and ServiceConfig, defined after it
