"""`ilog`: the command line. Commands import their modules lazily so start-up stays fast."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from worker.runtime.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Interaction Log Sync",
                  pretty_exceptions_enable=False)
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics of the project")
worker_app = typer.Typer(no_args_is_help=True, help="Run a stage of the worker")
schema_app = typer.Typer(no_args_is_help=True, help="The wire contract as JSON Schema")
dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: look at them and resend them")
app.add_typer(topics_app, name="topics")
app.add_typer(worker_app, name="worker")
app.add_typer(schema_app, name="schema")
app.add_typer(dlq_app, name="dlq")
# Commands that configure the worker's logging themselves (JSON lines, librdkafka's included).
_WORKER_COMMANDS = frozenset({"worker"})


def _show_version(wanted: bool) -> None:
    if wanted:
        from worker.runtime.build import build_info

        Settings()  # the environment is checked like every command's (a bad setting: exit 2)
        typer.echo(build_info().describe())
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="on failure, the traceback and the clients' logs")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_show_version, is_eager=True,
                                          help="print the version and build, then exit")] = False,
) -> None:
    """Interaction Log Sync: fold contact-center events into interaction logs and sync them to the CRMs.

    A bad setting or an unreachable Kafka/Redis ends a command with one line on stderr and exit code 2.
    """
    if ctx.invoked_subcommand in _WORKER_COMMANDS:
        return  # the worker logs unknown variables itself, as JSON lines
    from worker.runtime.logs import configure_command_logging
    from worker.runtime.settings import unknown_variables

    configure_command_logging(debug=debug)
    for warning in unknown_variables(os.environ):
        typer.echo(f"ilog: warning: {warning}", err=True)


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int | None, typer.Option(help="partition count (default ILOG_PARTITIONS)")] = None,
) -> None:
    """Create the events, upserts and DLQ topics with their configs (idempotent: existing topics get the configs)."""
    from worker.errors import ConfigError
    from worker.kafka.topics import create_topics

    settings = Settings()
    if partitions is not None and partitions < 1:  # as ILOG_PARTITIONS: the copy below skips its check
        raise ConfigError(f"--partitions {partitions}: give 1 or more")
    if partitions is not None:
        settings = settings.model_copy(update={"partitions": partitions})
    for name, outcome in create_topics(settings).items():
        typer.echo(f"{name}: {outcome}")


@app.command("fold")
def fold_cmd(
    file: Annotated[Path, typer.Argument(help="JSON lines of CloudEvents")],
    rejects: Annotated[Path | None, typer.Option(help="write rejections here as JSON lines")] = None,
) -> None:
    """Fold a file of events offline (no services) and print the final logs as JSON lines.

    Exits 0 when the file was read, also when events were rejected (they are data: see --rejects);
    `ilog validate` is the check that fails on a rejected line.
    """
    from worker.ops.offline import fold_file_command

    raise typer.Exit(fold_file_command(file, rejects, Settings()))


@app.command("validate")
def validate_cmd(
    files: Annotated[list[Path], typer.Argument(help="JSON-lines files of CloudEvents")],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object per rejected line")] = False,
) -> None:
    """Check events against the contract offline (no services): each rejected line with its number,
    field and reason; exit 1 when any line is rejected, 0 when none is."""
    from worker.ops.validate import Clock, validate_command

    settings = Settings()  # the environment is checked like every command's (a bad setting: exit 2)
    clock = Clock(now_ms=int(time.time() * 1000), max_skew_ms=int(settings.max_clock_skew_seconds * 1000))
    raise typer.Exit(validate_command(files, clock, as_json=as_json))


@schema_app.command("export")
def schema_export(directory: Annotated[Path, typer.Argument(help="output folder")]) -> None:
    """Write one JSON Schema per event type plus the envelope and the snapshot."""
    from schemas.export import export_json_schemas
    from worker.errors import ConfigError

    Settings()  # the environment is checked like every command's (a bad setting: exit 2)
    try:
        written = export_json_schemas(directory)
    except OSError as error:  # not a folder, not writable: the command line is wrong, as for an unreadable file
        raise ConfigError(f"cannot write the schemas to {directory}: {error.strerror or error}") from error
    for path in written:
        typer.echo(str(path))


@worker_app.command("fold")
def worker_fold() -> None:
    """Run the fold stage: events → Redis → upserts topic."""
    from worker.runtime.runner import StageName, run_worker

    run_worker(StageName.FOLD, Settings())


@worker_app.command("sync")
def worker_sync() -> None:
    """Run the sync stage: upserts topic → Salesforce, Zendesk, webhook."""
    from worker.runtime.runner import StageName, run_worker

    settings = Settings()
    _refuse_without_targets("sync", settings)
    run_worker(StageName.SYNC, settings)


@worker_app.command("all")
def worker_all() -> None:
    """Run fold and sync in one process (small deployments, the demo)."""
    from worker.runtime.runner import StageName, run_worker

    settings = Settings()
    _refuse_without_targets("all", settings)
    run_worker(StageName.ALL, settings)


def _refuse_without_targets(stage: str, settings: Settings) -> None:
    """A sync stage with no target would mark every record done and commit it: exit 2 instead,
    as for a target that is on but misses a setting it needs."""
    from worker.runtime.targets import NO_TARGET_MESSAGE, TargetConfigError, build_targets, enabled_target_names

    problem = None if enabled_target_names(settings) else NO_TARGET_MESSAGE
    if problem is None:
        try:
            for target in build_targets(settings):
                target.close()
        except TargetConfigError as exc:
            problem = str(exc)
    if problem is not None:
        typer.echo(f"ilog worker {stage}: {problem}", err=True)
        raise typer.Exit(2)


@app.command("inspect")
def inspect_cmd(interaction_id: Annotated[str, typer.Argument(help="the interaction id")]) -> None:
    """Print the log as it is in Redis, as JSON (or say that there is none, and why)."""
    from worker.ops.inspect import inspect_interaction

    raise typer.Exit(inspect_interaction(interaction_id, Settings()))


@app.command("produce")
def produce_cmd(
    interactions: Annotated[int, typer.Option(help="how many interactions to generate")] = 100,
    rate: Annotated[float, typer.Option(help="interactions per second, paced; 0 = no pacing")] = 0.0,
    seed: Annotated[int | None, typer.Option(help="random seed (default: from the clock, printed)")] = None,
    out: Annotated[Path | None, typer.Option(help="write JSON lines here instead of Kafka")] = None,
    edit_window: Annotated[float | None, typer.Option(help="seconds (ILOG_EDIT_WINDOW_SECONDS)")] = None,
    duplicates: Annotated[float, typer.Option(help="ratio of events sent twice with the same id")] = 0.0,
    shuffle: Annotated[bool, typer.Option(help="shuffle each interaction's events (sequence kept)")] = False,
    late_edits: Annotated[float, typer.Option(help="ratio of interactions edited too late")] = 0.0,
    malformed: Annotated[float, typer.Option(help="ratio of extra malformed payloads")] = 0.0,
    time_scale: Annotated[float, typer.Option(help="call duration scale, e.g. 0.05: 1 min demo")] = 1.0,
) -> None:
    """Generate demo/load events and send them to the events topic (or a file). Development install only."""
    import json

    require_dev_tools("produce")
    from worker.dev.generator import GeneratorMix
    from worker.dev.produce import produce_command

    mix = GeneratorMix(duplicate_ratio=duplicates, shuffle_within_interaction=shuffle,
                       late_edit_ratio=late_edits, malformed_ratio=malformed)
    code, summary = produce_command(
        Settings(), interactions=interactions, rate_per_s=rate, seed=seed, out=out,
        edit_window_s=edit_window, mix=mix, time_scale=time_scale,
    )
    typer.echo(json.dumps(summary))
    raise typer.Exit(code)


@app.command("replay")
def replay_cmd(
    from_: Annotated[str, typer.Option("--from", help="RFC 3339 time (or 'earliest') to replay from")],
    to: Annotated[str | None, typer.Option(help="stop at this time (default: the ends at start)")] = None,
    group: Annotated[str | None, typer.Option(help="consumer group (default ilog-replay-<from>)")] = None,
    live_keys: Annotated[bool, typer.Option(help="write the live Redis keys instead of the replay's own")] = False,
    prefix: Annotated[str | None, typer.Option(help="Redis key prefix (default <prefix>-replay-<group>)")] = None,
    upserts_topic: Annotated[str | None, typer.Option(help="emit snapshots here (default: the live one)")] = None,
    dlq_topic: Annotated[str | None, typer.Option(help="rejections (default <events>.replay.dlq)")] = None,
    force_live_group: Annotated[bool, typer.Option(help="allow the live fold group, or a group in use")] = False,
) -> None:
    """Backfill: fold the events topic again from a time, by event time, into a group of its own."""
    from worker.errors import ConfigError
    from worker.ops.replay import ReplayRequest, parse_time, replay_command

    try:
        request = ReplayRequest(
            from_time=parse_time(from_), to_time=None if to is None else parse_time(to), group=group,
            live_keys=live_keys, prefix=prefix, upserts_topic=upserts_topic, dlq_topic=dlq_topic,
            force_live_group=force_live_group,
        )
    except ConfigError as exc:
        typer.echo(f"ilog replay: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(replay_command(Settings(), request))


@dlq_app.command("list")
def dlq_list(
    topic: Annotated[str | None, typer.Option(help="a DLQ topic (default: <events>.dlq and <upserts>.dlq)")] = None,
    reason: Annotated[str | None, typer.Option(help="only this reason (or sync error code)")] = None,
    limit: Annotated[int | None, typer.Option(help="at most this many")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table")] = False,
) -> None:
    """Dead letters, oldest first: reason, message, interaction, original topic/partition/offset."""
    from worker.ops.dlq_commands import list_command

    raise typer.Exit(list_command(Settings(), topic=topic, reason=reason, limit=limit, as_json=as_json))


@dlq_app.command("replay")
def dlq_replay(
    topic: Annotated[str | None, typer.Option(help="a DLQ topic (default: both of the project)")] = None,
    reason: Annotated[str | None, typer.Option(help="only letters with this reason (or sync error code)")] = None,
    offset: Annotated[list[str] | None, typer.Option(help="N, PARTITION:N or TOPIC:PARTITION:N; repeatable")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False,
    force: Annotated[bool, typer.Option(help="also resend letters replayed before")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print what was resent as JSON")] = False,
) -> None:
    """Resend selected dead letters to their original topic (after the cause was fixed)."""
    from worker.ops.dlq_commands import replay_command

    raise typer.Exit(replay_command(Settings(), topic=topic, reason=reason, offsets=offset or [], yes=yes,
                                    force=force, as_json=as_json))



@app.command("demo")
def demo_cmd(
    interactions: Annotated[int, typer.Option(help="interactions in the demo stream")] = 200,
    duration: Annotated[float, typer.Option(help="seconds over which interactions start")] = 60.0,
    edit_window: Annotated[float, typer.Option(help="edit window in seconds (short, for the demo)")] = 10.0,
    seed: Annotated[int | None, typer.Option(help="random seed (default: the clock)")] = None,
    keep: Annotated[bool, typer.Option(help="leave the worker, emulators and stack running")] = False,
    summary_json: Annotated[Path | None, typer.Option(help="also write the summary here as JSON")] = None,
) -> None:
    """The local demo (`make run`): stack, emulators, worker, a demo stream, and what the CRMs now hold.
    Development install only."""
    require_dev_tools("demo")
    from rich.console import Console

    from worker.dev.demo import DemoError, DemoOptions, run_demo

    options = DemoOptions(interactions=interactions, duration_s=duration, edit_window_s=edit_window, seed=seed,
                          keep=keep, summary_json=summary_json)
    # Off a terminal (CI logs, `make run | tee`) rich would squeeze the tables into 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=160)
    try:
        code = run_demo(options, console)
    except DemoError as exc:
        console.print(f"[red]ilog demo:[/] {exc}")
        code = 1
    raise typer.Exit(code)


def require_dev_tools(command: str) -> None:
    """`demo` and `produce` live in `worker.dev`, which the production image leaves out: say so, exit 2."""
    if importlib.util.find_spec("worker.dev") is None:
        typer.echo(f"ilog {command}: a development tool, not part of this installation (the production image "
                   "leaves worker/dev out); install from a checkout: make install (pip install -e '.[dev]')", err=True)
        raise typer.Exit(2)


def command_name(argv: list[str]) -> str:
    """`ilog dlq list` from the arguments: the words that name (sub)commands."""
    command: object = typer.main.get_command(app)
    words = ["ilog"]
    for arg in argv:
        if arg.startswith("-"):
            continue
        sub = getattr(command, "commands", {}).get(arg)
        if sub is None:
            break
        words.append(arg)
        command = sub
    return " ".join(words)


def main() -> None:
    """Run `ilog`; a failure is one line on stderr (the traceback too with --debug), exit 2 or 1."""
    argv = sys.argv[1:]
    try:
        app()
    except Exception as exc:
        from worker.ops.failures import describe_failure, traceback_text

        if "--debug" in argv:
            sys.stderr.write(traceback_text(exc))
        failure = describe_failure(command_name(argv), exc)
        print(failure.line, file=sys.stderr)
        sys.exit(failure.exit_code)


if __name__ == "__main__":
    main()
