"""`ilog`: the command line. Commands import their modules lazily so start-up stays fast."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from worker.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Interaction Log Sync")
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the project")
worker_app = typer.Typer(no_args_is_help=True, help="Run a stage of the worker")
schema_app = typer.Typer(no_args_is_help=True, help="The wire contract as JSON Schema")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: look at them and resend them")
app.add_typer(topics_app, name="topics")
app.add_typer(worker_app, name="worker")
app.add_typer(schema_app, name="schema")
app.add_typer(dlq_app, name="dlq")


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int | None, typer.Option(help="partition count (default ILOG_PARTITIONS)")] = None,
) -> None:
    """Create the events, upserts and DLQ topics (idempotent)."""
    from worker.topics import create_topics

    settings = Settings()
    if partitions is not None:
        settings = settings.model_copy(update={"partitions": partitions})
    for name, outcome in create_topics(settings).items():
        typer.echo(f"{name}: {outcome}")


@app.command("fold")
def fold_cmd(
    file: Annotated[Path, typer.Argument(help="JSON lines of CloudEvents")],
    rejects: Annotated[Path | None, typer.Option(help="write rejections here as JSON lines")] = None,
) -> None:
    """Fold a file of events offline (no services) and print the final logs as JSON lines."""
    from worker.offline import fold_file_command

    raise typer.Exit(fold_file_command(file, rejects, Settings()))


@schema_app.command("export")
def schema_export(directory: Annotated[Path, typer.Argument(help="output folder")]) -> None:
    """Write one JSON Schema per event type plus the envelope and the snapshot."""
    from schemas.export import export_json_schemas

    for path in export_json_schemas(directory):
        typer.echo(str(path))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
