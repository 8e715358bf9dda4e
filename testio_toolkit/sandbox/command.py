"""The sandbox's one command: `testio-toolkit sandbox` and `python -m testio_toolkit.sandbox`.

Usage::

    $ python -m testio_toolkit.sandbox --preset medium --latency-ms 50 --fault error_rate=0.1
    Sandbox (medium) serving at http://127.0.0.1:40213/customer/v2

Both names run this click command (the toolkit's CLI registers it as its ``sandbox``
subcommand), so they take the same options and defaults. It imports nothing from the rest
of testio_toolkit: the sandbox stands alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click
from platformdirs import user_data_dir

from .presets import PRESETS


def fault_switches(items: Iterable[str], poison: Iterable[int] = ()) -> dict[str, Any]:
    """The Faults switches that ``--fault NAME=VALUE`` options (and ``--poison``) ask for.

    A VALUE is read as JSON (``3``, ``0.1``, ``true``, ``null``), else kept as text
    (``http-date``, ``insert,move_up``)::

        fault_switches(["list_moves_every=3", "list_moves=insert,move_up"])
    """
    poisoned = set(poison)
    switches: dict[str, Any] = {"poisoned_test_ids": poisoned} if poisoned else {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--fault")
        try:
            switches[name.strip()] = json.loads(text)
        except ValueError:
            switches[name.strip()] = text  # a plain word such as http-date
    return switches


@click.command(name="sandbox", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--preset", default="small", type=click.Choice(sorted(PRESETS)), show_default=True)
@click.option("--port", default=0, show_default=True, help="0 picks a free port.")
@click.option("--seed", default=0, show_default=True)
@click.option("--latency-ms", default=0.0, show_default=True, help="Added to every request.")
@click.option(
    "--capacity-rps",
    type=float,
    default=None,
    help="Requests a second it serves; beyond, 429 with Retry-After (and it slows down).",
)
@click.option(
    "--capacity-in-flight",
    type=int,
    default=None,
    help="Requests it handles at once; beyond, 503 (and it slows down as it fills).",
)
@click.option("--token", default="sandbox-token", show_default=True, help="The token it accepts.")
@click.option("--poison", type=int, multiple=True, help="Test id whose list windows fail.")
@click.option(
    "--customers",
    is_flag=True,
    help="Serve three customers of different sizes instead (acme, globex, initech: each its "
    "own server, token and data), and print how to add them as accounts.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any fault switch of testio_toolkit.sandbox.Faults (repeatable), e.g. "
    "error_rate=0.1, drop_rate=0.05, rate_limit_next=3, retry_after_format=http-date, "
    "bugs_524_over=5, hang_rate=0.01, fail_after=100, garbage_rate=0.02, unauthorized=true, "
    "list_moves_every=3, list_moves=insert,move_up, capacity_burst=5.",
)
def sandbox(
    preset: str,
    port: int,
    seed: int,
    latency_ms: float,
    capacity_rps: float | None,
    capacity_in_flight: int | None,
    token: str,
    poison: tuple[int, ...],
    customers: bool,
    faults: tuple[str, ...],
) -> None:
    """Serve the bundled TestIO simulator on 127.0.0.1 until Ctrl-C.

    Example: testio-toolkit sandbox --preset medium --latency-ms 300 --capacity-rps 20
    """
    from .sandbox import Sandbox

    switches = fault_switches(faults, poison)
    if capacity_rps is not None:
        switches["capacity_rps"] = capacity_rps
    if capacity_in_flight is not None:
        switches["capacity_in_flight"] = capacity_in_flight
    if customers:
        _serve_customers(latency_ms, switches)
        return
    server = Sandbox(preset=preset, seed=seed, port=port, latency_ms=latency_ms, token=token)
    try:
        server.set_faults(**switches)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    server.start()
    click.echo(f"Sandbox ({preset}, seed {seed}) serving at {server.url}")
    click.echo(f"export TESTIO_CUSTOMER_API_BASE_URL={server.url}")
    click.echo(f"export TESTIO_CUSTOMER_API_TOKEN={server.token}   # the sandbox's own token")
    # Its own database: sandbox data never lands in a real account's testio.db. (The same
    # per-user folder as testio_toolkit.config's, named here: the sandbox imports no toolkit.)
    database = Path(user_data_dir("testio-toolkit", appauthor=False)) / f"sandbox-{preset}.db"
    click.echo(f"export TESTIO_DB_PATH={database}   # sample data: keep it apart")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def _serve_customers(latency_ms: float, switches: dict[str, Any]) -> None:
    """`sandbox --customers`: several accounts, each its own server, until Ctrl-C."""
    import time

    from .customers import SandboxCustomers

    served = SandboxCustomers(latency_ms=latency_ms)
    try:
        for sb in served:
            sb.set_faults(**switches)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--fault") from None
    served.start()
    click.echo(f"Sandbox customers serving: {', '.join(served.names())}")
    for name, sb in served.sandboxes.items():
        # The sandbox's own tokens: sample data, not secrets.
        click.echo(f"echo {sb.token} | testio-toolkit account add {name} --url {sb.url}")
    click.echo("then: testio-toolkit sync --all", nl=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        served.stop()
