"""`sixfold crawl ...`: run a crawl, serve the local test site."""

from __future__ import annotations

import typer

crawl_app = typer.Typer(help="Web crawler: a polite, trap-proof crawl of seed URLs; a local test site to crawl.",
                        no_args_is_help=True)

# `run` (sixfold.crawler.run) and `site` (sixfold.crawler.site) register their commands below.


ALLOW_HOST = typer.Option([], "--allow-host", help="host, address or CIDR the SSRF guard lets through, e.g. "
                                                      "127.0.0.2 or 127.0.0.0/8 (repeatable)")


@crawl_app.command("run")
def run(
    seeds: str = typer.Option(..., "--seeds", help="file with one seed URL a line (# comments allowed)"),
    max_pages: int = typer.Option(..., "--max-pages", min=1, help="stop after this many fetches"),
    allow_host: list[str] = ALLOW_HOST,
    concurrency: int | None = typer.Option(None, "--concurrency", min=1,
                                           help="fetches in flight (default SIXFOLD_CRAWLER_CONCURRENCY, 16)"),
    partition: str | None = typer.Option(None, "--partition", metavar="i/N",
                                         help="be worker i of N (0 <= i < N) sharing the frontier: fetch only the "
                                              "hosts whose hash is i, hand the others' links to them, stop when all "
                                              "N are out of work; --max-pages is this worker's"),
) -> None:
    """Crawl from the seeds, politely, into var/lake/crawl/pages/; rerun to resume an interrupted crawl.
    Several processes: start `--partition 0/N` .. `--partition N-1/N` with the same SIXFOLD_HOME (or store)."""
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from sixfold.crawler.partition import parse_partition
    from sixfold.crawler.run import crawl, read_seeds
    from sixfold.platform.settings import Settings, SettingsError

    console = Console(stderr=True)
    try:
        worker = parse_partition(partition) if partition is not None else None
        settings = Settings.from_env()
        seed_urls = read_seeds(Path(seeds))
    except (SettingsError, ValueError) as exc:
        console.print(f"[red]cannot crawl:[/red] {exc}")
        raise typer.Exit(2) from None
    columns = (TextColumn("crawling"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        bar = progress.add_task("crawl", total=max_pages)
        try:
            report = crawl(settings, seed_urls, max_pages, allow_host, concurrency=concurrency, partition=worker,
                           progress=lambda done, _total: progress.update(bar, completed=done))
        except ValueError as exc:
            console.print(f"[red]cannot crawl:[/red] {exc}")
            raise typer.Exit(2) from None
    table = Table(title=f"crawl {report.cycle_id}", show_header=False)
    if report.partition is not None:
        table.add_row("partition", f"worker {report.partition} (round {report.round}): {report.offered:,} links "
                                   f"offered to other workers, {report.adopted:,} taken from them")
    for name, value in (
        ("pages", f"{report.pages:,}"),
        ("duplicates", f"{report.duplicates:,} ({report.exact_duplicates} exact, {report.near_duplicates} near)"),
        ("dropped", ", ".join(f"{r} {n}" for r, n in sorted(report.dropped.items())) or "none"),
        ("errors", f"{report.errors:,}"),
        ("pages/s", f"{report.pages_per_s:,.1f} over {report.seconds:,.1f} s"),
        ("resumed", f"{report.resumed:,} queued URLs from an earlier run" if report.resumed else "fresh"),
        ("left queued", f"{report.queued_left:,}"),
        ("deferred hosts", ", ".join(report.deferred_hosts) or "none"),
    ):
        table.add_row(name, value)
    Console().print(table)
    for url, error in report.error_samples.items():
        console.print(f"[dim]error {url}: {error}[/dim]")


@crawl_app.command("site")
def site(
    hosts: int = typer.Option(5, "--hosts", min=1, max=250, help="hosts, served on 127.0.0.2, 127.0.0.3, ..."),
    pages: int = typer.Option(30, "--pages", min=12, help="normal content pages per host"),
    seed: int = typer.Option(7, "--seed", help="same seed, same site"),
    port: int = typer.Option(8800, "--port", min=0, max=65535, help="one port for every host (0: a free one)"),
    no_delay: bool = typer.Option(False, "--no-delay", help="no Crawl-delay in any robots.txt (benchmarks)"),
    no_traps: bool = typer.Option(False, "--no-traps", help="leave the infinite trap families out"),
    slow_ms: float | None = typer.Option(None, "--slow-ms", min=0,
                                         help="extra latency of the slow host, ms (default: SiteSpec's, 50)"),
) -> None:
    """Serve the crawler's generated test site until Ctrl-C; write its seeds, truth and access log
    under var/crawl/site/ (seeds.txt works with `sixfold crawl run --seeds`)."""
    from sixfold.crawler.site import SiteSpec, SiteSpecError
    from sixfold.crawler.site_server import SiteServerError, serve_until_signal
    from sixfold.platform.settings import Settings, SettingsError

    try:
        settings = Settings.from_env()
        spec = SiteSpec(hosts=hosts, pages_per_host=pages, seed=seed, traps=not no_traps,
                        crawl_delay_s=0.0 if no_delay else SiteSpec.crawl_delay_s,
                        slow_host_latency_s=SiteSpec.slow_host_latency_s if slow_ms is None else slow_ms / 1000.0)
        spec.validate()
        serve_until_signal(spec, port, settings.var / "crawl" / "site", say=typer.echo)
    except (SettingsError, SiteSpecError, SiteServerError) as exc:
        typer.echo(f"cannot serve the site: {exc}", err=True)
        raise typer.Exit(2) from None
