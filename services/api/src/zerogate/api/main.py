"""``zerogate-api``: serve the REST API, apply migrations, bootstrap an account.

::

    zerogate-api [serve]                               run the API (uvicorn)
    zerogate-api migrate                               apply pending migrations, then exit
    zerogate-api bootstrap --account-slug S --email E  create an account with an admin and
                                                       print {"account_id","actor_id","token"}

Settings come from ``ZG_*`` environment variables (see settings.py). Exit codes:
0 success, 1 refused (e.g. the slug exists), 2 bad settings or arguments, 3 serve
could not start.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta
from importlib import metadata

import asyncpg

from zerogate.api import db
from zerogate.api.settings import ApiSettings
from zerogate.common.errors import ConfigError, ZerogateError
from zerogate.common.listen import serve_asgi
from zerogate.common.settings import load_settings

_EPILOG = """\
settings (environment):
  ZG_DATABASE_URL   Postgres URL            ZG_NATS_URL        the bus
  ZG_API_HOST/PORT  listen address          ZG_MIGRATE_ON_START  migrate before serving
  ZG_NATS_CONNECT_TIMEOUT, ZG_API_TOKEN_TTL_DAYS, ZG_CLIENT_TOKEN_TTL_DAYS,
  ZG_API_TOKEN_MAX_DAYS, ZG_CLIENT_TOKEN_MAX_DAYS, ZG_GATEWAY_TOKEN_MAX_DAYS,
  ZG_DB_POOL_MIN/MAX, ZG_LOG_LEVEL
  sign-in: ZG_API_PUBLIC_URL, ZG_SECRET_KEY, ZG_OIDC_TIMEOUT, ZG_OIDC_LEEWAY_SECS,
  ZG_SIGN_IN_TTL_SECS, ZG_SIGN_IN_CODE_TTL_SECS
  defence: ZG_RATE_LIMIT_ENABLED, ZG_RATE_LIMIT_ACCOUNT_PER_S/_BURST,
  ZG_RATE_LIMIT_IP_PER_S/_BURST, ZG_MAX_BODY_BYTES

output: migrate and bootstrap print one JSON line on stdout; errors go to stderr.
exit codes: 0 success, 1 refused or database unreachable, 2 bad settings or arguments,
  3 serve could not start (e.g. the bus did not answer in time).
"""


def _version() -> str:
    try:
        return metadata.version("zerogate-api")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zerogate-api",
        description="The Zerogate control plane: serve the REST API, apply migrations, "
        "bootstrap an account.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser(
        "serve",
        help="run the REST API (default)",
        description="Apply pending migrations (unless ZG_MIGRATE_ON_START=false), then serve "
        "the REST API and answer zg.v1.api.* on the bus until SIGTERM.",
    )
    commands.add_parser(
        "migrate",
        help="apply pending database migrations and exit",
        description='Apply pending migrations under an advisory lock; print {"applied": [...]}.',
    )
    boot = commands.add_parser(
        "bootstrap",
        help="create an account, its first admin and an API token",
        description="Create an account, its Everyone group, a first account_admin_user and an "
        'API token; print {"account_id", "actor_id", "token"} as one JSON line. The token '
        "is shown only here. Exit 1 if the slug exists.",
    )
    boot.add_argument("--account-slug", required=True, help="short unique account name")
    boot.add_argument("--email", required=True, help="email of the first admin")
    boot.add_argument("--name", default=None, help="display name of the account")
    return parser


async def _bootstrap(settings: ApiSettings, slug: str, email: str, name: str | None) -> int:
    from zerogate.api.accounts.service import bootstrap_account

    dsn = settings.database_url.get_secret_value()
    await db.migrate_url(dsn)
    pool = await db.create_pool(dsn, min_size=1, max_size=2)
    try:
        result = await bootstrap_account(
            pool,
            slug=slug,
            email=email,
            name=name,
            token_ttl=timedelta(days=settings.api_token_ttl_days),
        )
    except ZerogateError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        await pool.close()
    line = {
        "account_id": str(result.account_id),
        "actor_id": str(result.actor_id),
        "token": result.token,
    }
    print(json.dumps(line))  # noqa: T201 - the CLI's output
    return 0


async def _migrate(settings: ApiSettings) -> int:
    applied = await db.migrate_url(settings.database_url.get_secret_value())
    print(json.dumps({"applied": applied}))  # noqa: T201 - the CLI's output
    return 0


def _serve(settings: ApiSettings) -> int:
    if settings.migrate_on_start:
        # Fail before uvicorn starts, with a message naming the setting; the app's
        # start-up then need not migrate a second time.
        asyncio.run(db.migrate_url(settings.database_url.get_secret_value()))
        settings = settings.model_copy(update={"migrate_on_start": False})

    from zerogate.api.app import create_app
    from zerogate.api.sign_in.redact import AccessLogFilter
    from zerogate.common import telemetry

    telemetry.setup("zerogate-api", log_level=settings.log_level)
    # The sign-in callback's query holds the provider's code: not in the access log.
    logging.getLogger("uvicorn.access").addFilter(AccessLogFilter())
    try:
        serve_asgi(
            create_app(settings),
            settings.api_host,
            settings.api_port,
            what="api",
            setting="ZG_API_PORT",
            proxy_headers=True,
        )
    except ConfigError as exc:
        print(f"error: {exc.detail}", file=sys.stderr)  # noqa: T201 - one line for the operator
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = load_settings(ApiSettings)
    command = args.command or "serve"
    try:
        if command == "migrate":
            return asyncio.run(_migrate(settings))
        if command == "bootstrap":
            return asyncio.run(_bootstrap(settings, args.account_slug, args.email, args.name))
        return _serve(settings)
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = f"{exc.__class__.__name__}: {exc}".splitlines()[0][:300]
        print(f"error: cannot use the database of ZG_DATABASE_URL ({reason})", file=sys.stderr)  # noqa: T201
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
