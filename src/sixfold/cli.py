"""The `sixfold` command: services, demo, serve, benchmarks, and one group per system."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console

from sixfold.platform.settings import Settings, SettingsError

app = typer.Typer(
    help="Sixfold: six classic large-scale systems as one data platform. "
    "Every command reads SIXFOLD_HOME (default: the current directory) for var/ and SIXFOLD_PROFILE "
    "(embedded, the default, needs no server; cluster uses Kafka, Cassandra and a Spark master).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
services_app = typer.Typer(help="Local Apache Kafka (KRaft) and Apache Cassandra as Java processes on 127.0.0.1, "
                                "and on the cluster profile Memcached (Debian) and a Spark standalone master "
                                "and worker (pyspark's jars).",
                           no_args_is_help=True)
app.add_typer(services_app, name="services")
console = Console(stderr=True)


def settings_or_exit() -> Settings:
    """The checked settings, or exit 2 naming every bad value (before anything is started)."""
    from sixfold.platform.configuration import startup_settings

    try:
        return startup_settings()
    except SettingsError as exc:
        for _var, reason in exc.problems:
            console.print(f"[red]configuration error:[/red] {reason}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


config_app = typer.Typer(help="The configuration every command reads (SIXFOLD_* environment variables).",
                         no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check() -> None:
    """Print the effective configuration (value and source of each setting, secrets masked); exit 2 naming
    every bad value."""
    from rich.table import Table

    from sixfold.platform.configuration import check, effective, unknown_variables

    settings, problems = check()
    if settings is not None:
        table = Table("setting", "value", "source", title=f"Sixfold configuration (profile {settings.profile})")
        for row in effective(settings, bad=dict(problems)):
            table.add_row(row.name, row.value, row.source, style="red" if row.source.endswith("(BAD)") else None)
        Console(width=None if sys.stdout.isatty() else 200).print(table)
    for name in unknown_variables():
        console.print(f"[yellow]warning:[/yellow] {name} is set but no setting reads it (a typo?)", highlight=False,
                      soft_wrap=True)
    if problems:
        for var, reason in problems:
            console.print(f"[red]bad value[/red] {var}: {reason}", highlight=False, soft_wrap=True)
        console.print(f"{len(problems)} bad configuration value(s); nothing was started", highlight=False)
        raise typer.Exit(2)
    console.print("configuration ok", highlight=False)


ONLY = typer.Option(None, "--only", help="a service by name, as NAMES gives them (repeatable)")
NAMES = typer.Argument(None, metavar="[NAMES]...", show_default=False,
                       help="kafka, cassandra, memcached, spark-master, spark-worker, or spark (both); default: what "
                            "the profile uses (cluster: all of them)")


def picked_services(names: Optional[list[str]], only: Optional[list[str]], action: Any) -> list[str]:
    """`action(settings, names)` on the services named (positionally or with --only); exit 1 naming a bad one."""
    settings = settings_or_exit()  # outside the try: its typer.Exit(2) is a RuntimeError too
    try:
        return action(settings, [*(names or []), *(only or [])] or None)
    except (RuntimeError, ValueError) as exc:
        console.print(f"[red]services failed:[/red] {exc}")
        raise typer.Exit(1) from None


@services_app.command("up")
def services_up(names: Optional[list[str]] = NAMES, only: Optional[list[str]] = ONLY) -> None:
    """Fetch the jars from Maven Central (cached; Spark's come with pyspark), write configs, start and wait until
    healthy."""
    from sixfold.platform import services

    def up(settings: Settings, chosen: Optional[list[str]]) -> list[str]:
        return services.up(settings, chosen, log=lambda m: console.print(f"[dim]{m}[/dim]"))

    for line in picked_services(names, only, up):
        typer.echo(line)


@services_app.command("down")
def services_down(names: Optional[list[str]] = NAMES, only: Optional[list[str]] = ONLY) -> None:
    """Stop the local servers cleanly (SIGTERM, then SIGKILL after 60 s), in the reverse order of up."""
    from sixfold.platform import services

    for line in picked_services(names, only, services.down):
        typer.echo(line)


@services_app.command("status")
def services_status(names: Optional[list[str]] = NAMES, only: Optional[list[str]] = ONLY) -> None:
    """Show whether each server runs and what version it reports."""
    from sixfold.platform import services

    lines = picked_services(names, only, services.status)
    for line in lines:
        typer.echo(line)
    if any("healthy" not in line for line in lines):
        raise typer.Exit(3)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="interface to bind"),
          port: int = typer.Option(8000, help="TCP port"),
          workers: int = typer.Option(1, help="uvicorn worker processes"),
          consumers: bool = typer.Option(True, "--consumers/--no-consumers",
                                         help="embedded profile: run every stream consumer (post fanout and "
                                              "search indexing, follow and search-event landing) in this process, "
                                              "so writes show up live; the cluster profile runs them as their own "
                                              "processes (streams/*.py, compose services)")) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json), with the stream consumers on the embedded profile."""
    import uvicorn

    settings = settings_or_exit()
    # Every worker and the consumer threads count into one directory, so /metrics answers for all of them;
    # prometheus_client picks its storage when first imported, hence before anything that counts is. One
    # directory per server (host and port): another server on the same SIXFOLD_HOME neither empties this
    # one's counts at its start nor reports them as its own.
    import socket

    metrics_dir = os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                                        str(settings.var / "metrics" / f"{socket.gethostname()}-{port}"))
    os.makedirs(metrics_dir, exist_ok=True)
    for name in os.listdir(metrics_dir):
        if name.endswith(".db"):  # the previous server's counts
            os.unlink(os.path.join(metrics_dir, name))
    if settings.profile == "cluster":  # fail now, with the fix, rather than on the first request
        from sixfold.platform.bus import open_bus
        from sixfold.platform.store import open_store

        open_store(settings).close()
        open_bus(settings).close()
    live = None
    if consumers and settings.profile == "embedded":
        from sixfold.live import start_consumers

        live = start_consumers(settings)  # in this process: one consumer per group, whatever --workers says
        console.print(f"consumers running: {', '.join(c.name for c in live.consumers)} (--no-consumers turns "
                      "them off)", highlight=False)
    if not settings.typeahead_url:  # where peers forward requests for this server's typeahead shards
        reachable = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
        reachable = f"[{reachable}]" if ":" in reachable else reachable  # an IPv6 address
        os.environ["SIXFOLD_TYPEAHEAD_URL"] = f"http://{reachable}:{port}"
    try:
        uvicorn.run("sixfold.api.app:create_asgi", factory=True, host=host, port=port, workers=workers,
                    log_level="warning", access_log=False)
    finally:
        if live is not None:
            live.stop()


@app.command()
def demo(events: int = typer.Option(20_000, min=1, help="typeahead: synthetic search events to generate"),
         serve_after: bool = typer.Option(True, "--serve/--no-serve", help="serve on 127.0.0.1:8000 afterwards"),
         port: int = typer.Option(8000, help="port to serve on"),
         sample: bool = typer.Option(False, "--sample", help="also run the platform's sample job via spark-submit")) -> None:
    """Run every built system once on generated data (typeahead, feed, crawler, shortener, chat, docs), say what each did,
    then serve."""
    import json

    from sixfold.demo import (
        run_chat,
        run_crawler,
        run_docs,
        run_feed,
        run_sample_pipeline,
        run_shortener,
        run_typeahead,
    )
    from sixfold.platform.spark import get_session

    settings = settings_or_exit()
    console.print(f"[bold]Sixfold demo[/bold] in {settings.home} (profile {settings.profile})")
    say = lambda m: console.print(f"  [green]✓[/green] {m}", highlight=False)  # noqa: E731
    summary: dict = {}
    with console.status("typeahead: collect, aggregate (Spark), build and swap the trie ..."):
        summary["typeahead"] = run_typeahead(settings, events, say=say)
        if sample:
            summary["sample"] = run_sample_pipeline(settings, min(events, 5000), say=say)
    spark = get_session(settings, app_name="sixfold-demo")
    try:
        with console.status("feed: graph, photos, posts, stories, timelines job, search index ..."):
            summary["feed"] = run_feed(settings, spark, say=say)
        with console.status("crawler: local site, crawl, Spark dedup ..."):
            summary["crawler"] = run_crawler(settings, spark, say=say)
        with console.status("shortener: links, redirects, click landing, the url_clicks Spark job ..."):
            summary["shortener"] = run_shortener(settings, spark, say=say)
        with console.status("chat: a scripted conversation with a device coming back online ..."):
            summary["chat"] = run_chat(settings, say=say)
        with console.status("docs: two writers at once over the WebSocket, a restore, the history ..."):
            summary["docs"] = run_docs(settings, say=say)
    finally:
        spark.stop()
    out = settings.var / "demo" / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    feed = summary["feed"]
    base = f"http://127.0.0.1:{port}"
    console.print(f"[bold]Done.[/bold] Summary of every system in {out}:\n"
                  f"  typeahead  {summary['typeahead']['landed']:,} searches landed, trie {summary['typeahead']['version']}"
                  f"  -> {base}/typeahead\n"
                  f"  feed       {feed['users']:,} users, {feed['posts']:,} posts, celebrity user {feed['celebrity']}"
                  f"  -> {base}/feed/{feed['demo_user']}#token={feed['demo_token']} (you, signed in)\n"
                  f"  crawler    {summary['crawler']['pages']:,} pages, {summary['crawler']['dedup']['exact']} exact + "
                  f"{summary['crawler']['dedup']['near']} near duplicates  -> var/lake/crawl/\n"
                  f"  shortener  {summary['shortener']['links']:,} links, {summary['shortener']['redirects']:,} redirects;"
                  f" most clicked {base}/{summary['shortener']['top_key']}"
                  f" ({summary['shortener']['top_stats']['total']:,} clicks)  -> {base}/s\n"
                  f"  chat       {len(summary['chat']['messages'])} messages delivered to a device that came back"
                  f" online, ticks {' '.join(summary['chat']['ticks_seen_live'][-2:])}  -> {base}/chat\n"
                  f"  docs       {summary['docs']['edits']} edits by two writers at once, version "
                  f"{summary['docs']['version']}, restored v{summary['docs']['restored_to']}"
                  f"  -> {base}/docs/{summary['docs']['doc_id']}#token={summary['docs']['owner_token']}\n"
                  f"  Airflow UI: `sixfold airflow standalone`, then http://127.0.0.1:8080", highlight=False)
    if serve_after:
        console.print(f"serving on {base} (landing page: {base}/, API docs: {base}/api-docs); Ctrl-C stops")
        serve(host="127.0.0.1", port=port, workers=1, consumers=True)


@app.command()
def bench(system: str = typer.Argument(..., help="which system to benchmark"),
          quick: bool = typer.Option(False, "--quick", help="tiny sizes and short runs: a smoke test (< 90 s)"),
          phrases: Optional[int] = typer.Option(None, min=100, help="typeahead: phrases served (default 200,000)"),
          prefixes: Optional[int] = typer.Option(None, min=10, help="typeahead: prefixes replayed (default 20,000)"),
          duration: Optional[int] = typer.Option(None, min=1, help="typeahead, feed, shortener: wrk seconds (default 15)"),
          connections: Optional[int] = typer.Option(None, min=1, help="typeahead, feed, shortener, chat: client connections (default 64; feed, shortener 32; chat 1,000, even)"),
          log_rows: Optional[int] = typer.Option(None, min=1000, help="typeahead, pipeline: log rows aggregated (default 10M)"),
          build_phrases: Optional[int] = typer.Option(None, min=100,
                                                      help="typeahead: phrases in the trie build (default 1M)"),
          users: Optional[int] = typer.Option(None, min=10, help="feed: synthetic users (default 100,000)"),
          posts: Optional[int] = typer.Option(None, min=10, help="feed: synthetic posts (default 1,000,000)"),
          read_users: Optional[int] = typer.Option(None, min=1,
                                                   help="feed: users following celebrities cycled by wrk (default 2,000)"),
          hosts: Optional[int] = typer.Option(None, min=1, help="crawler: hosts of the test site (default 16)"),
          pages: Optional[int] = typer.Option(None, min=12, help="crawler: pages per host (default 150)"),
          links: Optional[int] = typer.Option(None, min=10, help="shortener: links created (default 100,000)"),
          ) -> None:
    """Benchmark a system against a peer side by side; JSON and a chart go to var/bench/."""
    available: dict[str, str] = {"typeahead": "serving vs RediSearch, aggregation Spark vs DuckDB, trie build",
                                 "feed": "fanout hybrid vs pure push, offline timeline job, timeline reads over HTTP",
                                 "crawler": "pages/s of our crawler vs Scrapy on the local test site, coverage",
                                 "shortener": "redirects/s and p99 vs nginx's map on the same keys, creations/s",
                                 "chat": "messages/s and p99 send -> delivered receipt vs ejabberd and a bare relay, "
                                         "memory per idle connection",
                                 "pipeline": "typeahead ingest+land events/s and memory, Kafka produce vs "
                                             "ProducerPerformance, aggregation Spark vs DuckDB",
                                 "docs": "the automerge-paper trace replayed by Loro (engine, HTTP), Yjs and "
                                         "loro-crdt in Node, a plain string; snapshot sizes"}
    if system not in available:
        names = ", ".join(sorted(available)) or "none yet (each system adds its own)"
        console.print(f"[red]no benchmark for {system!r}[/red]; available: {names}")
        raise typer.Exit(2)
    import importlib
    from dataclasses import replace

    # system -> (module, options class, {option field: the command-line value that overrides it})
    benches: dict[str, tuple[str, str, dict[str, Any]]] = {
        "typeahead": ("sixfold.typeahead.bench", "BenchOptions",
                      {"phrases": phrases, "prefixes": prefixes, "duration_s": duration, "connections": connections,
                       "log_rows": log_rows, "build_phrases": build_phrases}),
        "feed": ("sixfold.feed.bench", "FeedBenchOptions",
                 {"users": users, "posts": posts, "read_users": read_users, "duration_s": duration,
                  "connections": connections}),
        "crawler": ("sixfold.crawler.bench", "CrawlerBenchOptions", {"hosts": hosts, "pages_per_host": pages}),
        "shortener": ("sixfold.shortener.bench", "ShortenerBenchOptions",
                      {"links": links, "duration_s": duration, "connections": connections}),
        "chat": ("sixfold.chat.bench", "ChatBenchOptions", {"connections": connections}),
        "pipeline": ("sixfold.typeahead.bench_pipeline", "PipelineBenchOptions", {"agg_rows": log_rows}),
        "docs": ("sixfold.docs.bench", "DocsBenchOptions", {}),
    }
    settings = settings_or_exit()
    module_name, options_name, overrides = benches[system]
    module = importlib.import_module(module_name)
    options_class = getattr(module, options_name)
    opts = options_class.quick() if quick else options_class()
    opts = replace(opts, **{k: v for k, v in overrides.items() if v is not None})
    try:
        _, json_path, png_path = module.run(settings, opts, say=lambda m: console.print(f"[dim]{m}[/dim]"))
    except (RuntimeError, ValueError) as exc:
        console.print(f"[red]bench failed:[/red] {exc}")
        raise typer.Exit(1) from None
    typer.echo(f"wrote {json_path} and {png_path}")


# ---- typeahead ------------------------------------------------------------------------------------
typeahead_app = typer.Typer(help="Typeahead: synthetic search logs, ingesting them, building suggestions.",
                            no_args_is_help=True)
app.add_typer(typeahead_app, name="typeahead")


@typeahead_app.command("generate")
def typeahead_generate(
    rows: int = typer.Option(100_000, "--rows", min=1, help="how many search events"),
    out: str = typer.Option(..., "--out", help="file to write (.jsonl or .parquet)"),
    fmt: Optional[str] = typer.Option(None, "--format", help="jsonl or parquet (default: from the file name)"),
    start: Optional[str] = typer.Option(None, help="ISO-8601 UTC start (default: HOURS before the last whole hour)"),
    hours: float = typer.Option(2.0, min=0.01, help="the log spans this many hours"),
    seed: int = typer.Option(7, help="same seed, same log"),
) -> None:
    """A realistic synthetic search log: Zipf over multi-word English phrases, regions, timestamps."""
    from rich.progress import Progress

    from sixfold.typeahead.generate import default_window, write_log_jsonl, write_log_parquet

    kind = fmt or ("parquet" if out.endswith(".parquet") else "jsonl")
    if kind not in ("jsonl", "parquet"):
        console.print(f"[red]--format {kind!r}[/red]: choose jsonl or parquet")
        raise typer.Exit(2)
    try:
        begin, end = default_window(hours, start)
    except ValueError as exc:
        console.print(f"[red]--start {start!r} is not an ISO-8601 time:[/red] {exc}")
        raise typer.Exit(2) from None
    writer = write_log_parquet if kind == "parquet" else write_log_jsonl
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        console.print(f"[red]--out {out!r}: cannot create its directory:[/red] {exc.strerror or exc}")
        raise typer.Exit(2) from None
    with Progress(console=console) as progress:
        bar = progress.add_task(f"writing {rows:,} events", total=rows)
        written = writer(out, rows, begin, end, seed=seed, progress=lambda n: progress.advance(bar, n))
    typer.echo(f"wrote {written:,} search events from {begin.isoformat()} to {end.isoformat()} into {out}")


@typeahead_app.command("ingest")
def typeahead_ingest(file: str = typer.Argument(..., help="JSON lines {user_id, query, region, ts}")) -> None:
    """Check each line like POST /v1/search-events, publish the good ones, land them in the lake
    and keep each user's recent searches (the two consumers run in child processes while this one
    publishes)."""

    from sixfold.platform.bus import open_bus
    from sixfold.typeahead.collection import ingest_alongside, ingest_lines, read_lines

    if not Path(file).is_file():
        console.print(f"[red]no such file:[/red] {file}; give a JSON-lines file of search events")
        raise typer.Exit(2)
    settings = settings_or_exit()
    bus = open_bus(settings)
    try:
        sent, landed, remembered = ingest_alongside(settings, lambda: ingest_lines(bus, read_lines(file)))
    finally:
        bus.close()
    typer.echo(f"in {sent.read}  published {sent.published}  rejected {sent.rejected + landed.rejected}  "
               f"landed {landed.landed} in {len(landed.partitions)} partition(s)  "
               f"recent queries {remembered.remembered}")
    if sent.rejected + landed.rejected:
        typer.echo("rejected events are on search-events.dlq with the reason")


@typeahead_app.command("build")
def typeahead_build(until: Optional[str] = typer.Option(
        None, help="ISO-8601 UTC; aggregate every 15-minute window closed by then (default: now)")) -> None:
    """Aggregate every closed window up to --until, build the trie, validate it against a brute force,
    and swap it in (`sixfold serve` picks it up without dropping requests)."""
    from rich.progress import Progress

    from sixfold.platform.schema import parse_timestamp
    from sixfold.typeahead.pipeline import build_until

    settings = settings_or_exit()
    try:
        when = parse_timestamp(until) if until else None
    except ValueError as exc:
        console.print(f"[red]--until {until!r} is not an ISO-8601 time:[/red] {exc}")
        raise typer.Exit(2) from None
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("aggregating windows", total=None)
        try:
            build_until(settings, when, say=typer.echo,
                        progress=lambda done, total: progress.update(bar, completed=done, total=total))
        except ValueError as exc:
            console.print(f"[red]build failed:[/red] {exc}")
            raise typer.Exit(1) from None


# ---- crawler --------------------------------------------------------------------------------------
from sixfold.crawler.cli import crawl_app  # noqa: E402  (the crawler's commands live in its package)

app.add_typer(crawl_app, name="crawl")


# ---- shortener ------------------------------------------------------------------------------------
from sixfold.shortener.cli import shortener_app  # noqa: E402  (its commands live in its package)

app.add_typer(shortener_app, name="shortener")


# ---- feed -----------------------------------------------------------------------------------------
feed_app = typer.Typer(help="Photo feed: synthetic users and posts, offline timeline generation.",
                       no_args_is_help=True)
app.add_typer(feed_app, name="feed")

# (feed commands: each defined below by the module that owns it)


@feed_app.command("timelines")
def feed_timelines(
    per_user: int = typer.Option(500, "--per-user", min=1, help="newest posts kept per timeline"),
    land_pending: bool = typer.Option(True, "--land/--no-land",
                                      help="first land pending post-created, post-deleted and follows events into the lake"),
) -> None:
    """Regenerate every active user's pushed timeline from the lake now (Spark, in this process)."""
    from rich.progress import Progress, SpinnerColumn, TextColumn

    from sixfold.feed.fanout import land_follow_events, run_fanout, run_post_deletions
    from sixfold.feed.timeline_job import generate_timelines
    from sixfold.platform.bus import open_bus
    from sixfold.platform.spark import get_session, require_master
    from sixfold.platform.store import open_store

    settings = settings_or_exit()
    require_master(settings)  # before landing anything: a master that is not there is named now
    store = open_store(settings)
    try:
        if land_pending:
            bus = open_bus(settings)
            try:
                posts = run_fanout(settings, store, bus, idle_timeout_s=0.2)
                run_post_deletions(settings, store, bus, idle_timeout_s=0.2)
                follows = land_follow_events(settings, bus, idle_timeout_s=0.2)
            finally:
                bus.close()
            typer.echo(f"landed {posts.landed:,} posts (pushed {posts.pushed:,} entries) and "
                       f"{follows.landed:,} follow events; rejected {posts.rejected + follows.rejected:,}")
        with console.status("starting Spark (the first start takes a while) ..."):
            spark = get_session(settings, app_name="feed_timelines")
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=console, transient=True) as progress:
            bar = progress.add_task("reading the lake", total=None)
            generate_timelines(spark, settings, store, per_user, say=typer.echo,
                               progress=lambda n: progress.update(bar, description=f"writing timelines: {n:,} users"))
    finally:
        store.close()


@feed_app.command("generate")
def feed_generate(
    users: int = typer.Option(10_000, "--users", min=2, help="how many users"),
    posts: int = typer.Option(100_000, "--posts", min=0, help="how many posts"),
    stories: int = typer.Option(0, "--stories", min=0, help="how many stories (from the last 24 hours)"),
    seed: int = typer.Option(7, "--seed", help="same seed, same data"),
) -> None:
    """Synthetic users (power-law followers), posts with hashtags and geotags, into the lake and the store."""
    from rich.progress import MofNCompleteColumn, Progress

    from sixfold.feed.generate import generate, total_rows, write
    from sixfold.platform.store import open_store

    settings = settings_or_exit()
    with console.status(f"drawing {users:,} users and {posts:,} posts ..."):
        data = generate(users, posts, stories, seed=seed)
    store = open_store(settings)
    try:
        with Progress(*Progress.get_default_columns(), MofNCompleteColumn(), console=console) as progress:
            total = total_rows(data, settings.feed_celebrity_threshold)
            bar = progress.add_task("writing lake and serving rows", total=total)
            counts = write(settings, data, store, progress=lambda n: progress.advance(bar, n))
    finally:
        store.close()
    top = counts.pop("top_follower_counts")
    typer.echo("  ".join(f"{name} {n:,}" for name, n in counts.items()))
    typer.echo("top follower counts: " + ", ".join(f"{t['user_id']}: {t['followers']:,}" for t in top))


@feed_app.command("index")
def feed_index(
    start: Optional[str] = typer.Option(None, help="ISO-8601 UTC, inclusive (default: every post in the lake)"),
    end: Optional[str] = typer.Option(None, help="ISO-8601 UTC, exclusive"),
) -> None:
    """Index the lake's posts for hashtag and geo search (the Spark job, run in this process)."""
    from sixfold.feed.search import build_search_index
    from sixfold.platform.schema import parse_timestamp
    from sixfold.platform.spark import get_session
    from sixfold.platform.store import open_store

    settings = settings_or_exit()
    try:
        lo, hi = (parse_timestamp(v) if v else None for v in (start, end))
    except ValueError as exc:
        console.print(f"[red]bad --start/--end:[/red] {exc}")
        raise typer.Exit(2) from None
    store = open_store(settings)
    with console.status("indexing posts (the first Spark start takes a while) ..."):
        spark = get_session(settings, app_name="feed_search_index")
        try:
            counts = build_search_index(spark, settings, store, lo, hi)
        finally:
            store.close()
    typer.echo(f"hashtag rows {counts['hashtag_rows']:,}  geo rows {counts['geo_rows']:,}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(ctx: typer.Context) -> None:
    """Run the `airflow` CLI with this project's DAGs and connections, e.g. `sixfold airflow standalone`
    (the UI on http://127.0.0.1:8080; Ctrl-C stops every Airflow process it started)."""
    from sixfold.platform.airflow_env import airflow_env, airflow_exe, standalone

    settings = settings_or_exit()
    try:
        if ctx.args == ["standalone"]:
            raise typer.Exit(standalone(settings, say=lambda m: console.print(m, style="bold", markup=False)))
        env = {**os.environ, **airflow_env(settings)}
    except ValueError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    exe = airflow_exe()
    os.execve(exe, [exe, *ctx.args], env)


def main() -> None:
    """Entry point: a backing service that cannot be reached is a one-line error, not a traceback."""
    from sixfold.platform.errors import ServiceUnavailable

    try:
        app()
    except ServiceUnavailable as exc:
        console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)


if __name__ == "__main__":
    main()
