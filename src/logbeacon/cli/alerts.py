"""`logbeacon alerts check|test`: validate an alerts file, send a sample alert to its webhooks.

Both read the same TOML file as `logbeacon serve --alerts` (`--alerts`/`LOGBEACON_ALERTS`).
`test` builds a sample alert with the server's own payload, signing and retry code, so what
a receiver gets is exactly what a real alert looks like (with `"test": true` in `details`).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from logbeacon.cli._common import fail, safe_text, stderr_console, stdout_console

if TYPE_CHECKING:
    from logbeacon.server.alerts_config import AlertsConfig, Webhook
    from logbeacon.server.alerts_delivery import DeliveryResult

__all__ = ["register"]

alerts_app = typer.Typer(
    name="alerts",
    help="Check the alerts file and send test alerts to its webhooks.",
    no_args_is_help=True,
)

AlertsOption = Annotated[
    Path,
    typer.Option(
        "--alerts",
        envvar="LOGBEACON_ALERTS",
        help="The alerts TOML file (the one given to `logbeacon serve --alerts`).",
        show_default=False,
    ),
]


def register(app: typer.Typer) -> None:
    app.add_typer(alerts_app)


def _load(path: Path) -> AlertsConfig:
    from logbeacon.exceptions import ConfigError
    from logbeacon.server.alerts_config import load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc), code=2)


@alerts_app.command("check")
def check(alerts: AlertsOption) -> None:
    """Validate the alerts file and list its rules and webhooks."""
    config = _load(alerts)
    console = stdout_console()
    console.print(safe_text(f"{alerts}: ok, {len(config.rules)} rule(s)"))
    for rule in config.rules:
        scope = ", ".join(rule.environments) or "every environment"
        targets = ", ".join(rule.webhooks) or "history only"
        console.print(safe_text(f"  rule {rule.name}: {rule.type} in {scope} → {targets}"))
    for webhook in config.webhooks:
        signed = "signed" if webhook.secret else "unsigned"
        console.print(safe_text(f"  webhook {webhook.name}: {webhook.format}, {signed}"))


@alerts_app.command("test")
def send_test(
    alerts: AlertsOption,
    webhook: Annotated[
        list[str] | None,
        typer.Option("--webhook", help="Only this webhook (repeatable; default: all)."),
    ] = None,
    attempts: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=100,
            help="Attempts per webhook (default: the webhook's max_attempts).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Send a sample alert to the webhooks of the alerts file; exit 1 if one fails."""
    from dataclasses import replace

    config = _load(alerts)
    chosen = list(config.webhooks)
    if webhook:
        unknown = sorted(set(webhook) - {w.name for w in chosen})
        if unknown:
            fail(f"no webhook named {', '.join(unknown)} in {alerts}", code=2)
        chosen = [w for w in chosen if w.name in webhook]
    if not chosen:
        fail(f"{alerts} has no [[webhook]] to send to", code=2)
    if attempts is not None:
        chosen = [replace(w, max_attempts=attempts) for w in chosen]
    results = asyncio.run(_send_samples(config, chosen))
    console = stderr_console()
    failed = 0
    for target, result in zip(chosen, results, strict=True):
        if result.status == "delivered":
            line = f"webhook {target.name}: delivered (attempt {result.attempts})"
        else:
            failed += 1
            line = (
                f"webhook {target.name}: failed after {result.attempts} attempt(s): "
                f"{result.last_error}"
            )
        console.print(safe_text(line))
    if failed:
        raise typer.Exit(1)


async def _send_samples(config: AlertsConfig, webhooks: list[Webhook]) -> list[DeliveryResult]:
    import httpx

    from logbeacon.redact import default_redactor
    from logbeacon.server.alerts_delivery import deliver
    from logbeacon.server.alerts_notify import PendingAlert, alert_document, payload_body
    from logbeacon.server.alerts_rules import Occurrence

    now = time.time()
    rule = config.rules[0] if config.rules else None
    if rule is None:
        from logbeacon.server.alerts_config import Rule

        rule = Rule(name="test", type="new_error_group")
    occurrence = Occurrence(
        rule=rule,
        group=("test",),
        service="logbeacon",
        environment="test",
        at=now,
        title="Test alert from logbeacon: if you can read this, the webhook works",
        details={"test": True, "error_type": "ExampleError", "error_message": "sample"},
        link="#/errors",
    )
    pending = PendingAlert(first=occurrence, count=1, first_at=now, last_at=now, due=now)
    base_url = config.dashboard_url or "http://127.0.0.1:8765"
    document = alert_document(pending, now=now, base_url=base_url, redactor=default_redactor())
    async with httpx.AsyncClient(follow_redirects=False) as client:
        return list(
            await asyncio.gather(
                *(
                    deliver(client, target, payload_body(document, target.format))
                    for target in webhooks
                )
            )
        )
