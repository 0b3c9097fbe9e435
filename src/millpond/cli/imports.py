"""``millpond import``: backfill history from CSV / JSONL files, and follow uploaded imports.

``people`` and ``events`` check the file first (columns, encoding) so a typo is reported
without a server; then the source is resolved through the admin API and the rows go to
the collector's ``/v1/import`` with the source's write key. Everything about reading,
batching and resuming lives in :mod:`millpond.backfill`, shared with the API's upload
endpoint (``POST /api/imports``), whose jobs ``list`` and ``status`` show.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from millpond.backfill import (
    HttpSink,
    ImportAborted,
    ImportInputError,
    ImportOptions,
    ImportProgress,
    ImportSummary,
    preflight,
    run_import,
)
from millpond.cli.client import AdminClient, ApiError
from millpond.cli.common import admin_client, connection_options, json_option, twin_of
from millpond.cli.output import console, err_console, fail, print_json, print_table
from millpond.timeutil import format_seconds

IMPORT_KINDS = ("import", "pipelines")
_DELIMITER_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}


@click.group("import")
@connection_options
def import_group() -> None:
    """Backfill people (CSV) or events (CSV / JSONL) into a source; follow uploaded imports.

    Re-running a command is safe: each row gets a deterministic messageId and
    the server drops duplicates; an interrupted import resumes after the last
    acknowledged batch.
    """


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by ``people`` and ``events`` (applied bottom-up, shown top-down)."""
    options = [
        click.option("--source", "source_name", required=True, metavar="NAME",
                     help="Source to import into (kind 'import' or 'pipelines')."),
        click.option("--timestamp-column", metavar="C", default=None,
                     help="Column with the time of each row: Unix seconds or ISO 8601."),
        click.option("--delimiter", metavar="D", default=None,
                     help="Field delimiter (default: sniffed among , ; TAB |); 'tab' works."),
        click.option("--types", default="infer", show_default=True, metavar="infer|text",
                     help="infer: numbers, true/false and ISO dates are typed; text: all strings."),
        click.option("--empty", default="skip", show_default=True, metavar="skip|clear",
                     help="Empty cell: skip = not sent; clear = sent as null."),
        click.option("--errors", "errors_path", type=click.Path(dir_okay=False), default=None,
                     help="Error report CSV (default: FILE.errors.csv)."),
        click.option("--state-dir", type=click.Path(file_okay=False), default=None,
                     help="Directory for the resume checkpoint (default: next to the report)."),
        click.option("--resume/--no-resume", default=True, show_default=True,
                     help="Continue after the last acknowledged batch of an earlier run."),
        click.option("--batch-size", type=int, default=1000, show_default=True, metavar="N",
                     help="Events per request."),
        click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


# people and events are the twins of an upload: the same import, with the file read here
# (resumable from this machine) rather than sent to the server first.
@import_group.command("people")
@twin_of("POST /api/imports")
@click.argument("file", metavar="FILE.csv")
@click.option("--id-column", metavar="C", default=None,
              help="Column with the person's id (default: id, user_id, userId or email).")
@_common
@connection_options
@click.pass_context
def people_command(ctx: click.Context, file: str, id_column: str | None, **kwargs: Any) -> None:
    """Import people from a CSV file: one identify call per row, other columns as traits."""
    _run(ctx, file, "people", {"id_column": id_column}, **kwargs)


@import_group.command("events")
@twin_of("POST /api/imports")
@click.argument("file", metavar="FILE.csv|FILE.jsonl")
@click.option("--user-column", metavar="C", default=None,
              help="User id column (default user_id).")
@click.option("--event-column", metavar="C", default=None,
              help="Event name column (default event).")
@click.option("--format", "file_format", default=None, metavar="csv|jsonl",
              help="File format (default: from the extension, else the content).")
@_common
@connection_options
@click.pass_context
def events_command(
    ctx: click.Context,
    file: str,
    user_column: str | None,
    event_column: str | None,
    file_format: str | None,
    **kwargs: Any,
) -> None:
    """Import events: CSV (user, event, timestamp columns; the rest are properties) or
    JSONL (one Segment message per line; type defaults to track)."""
    specific = {"user_column": user_column, "event_column": event_column, "format": file_format}
    _run(ctx, file, "events", specific, **kwargs)


def _run(
    ctx: click.Context,
    file: str,
    kind: str,
    specific: dict[str, Any],
    *,
    source_name: str,
    timestamp_column: str | None,
    delimiter: str | None,
    types: str,
    empty: str,
    errors_path: str | None,
    state_dir: str | None,
    resume: bool,
    batch_size: int,
    as_json: bool,
) -> None:
    path = Path(file)
    if delimiter is not None:
        delimiter = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    options = ImportOptions(
        kind=kind,
        timestamp_column=timestamp_column,
        delimiter=delimiter,
        types=types,
        empty=empty,
        errors_path=Path(errors_path) if errors_path else None,
        state_dir=Path(state_dir) if state_dir else None,
        resume=resume,
        batch_size=batch_size,
        **specific,
    )
    try:
        preflight(path, options)
    except ImportInputError as exc:
        fail(str(exc))
    client = admin_client()
    source = _resolve_source(client, source_name)
    options.source = source.get("id") or source_name
    with HttpSink(client.url, source["write_key"]) as sink:
        summary = _import_with_progress(path, options, sink, quiet=as_json)
    if as_json:
        print_json(summary.to_dict())
    else:
        _print_summary(summary)


def _resolve_source(client: AdminClient, name: str) -> dict[str, Any]:
    try:
        source = client.get(f"/api/sources/{quote(name, safe='')}")
    except ApiError as exc:
        if exc.status == 404:
            fail(f"source {name!r} not found (see `millpond sources list`)")
        fail(str(exc))
    finally:
        client.close()
    kind = source.get("kind")
    if kind not in IMPORT_KINDS:
        fail(f"source {name!r} is a {kind!r} source; "
             "imports need an 'import' or 'pipelines' source")
    if not source.get("write_key"):
        fail(f"source {name!r} has no write key")
    return source


def _import_with_progress(
    path: Path, options: ImportOptions, sink: HttpSink, quiet: bool
) -> ImportSummary:
    progress = Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rows]:>12,} rows"),
        TextColumn("{task.fields[rate]:>9,.0f} rows/s"),
        TimeRemainingColumn(),
        console=err_console,
        disable=quiet or not err_console.is_terminal,
    )
    task: TaskID | None = None
    first_rows: int | None = None

    def update(p: ImportProgress) -> None:
        nonlocal task, first_rows
        if first_rows is None:
            first_rows = p.rows_read
        rate = (p.rows_read - first_rows) / p.elapsed if p.elapsed > 0 else 0.0
        if task is None:
            task = progress.add_task(f"importing {path.name}", total=p.total_bytes, rows=0, rate=0)
        progress.update(task, completed=p.bytes_read, rows=p.rows_read, rate=rate)

    try:
        with progress:
            return run_import(path, options, sink, update)
    except ImportInputError as exc:
        fail(str(exc))
    except ImportAborted as exc:
        done = exc.summary
        fail(f"{exc}. {done.events_accepted:,} events accepted so far; run the same command "
             f"again to resume after row {done.last_row}")
    except KeyboardInterrupt:
        fail("interrupted; run the same command again to resume after the last acknowledged "
             "batch", code=130)


def _print_summary(summary: ImportSummary, where: str = "") -> None:
    if summary.already_completed:
        console.print(f"{summary.file} was already imported (checkpoint {summary.checkpoint}); "
                      "use --no-resume to send it again (duplicates are dropped by messageId).")
    table = Table(title=f"import {summary.kind}: {summary.file}", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows = [
        ("rows read", f"{summary.rows_read:,}"),
        ("events accepted", f"{summary.events_accepted:,}"),
        ("duplicates (already stored)", f"{summary.duplicates:,}"),
        ("rows rejected", f"{summary.rows_rejected:,}"),
    ]
    rows += [(f"  {reason}", f"{count:,}") for reason, count in
             sorted(summary.rejected_by_reason.items(), key=lambda kv: -kv[1])]
    if summary.blank_rows:
        rows.append(("blank rows ignored", f"{summary.blank_rows:,}"))
    if summary.resumed_after_row:
        rows.append(("resumed after row", f"{summary.resumed_after_row:,}"))
    rows += [
        ("elapsed", f"{summary.elapsed_seconds:,.1f} s"),
        ("rate", f"{summary.rows_per_second:,.0f} rows/s"),
    ]
    for label, value in rows:
        table.add_row(label, value)
    console.print(table)
    for warning in summary.warnings:
        console.print(f"warning: {warning}")
    if summary.error_report:
        console.print(f"rejected rows are listed in {summary.error_report}{where}")


# -- imports uploaded to the server (POST /api/imports) ---------------------------------

def _client(ctx: click.Context) -> AdminClient:
    return admin_client()


def _get(ctx: click.Context, path: str) -> Any:
    client = _client(ctx)
    try:
        return client.get(path)
    except ApiError as exc:
        fail(str(exc))
    finally:
        client.close()


def _counts(job: dict[str, Any]) -> dict[str, Any]:
    """Rows read, accepted and rejected: live progress while running, else the summary."""
    figures = job.get("progress") or job.get("summary") or {}
    return {key: figures.get(key) for key in ("rows_read", "events_accepted", "rows_rejected")}


def _created(job: dict[str, Any]) -> str:
    return format_seconds(round(job["created_at"])) if job.get("created_at") else ""


@import_group.command("upload")
@twin_of("POST /api/imports")
@click.argument("file", metavar="FILE.csv|FILE.jsonl",
                type=click.Path(exists=True, dir_okay=False))
@click.option("--source", "source_name", required=True, metavar="NAME",
              help="Source to import into (kind 'import' or 'pipelines').")
@click.option("--kind", type=click.Choice(["people", "events"]), default=None,
              help="people: one identify per row; events: one event per row (CSV or "
                   "JSONL). Default: events for JSON lines, else people; a CSV with an "
                   "`event` column must say.")
@click.option("--id-column", metavar="C", default=None, help="people: the user id column.")
@click.option("--user-column", metavar="C", default=None, help="events: the user id column.")
@click.option("--event-column", metavar="C", default=None, help="events: the event name column.")
@click.option("--timestamp-column", metavar="C", default=None,
              help="Column with the time of each row: Unix seconds or ISO 8601.")
@click.option("--delimiter", metavar="D", default=None,
              help="Field delimiter (default: sniffed among , ; TAB |); 'tab' works.")
@click.option("--types", type=click.Choice(["infer", "text"]), default="infer",
              show_default=True, help="infer: numbers, booleans and dates are typed.")
@click.option("--empty", type=click.Choice(["skip", "clear"]), default="skip",
              show_default=True, help="Empty cell: skip = not sent; clear = sent as null.")
@click.option("--format", "file_format", type=click.Choice(["csv", "jsonl"]), default=None,
              help="File format (default: from the extension, else the content).")
@click.option("--watch", is_flag=True, help="Show a progress bar until the import ends.")
@json_option
@connection_options
@click.pass_context
def upload_command(ctx: click.Context, file: str, source_name: str, kind: str | None,
                   file_format: str | None, delimiter: str | None, watch: bool,
                   as_json: bool, **columns: Any) -> None:
    """Upload a file for the server to import in the background (survives this command:
    follow it with `import status ID`); `people` and `events` instead read the file here."""
    path = Path(file)
    if delimiter is not None:
        delimiter = _DELIMITER_NAMES.get(delimiter.lower(), delimiter)
    jsonl = file_format == "jsonl" or (file_format is None and path.suffix.lower() in (
        ".jsonl", ".ndjson"))
    params = {"source": source_name, "kind": kind, "file_name": path.name,
              "delimiter": delimiter, "format": file_format, **columns}
    client = _client(ctx)
    try:
        with open(path, "rb") as body:
            job = client.request(
                "POST", "/api/imports", params={k: v for k, v in params.items() if v is not None},
                content=body, headers={"Content-Type": "application/x-ndjson" if jsonl
                                       else "text/csv"})
    except ApiError as exc:
        fail(str(exc))
    finally:
        client.close()
    if watch:
        job = _watch(ctx, f"/api/imports/{quote(job['id'], safe='')}", quiet=as_json)
    if as_json:
        print_json(job)
    elif watch:
        _print_job(job)
    else:
        console.print(f"uploaded {path.name}: import {job['id']} is {job['state']}; follow it "
                      f"with: millpond import status {job['id']} --watch")


@import_group.command("list")
@twin_of("GET /api/imports")
@json_option
@connection_options
@click.pass_context
def list_command(ctx: click.Context, as_json: bool) -> None:
    """Imports uploaded to the server, newest first (the last 100)."""
    jobs = _get(ctx, "/api/imports")["imports"]
    if as_json:
        print_json(jobs)
        return
    rows = [{"id": job["id"], "state": job["state"], "kind": job["kind"], "file": job["file"],
             "source": job["source_id"], **_counts(job), "created": _created(job)}
            for job in jobs]
    print_table(rows, ["id", "state", "kind", "file", "source", "rows_read", "events_accepted",
                       "rows_rejected", "created"])


@import_group.command("status")
@twin_of("GET /api/imports/{job_id}")
@click.argument("job_id", metavar="ID")
@click.option("--watch", is_flag=True, help="Show a progress bar until the import ends.")
@json_option
@connection_options
@click.pass_context
def status_command(ctx: click.Context, job_id: str, watch: bool, as_json: bool) -> None:
    """An uploaded import's state, progress and, once it ended, its summary."""
    path = f"/api/imports/{quote(job_id, safe='')}"
    job = _watch(ctx, path, quiet=as_json) if watch else _get(ctx, path)
    if as_json:
        print_json(job)
    else:
        _print_job(job)


def _watch(ctx: click.Context, path: str, quiet: bool, every: float = 0.5) -> dict[str, Any]:
    """Poll the job until it leaves ``running``; a progress bar on a terminal meanwhile."""
    progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                        DownloadColumn(),
                        TextColumn("{task.fields[rows]:>12,} rows"), TimeRemainingColumn(),
                        console=err_console, disable=quiet or not err_console.is_terminal)
    job = _get(ctx, path)
    with progress:
        task = progress.add_task(f"import {job['id']}", total=None, rows=0)
        while job["state"] == "running":
            live = job.get("progress") or {}
            progress.update(task, total=live.get("total_bytes"),
                            completed=live.get("bytes_read", 0), rows=live.get("rows_read", 0))
            time.sleep(every)
            job = _get(ctx, path)
    return job


def _print_job(job: dict[str, Any]) -> None:
    console.print(f"import {job['id']}: {job['state']} ({job['kind']} from "
                  f"{job['file']} into source {job['source_id']}, started {_created(job)})",
                  highlight=False)
    live = job.get("progress")
    if job["state"] == "running" and live:
        done = f" of {live['total_bytes']:,}" if live.get("total_bytes") else ""
        console.print(f"{live['rows_read']:,} rows read ({live['bytes_read']:,}{done} bytes), "
                      f"{live['events_accepted']:,} events accepted, "
                      f"{live['rows_rejected']:,} rows rejected", highlight=False)
    elif job["state"] == "running":
        console.print("no rows read yet", highlight=False)
    if job.get("summary"):
        known = {f.name for f in fields(ImportSummary)}
        summary = ImportSummary(**{k: v for k, v in job["summary"].items() if k in known})
        _print_summary(summary, where=" on the server")
    if job.get("error"):
        console.print(f"error: {job['error']}", highlight=False)


def _post(ctx: click.Context, path: str) -> Any:
    client = _client(ctx)
    try:
        return client.post(path)
    except ApiError as exc:
        fail(str(exc))
    finally:
        client.close()


@import_group.command("cancel")
@twin_of("POST /api/imports/{job_id}/cancel")
@click.argument("job_id", metavar="ID")
@json_option
@connection_options
@click.pass_context
def cancel_command(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Stop a running uploaded import at its next checkpoint (rows stored so far stay;
    `import resume ID` continues it)."""
    job = _post(ctx, f"/api/imports/{quote(job_id, safe='')}/cancel")
    if as_json:
        print_json(job)
    else:
        _print_job(job)


@import_group.command("resume")
@twin_of("POST /api/imports/{job_id}/resume")
@click.argument("job_id", metavar="ID")
@click.option("--watch", is_flag=True, help="Show a progress bar until the import ends.")
@json_option
@connection_options
@click.pass_context
def resume_command(ctx: click.Context, job_id: str, watch: bool, as_json: bool) -> None:
    """Continue a failed, interrupted or cancelled uploaded import after its checkpoint."""
    path = f"/api/imports/{quote(job_id, safe='')}"
    job = _post(ctx, f"{path}/resume")
    if watch:
        job = _watch(ctx, path, quiet=as_json)
    if as_json:
        print_json(job)
    elif watch:
        _print_job(job)
    else:
        console.print(f"import {job['id']} is {job['state']} again; follow it with: "
                      f"millpond import status {job['id']} --watch", highlight=False)
