"""``placecast serve`` and ``placecast token create|list|revoke``.

Tokens live in the service's state file beside the store (``placecast.duckdb`` ->
``placecast.service.sqlite``), so ``token`` commands and a running server share them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from placecast.cli._app import app, command, console, err_console, print_table
from placecast.exceptions import ParameterError

if TYPE_CHECKING:
    from placecast.service import TokenStore

__all__ = ["token_app"]

DbOpt = Annotated[str, typer.Option("--db", help="Store: a DuckDB file or a PostgreSQL URL.")]
StateOpt = Annotated[Path | None, typer.Option(
    "--state", help="Service state file (tokens, jobs, audit log). Default: beside --db.")]

token_app = typer.Typer(name="token", help="Create, list and revoke service access tokens.",
                        no_args_is_help=True)
app.add_typer(token_app, name="token")


def _state_path(db: str, state: Path | None) -> Path:
    from placecast.service import state_path_for

    return state if state is not None else state_path_for(db)


def _tokens(db: str, state: Path | None) -> TokenStore:
    from placecast.service import StateDB, TokenStore

    return TokenStore(StateDB(_state_path(db, state)))


def _token_command(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register on ``token_app`` with the same error handling as ``command``."""
    import functools

    from placecast.exceptions import PlacecastError

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return function(*args, **kwargs)
            except PlacecastError as exc:
                err_console.print(f"[bold red]error:[/bold red] {exc}", highlight=False,
                                  soft_wrap=True)
                raise typer.Exit(2) from None

        token_app.command(name)(wrapper)
        return wrapper

    return decorate


@_token_command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="viewer, analyst or admin.")],
    name: Annotated[str, typer.Option("--name", help="Who or what the token is for.")] = "token",
    db: DbOpt = "placecast.duckdb",
    state: StateOpt = None,
    expires: Annotated[str | None, typer.Option(
        "--expires", help="Lifetime, e.g. 90d, 12h, 1y (at most 3660 days). Default: "
        "never expires.")] = None,
) -> None:
    """Create a token and print it once (only its hash is kept)."""
    token, info = _tokens(db, state).create(role, name, expires=expires)
    until = f", expires {info.expires}" if info.expires else ""
    err_console.print(f"token {info.id} ({info.role}, {info.name!r}{until}) created; it is "
                      "shown only now:", highlight=False)
    print(token)


@_token_command("list")
def token_list(db: DbOpt = "placecast.duckdb", state: StateOpt = None) -> None:
    """List tokens (ids, names, roles; never secrets)."""
    from rich.table import Table

    table = Table("id", "name", "role", "created", "expires", "revoked", "hash")
    for info in _tokens(db, state).list():
        table.add_row(info.id, info.name, info.role, info.created, info.expires or "never",
                      info.revoked or "",
                      info.scheme + (" (legacy: re-hashed on first use)"
                                     if info.scheme != "hmac-sha256" else ""))
    print_table(table)


@_token_command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="Token id from `placecast token list`.")],
    db: DbOpt = "placecast.duckdb",
    state: StateOpt = None,
) -> None:
    """Revoke a token at once (a running server refuses it on the next request)."""
    _tokens(db, state).revoke(token_id)
    console.print(f"token {token_id} revoked.")


@command("serve")
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on. Default "
                                      "loopback only; another address exposes the service "
                                      "to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    db: DbOpt = "placecast.duckdb",
    state: StateOpt = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", min=0.001,
                                                 help="Largest upload.")] = 50.0,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1,
                                          help="Most events per upload.")] = 1_000_000,
    job_workers: Annotated[int, typer.Option("--job-workers", min=1, max=64,
                                             help="Threads for background jobs.")] = 1,
    dask: Annotated[str | None, typer.Option("--dask", help="Run backtest origins on Dask: "
                                             "'local' or tcp://host:port.")] = None,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="Allow browser calls from this origin (repeatable). "
        "Default: none (CORS closed).")] = None,
    basemap: Annotated[Path | None, typer.Option(
        "--basemap", help="PMTiles file drawn under the dashboard map (vector tiles in the "
        "Protomaps basemap schema, or raster tiles); served to signed-in users only.")] = None,
    reference: Annotated[list[Path] | None, typer.Option(
        "--reference", help="Vector file (districts, streets; any CRS) drawn on the "
        "dashboard map (repeatable).")] = None,
) -> None:
    """Run the web service and dashboard (FastAPI + uvicorn) over a store."""
    try:
        import uvicorn

        from placecast.service import ServiceSettings, create_app
    except ImportError:
        raise ParameterError("the service needs its extra: pip install "
                             "'placecast[service]'") from None
    for origin in cors_origin or []:
        if origin == "*" or not origin.startswith(("http://", "https://")):
            raise ParameterError(f"--cors-origin {origin!r}: give a full origin such as "
                                 "https://dashboard.example.org ('*' is not allowed).")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        err_console.print(f"[bold yellow]warning:[/bold yellow] listening on {host}: the "
                          "service is reachable from the network. Put it behind TLS.",
                          highlight=False)
    settings = ServiceSettings(state_path=_state_path(db, state),
                               max_upload_bytes=int(max_upload_mb * 1024 * 1024),
                               max_rows=max_rows, job_workers=job_workers, dask=dask,
                               cors_origins=tuple(cors_origin or ()),
                               basemap=basemap, reference_layers=tuple(reference or ()))
    application = create_app(db, settings)
    if not application.state.tokens.list():
        err_console.print("no token yet: create one with `placecast token create --role "
                          f"admin --db {db}`.", highlight=False)
    console.print(f"placecast service on http://{host}:{port}/ (store {db})", highlight=False)
    try:
        uvicorn.run(application, host=host, port=port, log_level="info",
                    server_header=False, proxy_headers=False)
    finally:
        application.state.close()
