"""``hookline keygen SCHEME``: a test key pair for a scheme whose provider signs with a
private key (sendgrid, discord, standard-webhooks v1a).

The public key goes into the source's ``public_keys``; ``hookline send --private-key``
signs with the private one, as the provider would. A pair made here is for tests and
local development: in production the provider holds the private key and shows you only
the public one.
"""

from __future__ import annotations

import click

from hookline.ingest.schemes import SCHEME_NAMES, get_scheme


@click.command()
@click.argument("scheme", type=click.Choice(SCHEME_NAMES), metavar="SCHEME")
def keygen(scheme: str) -> None:
    """Print a test key pair for SCHEME (sendgrid, discord, standard-webhooks, svix)."""
    impl = get_scheme(scheme, header="X-Unused")
    try:
        private, public = impl.generate()
    except ValueError as exc:
        raise click.ClickException(
            f"{exc}: there is no key pair to make; put the provider's secret in `secrets`"
        ) from None
    click.echo(f"private key (for hookline send --private-key): {private}")
    click.echo(f"public key (for sources.NAME.public_keys):     {public}")
