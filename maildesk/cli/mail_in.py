"""Commands that take mail in: ``maildesk ingest`` (files, a Maildir or
stdin into the spool, processed right away by default) and ``maildesk
inspect`` (how one message is read, without storing anything)."""

from __future__ import annotations

import gc
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import structlog

from maildesk import present, spool
from maildesk.cli import EX_DATAERR, EX_USAGE, App, emit_json, fail, temporary_failures_exit, who
from maildesk.errors import TemporaryFailure
from maildesk.mail import classify
from maildesk.mail.parse import parse, unusable_reason

log = structlog.get_logger(__name__)

SPOOL_BATCH = 50
SPOOL_BATCH_BYTES = 32 * 1024 * 1024


def _read_inputs(files: tuple[str, ...], maildir: str | None) -> Iterator[tuple[str, bytes]]:
    if maildir:
        root = Path(maildir)
        if not (root / "cur").is_dir() and not (root / "new").is_dir():
            fail(f"{maildir}: not a Maildir (no cur/ or new/)", EX_USAGE)
        for sub in ("new", "cur"):
            for path in sorted((root / sub).glob("*")) if (root / sub).is_dir() else []:
                if path.is_file():
                    yield str(path), path.read_bytes()
    for name in files:
        try:
            yield name, Path(name).read_bytes()
        except OSError as exc:
            fail(f"{name}: {exc.strerror}", EX_DATAERR)
    if not files and not maildir:
        yield "<stdin>", sys.stdin.buffer.read()


@click.command()
@click.argument("files", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--maildir", type=click.Path(file_okay=False), help="Ingest every message of this Maildir.")
@click.option("--notify/--no-notify", default=True, help="Send acknowledgements (off for importing old mail).")
@click.option("--process/--no-process", "run_process", default=True,
              help="Process right away (default) or only spool for the daemon.")
@click.pass_obj
def ingest(app: App, files: tuple[str, ...], maildir: str | None, notify: bool, run_process: bool) -> None:
    """Accept messages from FILES, a Maildir, or stdin.

    Exits 0 when every message is accepted, 65 when one is not a mail at all,
    75 when the database is unavailable (the MTA should retry).
    """
    from maildesk.process import process_many  # brings the desk logic and templates, which other commands skip

    # What is loaded by now lives as long as the command: the garbage collector
    # need not walk it again at each full collection of a long import.
    gc.freeze()
    unusable = 0
    source = "maildir" if maildir else "cli"
    with temporary_failures_exit():
        for batch in _batches(_read_inputs(files, maildir), SPOOL_BATCH):
            accepted: list[tuple[str, spool.Item]] = []
            for name, raw in batch:
                reason = unusable_reason(raw)
                if reason is None:
                    accepted.append((name, spool.Item(raw, source, notify=notify)))
                else:
                    click.echo(f"maildesk: {name}: not accepted: {reason}", err=True)
                    unusable += 1
            spooled = _spool(app, [item for _, item in accepted])
            for (name, _), row in zip(accepted, spooled, strict=True):
                log.info("accepted", inbound_id=row.id, file=name, duplicate=row.duplicate)
            if not run_process:
                continue
            # Parsed before the processing transaction opens, so it holds the database only to write.
            parsed = {row.id: parse(item.raw) for (_, item), row in zip(accepted, spooled, strict=True)
                      if not row.duplicate}
            outcomes = process_many(app.db, app.config, [row.id for row in spooled], parsed=parsed)
            for (name, _), outcome in zip(accepted, outcomes, strict=True):
                if outcome.state == spool.FAILED:
                    click.echo(f"maildesk: {name}: accepted, processing failed: {outcome.detail}", err=True)
    if unusable:
        sys.exit(EX_DATAERR)


def _spool(app: App, items: list[spool.Item]) -> list[spool.Spooled]:
    """Commit ``items`` to the spool; any failure before the commit is a temporary one.

    Until the bytes are committed the MTA still holds the mail: whatever went
    wrong (no database directory, a corrupt file, a bug), exit 75 so it retries
    rather than bounce it.
    """
    try:
        return spool.put_many(app.db, items)
    except TemporaryFailure:
        raise
    except Exception as exc:  # noqa: BLE001 - see above: never exit 1 with the mail in limbo
        error = traceback.format_exception_only(exc)[-1].strip().splitlines()[0]
        log.error("cannot store the message", error=error, traceback=traceback.format_exc())
        raise TemporaryFailure(f"cannot store the message: {error}") from exc


def _batches(
    items: Iterator[tuple[str, bytes]], size: int, max_bytes: int = SPOOL_BATCH_BYTES
) -> Iterator[list[tuple[str, bytes]]]:
    """Group inputs so a Maildir import costs one spool commit and one processing commit per ``size``
    messages, or fewer when they are large (a batch is held in memory, parsed, until it is processed)."""
    batch: list[tuple[str, bytes]] = []
    held = 0
    for item in items:
        batch.append(item)
        held += len(item[1])
        if len(batch) == size or held >= max_bytes:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


@click.command()
@click.argument("file", type=click.File("rb"))
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON object.")
@click.pass_obj
def inspect(app: App, file: Any, as_json: bool) -> None:
    """Show how maildesk reads one message, without storing anything."""
    parsed = parse(file.read())
    verdict = classify.classify(
        parsed.message,
        parsed.sender.address,
        loop_ids=[a.address for a in app.config.addresses],
        own_domains=[app.config.desk.domain],
    )
    data = present.inspected(parsed, verdict)
    if as_json:
        emit_json(data)
        return
    people = lambda items: ", ".join(who(a) for a in items) or "-"  # noqa: E731
    rows = [
        ("From", who(data["from"])), ("To", people(data["to"])), ("Cc", people(data["cc"])),
        ("Reply-To", people(data["reply_to"])), ("Subject", data["subject"]), ("Date", data["date"] or "-"),
        ("Message-ID", data["message_id"] + (" (synthesized)" if parsed.message_id_synthesized else "")),
        ("In-Reply-To", " ".join(data["in_reply_to"]) or "-"), ("References", " ".join(data["references"]) or "-"),
        ("Class", f"{verdict.kind} ({verdict.reason})"), ("HTML", "yes" if parsed.html else "no"),
    ]
    for label, value in rows:
        click.echo(f"{label + ':':<13}{value}")
    for item in data["attachments"]:
        sent_as = f"sent as {item['filename']!r}" if item["filename"] is not None else "sent without a name"
        click.echo(f"{'Attachment:':<13}{item['safe_filename']} ({item['content_type']}, {item['size']} bytes, "
                   f"{sent_as}, sha256 {item['sha256'][:16]}…)")
    for defect in data["defects"]:
        click.echo(f"{'Defect:':<13}{defect}")
    click.echo("\n--- new text ---\n" + data["new_text"] + "\n--- full text ---\n" + data["text"])
