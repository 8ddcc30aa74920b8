"""The maildesk command as users and MTAs call it: exit codes and JSON contracts.

`ingest` is run as a real subprocess for its exit codes (that is what Postfix's
pipe and procmail see); the rest go through click's runner.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from maildesk.cli import main
from maildesk.desk import tickets
from tests.helpers import config_toml, make_mail, raising

DATA = Path(__file__).parents[1] / "data"


@pytest.fixture
def config_file(tmp_path: Path, config_data: dict) -> Path:
    path = tmp_path / "maildesk.toml"
    path.write_text(config_toml(config_data))
    return path


def run(config_file: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "MAILDESK_CONFIG": str(config_file)}
    return subprocess.run(
        [sys.executable, "-m", "maildesk", *args], input=stdin, capture_output=True, env=env, timeout=60
    )


def cli(config_file: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["-c", str(config_file), *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_ingest_from_stdin_exits_0_and_opens_a_ticket(config_file: Path) -> None:
    result = run(config_file, "ingest", stdin=make_mail(subject="From stdin"))
    assert result.returncode == 0, result.stderr
    code, out = cli(config_file, "tickets", "list", "--json")
    tickets = json.loads(out)["items"]
    assert [t["subject"] for t in tickets] == ["From stdin"]


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n\r\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR binary garbage", b"just some words, no headers\n"],
    ids=["empty", "blank", "binary", "no-headers"],
)
def test_ingest_of_unusable_input_exits_65_and_stores_nothing(config_file: Path, raw: bytes) -> None:
    result = run(config_file, "ingest", stdin=raw)
    assert result.returncode == 65
    assert b"not accepted" in result.stderr and b"Traceback" not in result.stderr
    code, out = cli(config_file, "inbound", "list", "--json")
    assert json.loads(out)["items"] == []


def test_ingest_stores_a_mail_with_a_nul_in_a_header_as_smtp_would(config_file: Path) -> None:
    """One rule for every way in: a NUL in a header is a defect, not a reason to refuse the mail."""
    raw = make_mail(subject="Nul inside", headers={"X-Mailer": "Mailer 1.0"}).replace(b"Mailer 1.0", b"Mai\x00ler")
    result = run(config_file, "ingest", "--no-notify", stdin=raw)
    assert result.returncode == 0, result.stderr
    code, out = cli(config_file, "tickets", "show", "1", "--json")
    [message] = json.loads(out)["messages"]
    assert message["subject"] == "Nul inside"
    assert "NUL byte in the header section; removed" in message["defects"]


def test_a_part_sent_without_a_name_has_null_filename_and_a_name_from_its_type(
    config_file: Path, tmp_path: Path
) -> None:
    raw = (b"From: Budi <budi@pelanggan.example>\nTo: support@example.com\nSubject: Photo\n"
           b"Message-ID: <photo@pelanggan.example>\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n"
           b"--b\nContent-Type: text/plain\n\nSee the photo.\n"
           b"--b\nContent-Type: image/jpeg\nContent-Transfer-Encoding: base64\n\n/9j/4AAQ\n--b--\n")
    path = tmp_path / "photo.eml"
    path.write_bytes(raw)
    code, out = cli(config_file, "inspect", str(path), "--json")
    [inspected] = json.loads(out)["attachments"]
    assert (inspected["filename"], inspected["safe_filename"]) == (None, "image.jpg")
    code, out = cli(config_file, "inspect", str(path))
    assert "Attachment:  image.jpg (image/jpeg, 6 bytes, sent without a name, sha256" in out
    assert run(config_file, "ingest", "--no-notify", str(path)).returncode == 0
    code, out = cli(config_file, "tickets", "show", "1", "--json")
    [message] = json.loads(out)["messages"]
    [stored] = message["attachments"]
    assert (stored["filename"], stored["safe_filename"]) == (None, "image.jpg")


def test_ingest_exits_75_when_the_database_is_locked(tmp_path: Path) -> None:
    database = tmp_path / "locked.db"
    path = tmp_path / "locked.toml"
    path.write_text(f'[database]\nurl = "sqlite:///{database}"\nbusy_timeout_seconds = 0.5\n')
    assert run(path, "db", "upgrade").returncode == 0
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = run(path, "ingest", stdin=make_mail())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.returncode == 75, result.stderr
    assert b"database" in result.stderr and b"Traceback" not in result.stderr
    assert run(path, "ingest", stdin=make_mail()).returncode == 0


def test_ingest_exits_75_when_postgres_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "pg.toml"
    path.write_text('[database]\nurl = "postgresql+psycopg://postgres@127.0.0.1:1/nowhere"\n')
    result = run(path, "ingest", stdin=make_mail())
    assert result.returncode == 75
    assert b"database unavailable" in result.stderr and b"Traceback" not in result.stderr


@pytest.mark.parametrize("trouble", ["no database directory", "not a database"])
def test_ingest_exits_75_whatever_keeps_the_mail_from_the_spool(tmp_path: Path, trouble: str) -> None:
    if trouble == "no database directory":
        url = "sqlite:////proc/no-such-dir/maildesk.db"  # cannot be created, not even by root
    else:
        (tmp_path / "garbage.db").write_bytes(b"this is not a database file" * 100)
        url = f"sqlite:///{tmp_path / 'garbage.db'}"
    path = tmp_path / "broken.toml"
    path.write_text(f'[database]\nurl = "{url}"\n')
    result = run(path, "ingest", stdin=make_mail())
    assert result.returncode == 75, result.stderr
    last_line = result.stderr.decode().rstrip("\n").split("\n")[-1]
    assert last_line.startswith("maildesk: cannot store the message: "), result.stderr


def test_ingest_files_and_a_maildir(config_file: Path, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    (maildir / "new" / "1.eml").write_bytes(make_mail(subject="one", message_id="<m1@x.example>"))
    (maildir / "cur" / "2.eml:2,S").write_bytes(make_mail(subject="two", message_id="<m2@x.example>"))
    loose = tmp_path / "three.eml"
    loose.write_bytes(make_mail(subject="three", message_id="<m3@x.example>"))

    assert run(config_file, "ingest", "--maildir", str(maildir)).returncode == 0
    assert run(config_file, "ingest", str(loose)).returncode == 0
    assert run(config_file, "ingest", "--maildir", str(maildir)).returncode == 0  # again: nothing new
    _, out = cli(config_file, "tickets", "list", "--json")
    assert sorted(t["subject"] for t in json.loads(out)["items"]) == ["one", "three", "two"]


def test_a_merged_ticket_is_listed_only_when_asked_for(config_file: Path) -> None:
    # Reply first, then the original, then the mail between them: two tickets become one.
    for mail in (make_mail(message_id="<r3@x.example>", in_reply_to="<r2@x.example>", subject="Re: Q"),
                 make_mail(message_id="<r1@x.example>", subject="Q"),
                 make_mail(message_id="<r2@x.example>", in_reply_to="<r1@x.example>", subject="Re: Q")):
        assert run(config_file, "ingest", stdin=mail).returncode == 0
    _, out = cli(config_file, "tickets", "list", "--json")
    [live] = json.loads(out)["items"]
    _, out = cli(config_file, "tickets", "list", "--status", "merged", "--json")
    [merged] = json.loads(out)["items"]
    assert merged["linked_ticket_id"] == live["id"] and merged["status"] == "merged"


def test_ingest_of_a_missing_file_is_a_clear_error(config_file: Path, tmp_path: Path) -> None:
    result = run(config_file, "ingest", str(tmp_path / "nope.eml"))
    assert result.returncode == 65 and b"nope.eml" in result.stderr and b"Traceback" not in result.stderr


def test_tickets_json_contract(config_file: Path, tmp_path: Path) -> None:
    first = make_mail(subject="Invoice wrong", message_id="<inv@x.example>", cc="bob@x.example")
    run(config_file, "ingest", stdin=first)
    run(config_file, "ingest", stdin=make_mail(subject="Re: Invoice wrong", in_reply_to="<inv@x.example>",
                                                body="Any news?\n\nOn Mon, Alice wrote:\n> Invoice wrong\n"))
    _, out = cli(config_file, "tickets", "list", "--json")
    [summary] = json.loads(out)["items"]
    assert set(summary) >= {"id", "subject", "status", "queue", "priority", "requester", "assignee", "tags",
                            "created_at", "updated_at"}
    assert summary["created_at"].endswith("+00:00")

    _, out = cli(config_file, "tickets", "show", str(summary["id"]), "--json")
    ticket = json.loads(out)
    assert set(ticket) >= set(summary) | {"participants", "events", "messages"}
    assert {p["address"] for p in ticket["participants"]} == {"alice@customer.example", "bob@x.example"}
    reply = ticket["messages"][-1]  # [0] the first mail, then our acknowledgement
    assert set(reply) >= {"id", "direction", "kind", "from", "to", "cc", "subject", "message_id", "date",
                          "body_text", "new_text", "classification", "attachments"}
    assert reply["message_id"].startswith("<") and reply["new_text"] == "Any news?"
    assert reply["classification"]["class"] == "normal"


def test_tickets_human_output_is_a_table(config_file: Path) -> None:
    run(config_file, "ingest", stdin=make_mail(subject="Table me"))
    code, out = cli(config_file, "tickets", "list")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["ID", "STATUS", "QUEUE"] and "Table me" in row
    code, out = cli(config_file, "tickets", "show", "1")
    assert code == 0 and "#1 Table me" in out


def test_show_of_a_missing_ticket_is_a_clear_error(config_file: Path) -> None:
    code, out = cli(config_file, "tickets", "show", "42")
    assert code == 1 and "no ticket #42" in out


def test_inspect_json_contract_stores_nothing(config_file: Path) -> None:
    path = DATA / "cli" / "inspect-me.eml"
    code, out = cli(config_file, "inspect", str(path), "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"from", "to", "cc", "reply_to", "subject", "date", "message_id", "in_reply_to",
                         "references", "text", "html", "new_text", "attachments", "classification", "defects"}
    assert data["from"] == {"name": "Zoë Müller", "address": "zoe@kunde.example"}
    assert data["subject"] == "Rechnung für März"
    assert data["classification"] == {"class": "normal", "reason": data["classification"]["reason"]}
    [attachment] = data["attachments"]
    assert attachment["filename"] == "Übersicht März.pdf"
    assert attachment["size"] == 13 and len(attachment["sha256"]) == 64
    code, out = cli(config_file, "inbound", "list", "--json")
    assert json.loads(out)["items"] == []


def test_inspect_human_output(config_file: Path) -> None:
    code, out = cli(config_file, "inspect", str(DATA / "cli" / "inspect-me.eml"))
    assert code == 0
    assert "From:        Zoë Müller <zoe@kunde.example>" in out
    assert "Übersicht März.pdf" in out


def test_inbound_list_and_retry(config_file: Path) -> None:
    run(config_file, "ingest", stdin=make_mail())
    code, out = cli(config_file, "inbound", "list", "--json")
    [row] = json.loads(out)["items"]
    assert row["state"] == "done" and row["ticket_id"] == 1 and row["source"] == "cli"
    code, out = cli(config_file, "inbound", "list", "--failed", "--json")
    assert json.loads(out)["items"] == []
    code, out = cli(config_file, "inbound", "retry", str(row["id"]))
    assert code == 1 and "not a failed message" in out


def test_a_failed_message_is_listed_with_its_error_and_retried(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(tickets, "add_message", raising("bug in the desk"))
        result = CliRunner().invoke(main, ["-c", str(config_file), "ingest"], input=make_mail())
    assert result.exit_code == 0  # accepted: safe in the spool, though not processed
    code, out = cli(config_file, "inbound", "list", "--failed", "--json")
    [row] = json.loads(out)["items"]
    assert row["state"] == "failed" and "bug in the desk" in row["error"] and row["ticket_id"] is None
    code, out = cli(config_file, "inbound", "list", "--failed")
    assert "bug in the desk" in out

    code, out = cli(config_file, "inbound", "retry", str(row["id"]))

    assert code == 0 and f"inbound {row['id']}: done" in out
    code, out = cli(config_file, "inbound", "list", "--json")
    [row] = json.loads(out)["items"]
    assert row["state"] == "done" and row["disposition"] == f"new ticket #{row['ticket_id']}"


def test_a_bad_config_key_exits_2_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[smtp]\nportt = 25\n")
    result = run(path, "tickets", "list")
    assert result.returncode == 2
    assert result.stderr.decode().strip() == f"maildesk: {path}: smtp.portt: unknown key"


def test_check_config_prints_the_effective_config(config_file: Path) -> None:
    code, out = cli(config_file, "check-config")
    assert code == 0
    assert json.loads(out)["addresses"][0]["address"] == "support@example.com"


def test_db_current_and_upgrade(config_file: Path) -> None:
    code, out = cli(config_file, "db", "upgrade")
    assert code == 0 and "database at revision" in out
    code, out = cli(config_file, "db", "current")
    assert code == 0 and "up to date" in out


def test_set_status_tells_the_customer_and_the_history(config_file: Path) -> None:
    run(config_file, "ingest", "--no-notify", stdin=make_mail(message_id="<st@x.example>"))

    code, out = cli(config_file, "tickets", "set-status", "1", "solved", "--note", "Replaced the fuser.",
                    "--actor", "agent@example.com")

    assert code == 0 and out.strip() == "ticket #1: new -> solved, solved mail queued for alice@customer.example"
    _, out = cli(config_file, "outbox", "list", "--json")
    [mail] = json.loads(out)["items"]
    assert mail["kind"] == "solved" and mail["subject"].startswith("[#1] ")
    _, out = cli(config_file, "tickets", "show", "1", "--json")
    ticket = json.loads(out)
    assert ticket["status"] == "solved"
    [change] = [e for e in ticket["events"] if e["type"] == "status"]
    assert (change["actor"], change["reason"]) == ("agent@example.com", "Replaced the fuser.")

    code, out = cli(config_file, "tickets", "set-status", "1", "closed")
    assert code == 0 and out.strip() == "ticket #1: solved -> closed"  # closing is housekeeping: no mail
    for status in ("open", "solved", "open"):  # the per-ticket cap on automatic mail (3 in 10 minutes) bites
        code, out = cli(config_file, "tickets", "set-status", "1", status)
    assert code == 0 and out.strip().startswith("ticket #1: solved -> open; update mail to alice@customer.example "
                                                 "not sent: rate limit")
    _, out = cli(config_file, "tickets", "show", "1", "--json")
    assert json.loads(out)["status"] == "open"
    code, out = cli(config_file, "tickets", "set-status", "1", "done")
    assert code == 2 and "'done' is not one of" in out


def test_ingest_batches_hold_at_most_50_mails_or_32_mib() -> None:
    from maildesk.cli.mail_in import _batches

    small = [(f"{n}.eml", b"x" * 100) for n in range(120)]
    assert [len(b) for b in _batches(iter(small), 50)] == [50, 50, 20]
    large = [(f"{n}.eml", b"x" * (10 * 1024 * 1024)) for n in range(7)]
    assert [len(b) for b in _batches(iter(large), 50)] == [4, 3]  # a batch closes once it holds 32 MiB


@pytest.mark.parametrize("command", [("tickets", "show"), ("tickets", "set-status"), ("inbound", "retry"),
                                     ("outbox", "retry"), ("tickets", "assign"), ("tickets", "set-queue")])
def test_an_id_no_row_can_have_is_a_usage_error(config_file: Path, command: tuple[str, ...]) -> None:
    """On PostgreSQL such a number would reach an integer column and fail with a traceback."""
    extra = {"set-status": ["open"], "assign": ["none"], "set-queue": ["support"]}.get(command[1], [])
    args = [*command, "99999999999", *extra]
    result = CliRunner().invoke(main, ["-c", str(config_file), *args])
    assert result.exit_code == 2 and "99999999999" in result.output and "Traceback" not in result.output


def test_tickets_list_filters_by_assignee_priority_and_tag(config_file: Path) -> None:
    """Without any rule: every ticket is unassigned, normal, untagged until an admin changes it."""
    for n in (1, 2):
        run(config_file, "ingest", stdin=make_mail(subject=f"Ticket {n}", message_id=f"<f{n}@x.example>"))
    assert cli(config_file, "tickets", "set-queue", "2", "billing")[0] == 0
    for args, expected in ((["--assignee", "none"], [2, 1]), (["--priority", "normal", "--queue", "billing"], [2]),
                           (["--priority", "low"], []), (["--tag", "vip"], []),
                           (["--assignee", "someone@example.com"], [])):
        code, out = cli(config_file, "tickets", "list", *args, "--json")
        assert code == 0 and [t["id"] for t in json.loads(out)["items"]] == expected, args


def test_assign_needs_agents_in_the_config(config_file: Path) -> None:
    run(config_file, "ingest", stdin=make_mail())
    code, out = cli(config_file, "tickets", "assign", "1", "rina@example.com")
    assert code == 2 and out.strip() == "maildesk: unknown agent 'rina@example.com' (agents: none configured)"
    code, out = cli(config_file, "agents", "list", "--json")
    assert code == 0 and json.loads(out) == []
