"""Who a request acts as (its own module: the auth middleware and the dashboard's sessions both hold one)."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Principal:
    """A token's name (never the token), or a trusted source."""

    name: str
    read_only: bool = False
