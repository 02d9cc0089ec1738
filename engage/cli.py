"""The `engage` command: demo, serve, up, simulate, keys, ops."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from datetime import UTC, datetime

from engage.migrate import SCHEMAS
from engage.stack import SERVICES, PortTaken, Stack, ensure_port_free, stopped_by_signals


def _stack(args: argparse.Namespace) -> Stack:
    """The embedded stack `up` and `demo` run: its ports, state directory and durability."""
    return Stack.from_env(base_port=args.base_port, unsafe_fast=args.unsafe_fast)


def _cmd_demo(args: argparse.Namespace) -> int:
    from engage.demo import run_demo

    stack = _stack(args)
    with stopped_by_signals():
        try:
            return asyncio.run(
                run_demo(args.users, args.groups, args.seed, args.keep_running, stack=stack)
            )
        except KeyboardInterrupt:
            return 130  # stopped by a signal; run_demo stopped every child
        except (PortTaken, RuntimeError) as exc:
            print(f"engage demo: {exc}", file=sys.stderr)
            return 1


def _cmd_ops_check(args: argparse.Namespace) -> int:
    """The demo under a real Prometheus; every dashboard query and rule proven (issue 6)."""
    from pathlib import Path

    from engage.ops.check import run_check

    code, report = asyncio.run(
        run_check(
            Path(args.var_dir).resolve(),
            args.users,
            args.groups,
            args.seed,
            Path(args.render).resolve() if args.render else None,
        )
    )
    print("\n" + report.summary())
    for path in report.rendered:
        print(f"  rendered {path}")
    return code or (1 if report.failures else 0)


def _cmd_ops_dashboards(args: argparse.Namespace) -> int:
    from engage.ops.dashboards import write

    for path in write():
        print(f"wrote {path}")
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    from engage.migrate import migrate_services

    unknown = sorted(set(args.service) - set(SCHEMAS))
    if unknown:
        print(f"unknown service(s): {', '.join(unknown)}; choose from {', '.join(SCHEMAS)}")
        return 2
    for line in asyncio.run(migrate_services(tuple(args.service) or SCHEMAS)):
        print(line)
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    """Run one service in the foreground; start the embedded default for what is not configured."""
    import uvicorn

    stack = Stack.from_env().start_infra(fresh_database=False)
    os.environ.update(
        {
            "ENGAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap or "",
            "ENGAGE_DATABASE_URL": stack.database_url or "",
        }
    )
    factory, port = SERVICES[args.service]
    try:
        uvicorn.run(factory, factory=True, host=args.host, port=args.port or port, access_log=False)
    finally:
        stack.stop()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """Run one service as deployed (the container's entrypoint): Kafka and PostgreSQL must be
    configured — no embedded default — and a stop signal drains requests for 10 s."""
    import uvicorn

    factory, port = SERVICES[args.service]
    uvicorn.run(
        factory,
        factory=True,
        host=args.host,
        port=args.port or port,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips="*",
        timeout_graceful_shutdown=10,
    )
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    """Every service plus the embedded default, until Ctrl-C or SIGTERM; then nothing is left."""
    stack = _stack(args)
    with stopped_by_signals():
        try:
            for name in SERVICES:  # all four free before anything starts
                ensure_port_free(stack.port_of(name), name)
            stack.start_infra(fresh_database=False)
            for name in SERVICES:  # each waits for /readyz before its URL is printed
                env = stack.notify_segments_env() if name == "notify" else None
                stack.start_service(name, env=env)
            for name, service in stack.services.items():
                print(f"{name:<8} {service.url}/docs", flush=True)
            print(f"broker   {stack.kafka_bootstrap}\ndatabase {stack.database_url}")
            print(f"state    {stack.var_dir}", flush=True)
            print("Running; Ctrl-C or SIGTERM stops every service, the broker and the database.")
            sys.stdout.flush()
            while True:
                signal.pause()
        except KeyboardInterrupt:
            return 0
        except (PortTaken, RuntimeError) as exc:
            print(f"engage up: {exc}", file=sys.stderr)
            return 1
        finally:
            stack.stop()


def _ingest_database_url() -> str | None:
    """Ingest's own database (INGEST_DATABASE_URL), else the shared ENGAGE_DATABASE_URL."""
    return os.environ.get("INGEST_DATABASE_URL") or os.environ.get("ENGAGE_DATABASE_URL")


def _cmd_keys(args: argparse.Namespace) -> int:
    from services.ingest.admin import issue_api_key, list_api_keys, revoke_api_key
    from shared.auth import Role

    url = _ingest_database_url()
    if not url:
        print(
            "set INGEST_DATABASE_URL or ENGAGE_DATABASE_URL to ingest's database", file=sys.stderr
        )
        return 2
    bootstrap = os.environ.get("ENGAGE_KAFKA_BOOTSTRAP") or None
    if args.keys_command == "create":
        roles = [Role(r) for r in args.role]
        issued = asyncio.run(issue_api_key(url, args.name, roles, args.rate, bootstrap))
        print(f"key id {issued.key_id}\nsecret {issued.secret}  (shown once; store it now)")
        return 0
    if args.keys_command == "revoke":
        if asyncio.run(revoke_api_key(url, args.key_id, bootstrap)):
            print(f"revoked {args.key_id}")
            return 0
        print(f"no active key {args.key_id}", file=sys.stderr)
        return 1
    for principal, revoked in asyncio.run(list_api_keys(url)):
        state = "revoked" if revoked else "active"
        role_names = ",".join(sorted(principal.roles))
        print(f"{principal.key_id}  {state:<8} {principal.name:<24} {role_names}")
    return 0


def _cmd_dlq(args: argparse.Namespace) -> int:
    from engage.dlq import dead_letters, replay
    from shared.topics import DLQ_TOPICS

    bootstrap = args.bootstrap or os.environ.get("ENGAGE_KAFKA_BOOTSTRAP")
    if not bootstrap:
        print("give --bootstrap or set ENGAGE_KAFKA_BOOTSTRAP (see engage up)", file=sys.stderr)
        return 2
    if args.dlq_command == "replay":
        try:
            letter = asyncio.run(replay(bootstrap, args.ref))
        except (ValueError, LookupError) as exc:
            print(exc, file=sys.stderr)
            return 1
        print(f"replayed {args.ref} onto {letter.source_topic} (it was: {letter.reason})")
        return 0
    topics = tuple(t for t in DLQ_TOPICS if args.service is None or t.startswith(args.service))
    letters = asyncio.run(dead_letters(bootstrap, topics))
    for d in letters:
        source = f"{d.source_topic}:{d.source_partition}:{d.source_offset}"
        print(f"{d.ref}  {d.service or '?'}/{d.group or '?'}  from {source}\n    {d.reason}")
    print(f"{len(letters)} dead letter(s)")
    return 0


def _cmd_care(args: argparse.Namespace) -> int:
    from engage.care import gather, render

    key = args.key or os.environ.get("ENGAGE_API_KEY")
    if not key:
        print("give --key or set ENGAGE_API_KEY (a viewer key)", file=sys.stderr)
        return 2
    names = ("scoring", "rewards", "notify")
    base = args.base_port or 8001
    urls = {
        name: getattr(args, name) or f"http://127.0.0.1:{base + list(SERVICES).index(name)}"
        for name in names
    }
    story = asyncio.run(gather(args.user_id, urls, key))
    print(render(story))
    return 1 if len(story.unknown_to) == len(names) else 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from engage.demo import simulate_through_ingest
    from engage.simulator.world import SimConfig

    config = SimConfig(
        seed=args.seed,
        users=args.users,
        groups=args.groups,
        duplicate_rate=args.duplicates,
        shuffle_window=args.shuffle_window,
    )
    imported, posted = asyncio.run(
        simulate_through_ingest(
            args.url, args.key, args.import_key or args.key, config, datetime.now(UTC)
        )
    )
    for label, report in (("last month", imported), ("this month", posted)):
        print(
            f"{label}: sent {report.sent:,}, accepted {report.accepted:,}, "
            f"rejected {report.rejected:,}, retries {report.retries:,}, "
            f"{report.sent / max(report.seconds, 1e-9):,.0f} events/s"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="engage", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the whole pipeline on the embedded default")
    demo.add_argument("--users", type=int, default=2000)
    demo.add_argument("--groups", type=int, default=120)
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--keep-running", action="store_true", help="leave services up afterwards")
    demo.set_defaults(func=_cmd_demo)
    up = sub.add_parser("up", help="run every service on the embedded default until Ctrl-C")
    up.set_defaults(func=_cmd_up)
    for command in (demo, up):
        command.add_argument(
            "--base-port",
            type=int,
            help="services on this port and the next three (default 8001–8004); state under "
            "var/port-N unless ENGAGE_VAR_DIR is set — two stacks can run side by side",
        )
        command.add_argument(
            "--unsafe-fast",
            action="store_true",
            help="embedded PostgreSQL without fsync: faster, and a power loss can lose or "
            "corrupt data — throw-away stacks only (also ENGAGE_UNSAFE_FAST=1)",
        )

    serve = sub.add_parser("serve", help="run one service (embedded default if unconfigured)")
    serve.add_argument("service", choices=sorted(SERVICES))
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_cmd_serve)

    run = sub.add_parser("run", help="run one service as deployed (the container entrypoint)")
    run.add_argument("service", choices=sorted(SERVICES))
    run.add_argument("--host", default="0.0.0.0")
    run.add_argument("--port", type=int)
    run.set_defaults(func=_cmd_run)

    mig = sub.add_parser("migrate", help="migrate every service's schema, then exit (a job)")
    mig.add_argument("service", nargs="*", help=f"any of {', '.join(SCHEMAS)} (default: all)")
    mig.set_defaults(func=_cmd_migrate)

    keys = sub.add_parser("keys", help="API keys: create, revoke, list").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="issue a key; the secret is shown once")
    create.add_argument("--name", required=True)
    create.add_argument(
        "--role",
        action="append",
        required=True,
        choices=[
            "ingest",
            "importer",
            "viewer",
            "campaign_owner",
            "approver",
            "fulfiller",
            "admin",
        ],
    )
    create.add_argument("--rate", type=float, default=None, help="events/s (default 5000)")
    revoke = keys.add_parser("revoke", help="revoke a key by its id (every service drops it)")
    revoke.add_argument("key_id")
    keys.add_parser("list", help="ids, names, roles and state of every key (no secrets)")
    for command in keys.choices.values():
        command.set_defaults(func=_cmd_keys)

    dlq = sub.add_parser(
        "dlq", help="records a consumer could not apply: list them, replay one after a fix"
    ).add_subparsers(dest="dlq_command", required=True)
    dlq_list = dlq.add_parser("list", help="every dead letter with its reason and origin")
    dlq_list.add_argument(
        "--service",
        choices=["engage.events", "engage.metrics", "engage.notify", "engage.fulfilment"],
        help="only this DLQ (engage.events: scoring, engage.metrics and engage.fulfilment: "
        "rewards, engage.notify: notify)",
    )
    dlq_replay = dlq.add_parser("replay", help="produce one dead letter onto its source topic")
    dlq_replay.add_argument("ref", help="TOPIC:PARTITION:OFFSET as `engage dlq list` shows")
    for command in dlq.choices.values():
        command.add_argument("--bootstrap", help="Kafka address (default ENGAGE_KAFKA_BOOTSTRAP)")
        command.set_defaults(func=_cmd_dlq)

    care = sub.add_parser(
        "care", help="one user's story across scoring, rewards and notify, in time order"
    )
    care.add_argument("user_id")
    care.add_argument("--key", help="a viewer key (default ENGAGE_API_KEY)")
    care.add_argument("--base-port", type=int, help="the stack's base port (default 8001)")
    for name in ("scoring", "rewards", "notify"):
        care.add_argument(f"--{name}", help=f"{name}'s URL (default from the base port)")
    care.set_defaults(func=_cmd_care)

    sim = sub.add_parser("simulate", help="post seeded traffic to a running ingest")
    sim.add_argument("--url", default="http://127.0.0.1:8001")
    sim.add_argument("--key", required=True, help="key with the ingest role")
    sim.add_argument("--import-key", help="key with the importer role (default: --key)")
    sim.add_argument("--users", type=int, default=2000)
    sim.add_argument("--groups", type=int, default=120)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--duplicates", type=float, default=0.02)
    sim.add_argument("--shuffle-window", type=int, default=500)
    sim.set_defaults(func=_cmd_simulate)

    ops = sub.add_parser("ops", help="operations: dashboards and their proof").add_subparsers(
        dest="ops_command", required=True
    )
    check = ops.add_parser(
        "check", help="run the demo with a real Prometheus; prove every panel query and rule"
    )
    check.add_argument("--users", type=int, default=600)
    check.add_argument("--groups", type=int, default=40)
    check.add_argument("--seed", type=int, default=7)
    check.add_argument("--var-dir", default="var/ops-check")
    check.add_argument("--render", help="also draw each dashboard's key panels to PNGs here")
    check.set_defaults(func=_cmd_ops_check)
    dashboards = ops.add_parser("dashboards", help="write deploy/grafana/dashboards/*.json")
    dashboards.set_defaults(func=_cmd_ops_dashboards)

    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
