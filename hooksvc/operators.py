"""Operators: named people (or machines) with a role, and the one check of what a role may do.

Roles are ordered: a `viewer` reads; a `deployer` also deploys, redeploys, rolls back and cancels;
an `admin` also locks, unlocks and deploys through a freeze. Each action names the least role it
needs and `require` refuses anyone below it (SPEC §11). Pure: no Redis, no Flask.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from hooksvc.errors import Forbidden


class Role(enum.StrEnum):
    """What an operator may do; each role may do everything the roles below it may."""

    VIEWER = "viewer"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may."""
        return self.rank >= needed.rank


_RANKS = {Role.VIEWER: 0, Role.DEPLOYER: 1, Role.ADMIN: 2}

#: The role of each `server.api_tokens` token: the tokens of configs written before operators had
#: names could do everything, and keep doing so.
API_TOKEN_ROLE = Role.ADMIN


def api_token_name(number: int) -> str:
    """The operator name of the `number`th (1-based) token of `server.api_tokens`."""
    return f"token-{number}"


def parse_role(value: object) -> Role:
    """The role `value` names; ValueError naming the roles there are otherwise."""
    for role in Role:
        if value == role.value:
            return role
    raise ValueError(f"expected one of {', '.join(r.value for r in Role)}, got {value!r}")


@dataclass(frozen=True)
class Operator:
    """Who is asking: a name (as configured, or from single sign-on) and the role it has."""

    name: str
    role: Role

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "role": self.role.value}


def require(operator: Operator, role: Role, action: str) -> Operator:
    """`operator` when its role allows `role`'s actions, else Forbidden naming the role that is missing.

    `action` says what was asked in a few words ("deploying shop"), for the message.
    """
    if not operator.role.allows(role):
        raise Forbidden(f"{action} needs the {role.value} role ({operator.name} is a {operator.role.value})")
    return operator


def find_by_token(credentials: Iterable[tuple[Operator, str]], presented: str) -> Operator | None:
    """The operator whose token `presented` is, comparing in constant time against every token
    (no early exit on a match, so the time taken tells nothing of which one, or whether any)."""
    found = None
    if not presented:
        return None
    for operator, token in credentials:
        if hmac.compare_digest(token.encode(), presented.encode()):
            found = found or operator
    return found
