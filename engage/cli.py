"""The `engage` command: demo, serve, up, simulate, keys, tokens, ops."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
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

    from shared.http_protocol import HeaderDeadlineProtocol

    stack = Stack.from_env().start_infra(fresh_database=False)
    os.environ.update(
        {
            "ENGAGE_KAFKA_BOOTSTRAP": stack.kafka_bootstrap or "",
            "ENGAGE_DATABASE_URL": stack.database_url or "",
        }
    )
    # User tokens from `engage tokens` verify unless the platform's keys are configured.
    os.environ.setdefault("ENGAGE_USER_TOKEN_PUBLIC_KEYS", str(stack.user_token_issuer().jwks_path))
    factory, port = SERVICES[args.service]
    try:
        uvicorn.run(
            factory,
            factory=True,
            host=args.host,
            port=args.port or port,
            access_log=False,
            http=HeaderDeadlineProtocol,
        )
    finally:
        stack.stop()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    """Run one service as deployed (the container's entrypoint): Kafka and PostgreSQL must be
    configured — no embedded default — and a stop signal drains requests for 10 s."""
    import uvicorn

    from shared.http_protocol import HeaderDeadlineProtocol

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
        limit_concurrency=2000,  # beyond it, 503 at once: no pile-up of slow clients
        timeout_keep_alive=5,
        http=HeaderDeadlineProtocol,  # 408 for a request head slower than 10 s
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
        types = _event_types(args.types)
        if isinstance(types, str):
            print(types, file=sys.stderr)
            return 2
        issued = asyncio.run(
            issue_api_key(url, args.name, roles, args.rate, bootstrap, types, args.team)
        )
        print(f"key id {issued.key_id}\nsecret {issued.secret}  (shown once; store it now)")
        if args.team:
            print(f"team   {args.team}")
        if types is not None:
            print(f"types  {','.join(sorted(types))} only")
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
        types = principal.event_types
        narrowed = "" if types is None else f"  types={','.join(sorted(types))}"
        team = "" if principal.team is None else f"  team={principal.team}"
        print(f"{principal.key_id}  {state:<8} {principal.name:<24} {role_names}{narrowed}{team}")
    return 0


def _team_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_\-]{1,64}", value):
        raise argparse.ArgumentTypeError(
            "a team name is 1–64 letters, digits, '-' or '_' (e.g. marketing-north)"
        )
    return value


def _event_types(option: str | None) -> frozenset[str] | str | None:
    """`--types message,login` as a set of event types; None without it; an error message if
    a name is no event type."""
    from shared.contract import EVENT_TYPES

    if option is None:
        return None
    types = frozenset(t.strip() for t in option.split(",") if t.strip())
    unknown = sorted(types - set(EVENT_TYPES))
    if unknown or not types:
        return f"--types: unknown event type(s) {', '.join(unknown) or '(none given)'}; " + (
            f"choose from {', '.join(EVENT_TYPES)}"
        )
    return types


def _cmd_tokens(args: argparse.Namespace) -> int:
    """A local signing key (created if absent) and user tokens minted with it (SPEC §14)."""
    from pathlib import Path

    from engage.tokens import LocalIssuer

    directory = Path(args.key_dir) if args.key_dir else Stack.from_env().user_token_dir
    issuer = LocalIssuer.open(directory.resolve())
    if args.user is None:
        print(f"signing key {issuer.directory / 'signing-key.pem'} (kid {issuer.kid})")
        print(f"configure ingest and rewards with ENGAGE_USER_TOKEN_PUBLIC_KEYS={issuer.jwks_path}")
        return 0
    print(issuer.mint(args.user, args.ttl))
    print(
        f"user token for {args.user}, valid {args.ttl:g}s; verify with "
        f"ENGAGE_USER_TOKEN_PUBLIC_KEYS={issuer.jwks_path}",
        file=sys.stderr,
    )
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


def _cmd_report(args: argparse.Namespace) -> int:
    """`engage report campaign ID` / `engage report month YYYY-MM` (SPEC §12)."""
    from pathlib import Path

    import httpx

    from engage import report

    key = args.key or os.environ.get("ENGAGE_API_KEY")
    if not key:
        print("give --key or set ENGAGE_API_KEY (a viewer key)", file=sys.stderr)
        return 2
    base = args.base_port or 8001
    urls = {
        name: getattr(args, name) or f"http://127.0.0.1:{base + list(SERVICES).index(name)}"
        for name in ("scoring", "rewards", "notify")
    }
    out = Path(args.out) if args.out else report.default_out_dir()
    try:
        if args.what == "campaign":
            doc = asyncio.run(report.fetch_campaign(urls, key, args.id, args.first, args.last))
            printed = report.render_campaign(doc, out)
        else:
            today = datetime.now(UTC).date()
            printed = report.render_month(
                asyncio.run(report.fetch_month(urls, key, args.id, today)), out
            )
    except httpx.HTTPStatusError as exc:
        print(f"engage report: {exc.request.url} answered {exc.response.status_code}: "
              f"{exc.response.text[:300]}", file=sys.stderr)  # fmt: skip
        return 1
    except httpx.HTTPError as exc:
        print(f"engage report: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(printed.text)
    for note in printed.notes:
        print(note)
    for path in printed.charts:
        print(f"  chart: {path}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    if args.rigging:
        return _cmd_rigging(args)

    from engage.demo import ClientCredential, simulate_through_ingest, user_tokens
    from engage.simulator.world import SimConfig
    from engage.tokens import LocalIssuer

    config = SimConfig(
        seed=args.seed,
        users=args.users,
        groups=args.groups,
        duplicate_rate=args.duplicates,
        shuffle_window=args.shuffle_window,
    )
    client: ClientCredential | None = None
    if args.user_tokens:
        directory = Path(args.token_key_dir) if args.token_key_dir else None
        issuer = LocalIssuer.open(directory or Stack.from_env().user_token_dir)
        client = user_tokens(issuer.mint)
    elif args.relay_key:
        relay: str = args.relay_key
        client = lambda _user_id: relay  # noqa: E731
    imported, posted = asyncio.run(
        simulate_through_ingest(
            args.url, args.key, args.import_key or args.key, config, datetime.now(UTC), client
        )
    )
    for label, report in (("last month", imported), ("this month", posted)):
        print(
            f"{label}: sent {report.sent:,}, accepted {report.accepted:,}, "
            f"rejected {report.rejected:,}, retries {report.retries:,}, "
            f"{report.sent / max(report.seconds, 1e-9):,.0f} events/s"
        )
    return 0


def _cmd_rigging(args: argparse.Namespace) -> int:
    from pathlib import Path
    from urllib.parse import urlsplit
    from zoneinfo import ZoneInfo

    from engage.simulator.rigging import Drill, pick_targets, render, run_drill
    from engage.simulator.world import SimConfig, World
    from engage.tokens import LocalIssuer
    from shared.settings import CommonSettings

    if not (args.relay_key and args.viewer_key):
        print("--rigging needs --relay-key (an ingest key) and --viewer-key", file=sys.stderr)
        return 2
    port = urlsplit(args.url).port or 8001
    host = args.url.rsplit(":", 1)[0]
    urls = {"ingest": args.url, "scoring": f"{host}:{port + 1}", "rewards": f"{host}:{port + 2}"}
    directory = Path(args.token_key_dir) if args.token_key_dir else Stack.from_env().user_token_dir
    issuer = LocalIssuer.open(directory)
    world = World.build(SimConfig(seed=args.seed, users=args.users, groups=args.groups))
    targets = pick_targets(world.groups, world.users)
    drill = Drill(
        urls,
        args.key,
        args.viewer_key,
        args.relay_key,
        lambda user: issuer.mint(user),
        ZoneInfo(CommonSettings().timezone),
    )
    result = asyncio.run(run_drill(drill, targets, args.campaign))
    print(render(result.attempts))
    return 0 if result.ok else 1


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
            "platform",
            "importer",
            "viewer",
            "campaign_owner",
            "approver",
            "fulfiller",
            "admin",
        ],
    )
    create.add_argument("--rate", type=float, default=None, help="events/s (default 5000)")
    create.add_argument(
        "--types",
        help="narrow the key to these event types, comma-separated (e.g. message,login); "
        "default: every type its roles allow",
    )
    create.add_argument(
        "--team",
        type=_team_name,
        help="the team whose campaigns, broadcasts and templates the key works on (letters, "
        "digits, - and _; up to 64); an admin key works on every team's",
    )
    revoke = keys.add_parser("revoke", help="revoke a key by its id (every service drops it)")
    revoke.add_argument("key_id")
    keys.add_parser("list", help="ids, names, roles and state of every key (no secrets)")
    for command in keys.choices.values():
        command.set_defaults(func=_cmd_keys)

    tokens = sub.add_parser(
        "tokens",
        help="a local user-token signing key (created if absent) and tokens minted with it",
        description="Stands in for the IM platform's token issuer on a local stack: prints the "
        "public key (JWKS) path to configure as ENGAGE_USER_TOKEN_PUBLIC_KEYS, or with --user "
        "prints a user token for that user on stdout.",
    )
    tokens.add_argument("--user", help="mint a token whose sub is this user id")
    tokens.add_argument("--ttl", type=float, default=3600.0, help="seconds (default 3600)")
    tokens.add_argument(
        "--key-dir",
        help="where the signing key lives (default: the stack's state directory, "
        "<ENGAGE_VAR_DIR or var>/user-tokens)",
    )
    tokens.set_defaults(func=_cmd_tokens)

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

    rep = sub.add_parser(
        "report", help="a campaign's or a month's report: tables printed, PNG charts written"
    )
    rep.add_argument("what", choices=["campaign", "month"])
    rep.add_argument("id", help="a campaign id (cmp_…) or a month (YYYY-MM)")
    rep.add_argument("--from", dest="first", help="campaign: first local day (YYYY-MM-DD)")
    rep.add_argument("--to", dest="last", help="campaign: last local day (YYYY-MM-DD)")
    rep.add_argument("--out", help="where the PNGs go (default var/reports/<today>)")
    rep.add_argument("--key", help="a viewer key (default ENGAGE_API_KEY)")
    rep.add_argument("--base-port", type=int, help="the stack's base port (default 8001)")
    for name in ("scoring", "rewards", "notify"):
        rep.add_argument(f"--{name}", help=f"{name}'s URL (default from the base port)")
    rep.set_defaults(func=_cmd_report)

    sim = sub.add_parser("simulate", help="post seeded traffic to a running ingest")
    sim.add_argument("--url", default="http://127.0.0.1:8001")
    sim.add_argument(
        "--key",
        required=True,
        help="key with the platform role: the IM platform's events (points, bonus cards, "
        "group facts), and the users' own too unless --user-tokens or --relay-key",
    )
    sim.add_argument("--import-key", help="key with the importer role (default: --key)")
    sim.add_argument(
        "--user-tokens",
        action="store_true",
        help="post each user's events with their own user token, minted with the local "
        "signing key (see `engage tokens`)",
    )
    sim.add_argument("--relay-key", help="post the users' events through this ingest (relay) key")
    sim.add_argument("--token-key-dir", help="the local signing key's directory (engage tokens)")
    sim.add_argument("--users", type=int, default=2000)
    sim.add_argument("--groups", type=int, default=120)
    sim.add_argument("--seed", type=int, default=7)
    sim.add_argument("--duplicates", type=float, default=0.02)
    sim.add_argument("--shuffle-window", type=int, default=500)
    sim.add_argument(
        "--rigging",
        action="store_true",
        help="instead of traffic, the rigging drill (SPEC §14): hijacks with a user token and "
        "an extracted relay key, and riggers that must come out flagged; needs --relay-key "
        "and --viewer-key; scoring and rewards are taken on the next ports after --url",
    )
    sim.add_argument("--viewer-key", help="a viewer key, to read the outcome (--rigging)")
    sim.add_argument("--campaign", help="a campaign whose enrollment the drill tries (--rigging)")
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
