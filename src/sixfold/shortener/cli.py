"""`sixfold shortener ...`: the shortener's commands (purge now; clicks aggregation)."""

from __future__ import annotations

from typing import Optional

import typer

shortener_app = typer.Typer(help="URL shortener: purge expired links, aggregate clicks.", no_args_is_help=True)


@shortener_app.command("purge")
def purge(
    now: Optional[str] = typer.Option(None, help="ISO-8601 UTC instant to purge up to (default: now)"),
    days_back: int = typer.Option(7, "--days-back", min=-1,
                                  help="expiry days looked at before today's (-1: the longest life of a link)"),
) -> None:
    """Delete expired links now (as the url_expiry DAG does daily): each becomes a tombstone that answers
    410, and its key is never issued again."""
    from sixfold.cli import console, settings_or_exit
    from sixfold.platform.schema import parse_timestamp
    from sixfold.shortener.links import purge_expired

    settings = settings_or_exit()
    try:
        when = parse_timestamp(now) if now else None
    except ValueError as exc:
        console.print(f"[red]--now {now!r} is not an ISO-8601 time:[/red] {exc}")
        raise typer.Exit(2) from None
    report = purge_expired(settings, when, days_back)
    for day in report["days"]:
        typer.echo(f"{day['day']}: {day['expired']:,} expired")
    typer.echo(f"purged {report['purged']:,} expired link(s) as of {report['as_of']}; "
               f"{report['kept']:,} index entries not yet due or already gone")


@shortener_app.command("clicks")
def clicks(
    start: Optional[str] = typer.Option(None, help="ISO-8601 UTC hour, inclusive (default: the previous hour)"),
    end: Optional[str] = typer.Option(None, help="ISO-8601 UTC hour, exclusive (default: the end of this hour)"),
    land_pending: bool = typer.Option(True, "--land/--no-land", help="first land pending click events"),
) -> None:
    """Count clicks per link, hour, referrer and browser (the url_clicks DAG's Spark job, run in this process);
    GET /v1/urls/{key}/stats serves the result."""
    from datetime import UTC, datetime, timedelta

    from sixfold.cli import console, settings_or_exit
    from sixfold.platform.spark import get_session
    from sixfold.platform.store import open_store
    from sixfold.shortener.click_job import count_clicks, hour_floor
    from sixfold.shortener.clicks import land_clicks

    settings = settings_or_exit()
    now = hour_floor(datetime.now(UTC))
    try:
        lo = hour_floor(start) if start else now - timedelta(hours=1)
        hi = hour_floor(end) if end else now + timedelta(hours=1)
    except ValueError as exc:
        console.print(f"[red]bad --start/--end:[/red] {exc}")
        raise typer.Exit(2) from None
    if land_pending:
        report = land_clicks(settings, idle_timeout_s=0.5)
        typer.echo(f"landed {report.landed:,} click(s), {report.rejected:,} rejected")
    store = open_store(settings)
    with console.status("counting clicks (the first Spark start takes a while) ..."):
        spark = get_session(settings, app_name="url_clicks")
        try:
            count_clicks(spark, settings, store, lo, hi, say=typer.echo)
        finally:
            store.close()
