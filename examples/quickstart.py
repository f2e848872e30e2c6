"""Quickstart: a flow that creates things, fails, and undoes what it did.

Opening a shop for a new customer takes three steps: reserve a domain name,
create a database, then charge the customer's card. The card is declined, so
flowkit reverts every step that ran, newest first, and nothing is left behind.

Everything runs in this process on the default serial engine; no server is
needed. Run it with::

    python examples/quickstart.py
"""

from __future__ import annotations

from typing import Any

from flowkit import engines, task
from flowkit.patterns import linear_flow
from flowkit.types import notifier

# A stand-in for the outside world: what exists right now, by kind.
CLOUD: dict[str, set[str]] = {"domains": set(), "databases": set()}


class CardDeclined(Exception):
    """The payment provider refused the charge."""


class ReserveDomain(task.Task):
    """Reserve ``<shop>.example`` and provide the name as ``domain``."""

    default_provides = "domain"

    def execute(self, shop: str) -> str:
        domain = f"{shop}.example"
        CLOUD["domains"].add(domain)
        print(f"  [{self.name}] reserved {domain}")
        return domain

    def revert(self, shop: str, result: Any, **kwargs: Any) -> None:
        # ``result`` is what execute returned; it names exactly what to undo.
        CLOUD["domains"].discard(result)
        print(f"  [{self.name}] released {result}")


class CreateDatabase(task.Task):
    """Create the shop's database and provide its name as ``database``."""

    default_provides = "database"

    def execute(self, shop: str, domain: str) -> str:
        database = f"db_{shop}"
        CLOUD["databases"].add(database)
        print(f"  [{self.name}] created {database} for {domain}")
        return database

    def revert(self, shop: str, domain: str, result: Any, **kwargs: Any) -> None:
        CLOUD["databases"].discard(result)
        print(f"  [{self.name}] dropped {result}")


class ChargeCard(task.Task):
    """Charge the first month; this customer's card is always declined."""

    def execute(self, shop: str, database: str) -> None:
        print(f"  [{self.name}] charging the owner of {shop}...")
        raise CardDeclined(f"card for {shop} was declined")

    def revert(self, shop: str, database: str, **kwargs: Any) -> None:
        print(f"  [{self.name}] nothing was charged, nothing to refund")


def build_flow() -> linear_flow.Flow:
    """Return the three steps in the order they must run."""
    return linear_flow.Flow("open-shop").add(
        ReserveDomain("reserve_domain"),
        CreateDatabase("create_database"),
        ChargeCard("charge_card"),
    )


def show_atom_change(state: str, details: dict[str, Any]) -> None:
    """Print one atom state change as the engine announces it."""
    print(f"  {details['task_name']}: {details['old_state']} -> {state}")


def main() -> None:
    """Run the flow, report every state change and the final outcome."""
    engine = engines.load(build_flow(), store={"shop": "bakery"})
    engine.atom_notifier.register(notifier.Notifier.ANY, show_atom_change)

    print("running flow 'open-shop' for shop 'bakery'")
    try:
        engine.run()
    except CardDeclined as exc:
        print(f"flow failed: {exc}")
    else:
        print("flow succeeded")

    print(f"final flow state: {engine.storage.get_flow_state()}")
    leftovers = sorted(name for names in CLOUD.values() for name in names)
    print(f"left behind: {', '.join(leftovers) if leftovers else 'nothing'}")


if __name__ == "__main__":
    main()
