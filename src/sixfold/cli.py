"""The `sixfold` command: services, demo, serve, benchmarks, and one group per system."""

from __future__ import annotations

import os
import sys
from typing import Optional

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
services_app = typer.Typer(help="Local Apache Kafka (KRaft) and Apache Cassandra as Java processes on 127.0.0.1.",
                           no_args_is_help=True)
app.add_typer(services_app, name="services")
console = Console(stderr=True)


def settings_or_exit() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None


ONLY = typer.Option(None, "--only", help="kafka or cassandra (repeatable); default: both")


@services_app.command("up")
def services_up(only: Optional[list[str]] = ONLY) -> None:
    """Fetch the jars from Maven Central (cached), write configs, start and wait until healthy."""
    from sixfold.platform import services

    settings = settings_or_exit()
    try:
        for line in services.up(settings, only, log=lambda m: console.print(f"[dim]{m}[/dim]")):
            typer.echo(line)
    except (RuntimeError, ValueError) as exc:
        console.print(f"[red]services up failed:[/red] {exc}")
        raise typer.Exit(1) from None


@services_app.command("down")
def services_down(only: Optional[list[str]] = ONLY) -> None:
    """Stop the local servers cleanly (SIGTERM, then SIGKILL after 60 s)."""
    from sixfold.platform import services

    for line in services.down(settings_or_exit(), only):
        typer.echo(line)


@services_app.command("status")
def services_status(only: Optional[list[str]] = ONLY) -> None:
    """Show whether each server runs and what version it reports."""
    from sixfold.platform import services

    lines = services.status(settings_or_exit(), only)
    for line in lines:
        typer.echo(line)
    if any("healthy" not in line for line in lines):
        raise typer.Exit(3)


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="interface to bind"),
          port: int = typer.Option(8000, help="TCP port"),
          workers: int = typer.Option(1, help="uvicorn worker processes")) -> None:
    """Serve the HTTP API (OpenAPI at /openapi.json)."""
    import uvicorn

    settings = settings_or_exit()
    if settings.profile == "cluster":  # fail now, with the fix, rather than on the first request
        from sixfold.platform.bus import open_bus
        from sixfold.platform.store import open_store

        open_store(settings).close()
        open_bus(settings).close()
    uvicorn.run("sixfold.api.app:create_app", factory=True, host=host, port=port, workers=workers,
                log_level="warning")


@app.command()
def demo(events: int = typer.Option(2000, min=1, help="synthetic events to generate"),
         serve_after: bool = typer.Option(True, "--serve/--no-serve", help="serve on 127.0.0.1:8000 afterwards"),
         port: int = typer.Option(8000, help="port to serve on")) -> None:
    """Generate data, run every pipeline once on the configured profile, then serve."""
    from sixfold.demo import run_sample_pipeline

    settings = settings_or_exit()
    console.print(f"[bold]Sixfold demo[/bold] in {settings.home} (profile {settings.profile})")
    with console.status("running the pipelines ..."):
        run_sample_pipeline(settings, events, say=lambda m: console.print(f"  [green]✓[/green] {m}"))
    if serve_after:
        console.print(f"serving on http://127.0.0.1:{port} (health: /v1/health, API docs: /docs); Ctrl-C stops")
        serve(host="127.0.0.1", port=port, workers=1)


@app.command()
def bench(system: str = typer.Argument(..., help="which system to benchmark")) -> None:
    """Benchmark a system against a peer side by side; JSON and a chart go to var/bench/."""
    available: dict[str, str] = {}
    if system not in available:
        names = ", ".join(sorted(available)) or "none yet (each system adds its own)"
        console.print(f"[red]no benchmark for {system!r}[/red]; available: {names}")
        raise typer.Exit(2)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def airflow(ctx: typer.Context) -> None:
    """Run the `airflow` CLI with this project's DAGs and connections, e.g. `sixfold airflow standalone`."""
    from sixfold.platform.airflow_env import airflow_env

    env = {**os.environ, **airflow_env(settings_or_exit())}
    exe = os.path.join(os.path.dirname(sys.executable), "airflow")
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
