"""Operators and roles: the order of roles, the one role check, and finding an operator by token."""

from __future__ import annotations

import pytest

from hooksvc.errors import Forbidden
from hooksvc.operators import API_TOKEN_ROLE, Operator, Role, api_token_name, find_by_token, parse_role, require

ALICE = Operator("alice", Role.DEPLOYER)


class TestRoles:
    def test_each_role_allows_what_the_roles_below_it_allow(self) -> None:
        """Admin allows everything, deployer allows deployer and viewer, viewer only viewer."""
        allowed = {(have, need) for have in Role for need in Role if have.allows(need)}
        assert allowed == {
            (Role.VIEWER, Role.VIEWER),
            (Role.DEPLOYER, Role.VIEWER), (Role.DEPLOYER, Role.DEPLOYER),
            (Role.ADMIN, Role.VIEWER), (Role.ADMIN, Role.DEPLOYER), (Role.ADMIN, Role.ADMIN),
        }

    def test_parse_role_names_the_roles_on_a_typo(self) -> None:
        """A role name parses; anything else is refused with the list of roles."""
        assert parse_role("admin") is Role.ADMIN
        with pytest.raises(ValueError, match="viewer, deployer, admin, got 'root'"):
            parse_role("root")

    def test_api_tokens_are_admins_named_by_their_position(self) -> None:
        """`server.api_tokens` keep every right they had, under the names token-1, token-2, …."""
        assert API_TOKEN_ROLE is Role.ADMIN
        assert [api_token_name(n) for n in (1, 2)] == ["token-1", "token-2"]


class TestRequire:
    def test_a_role_high_enough_passes(self) -> None:
        """require hands back the operator when its role suffices."""
        assert require(ALICE, Role.DEPLOYER, "deploying shop") is ALICE
        assert require(ALICE, Role.VIEWER, "reading") is ALICE

    def test_a_role_too_low_is_forbidden_naming_the_missing_role(self) -> None:
        """Below the role, a 403 says what was asked, which role it needs and what the operator is."""
        with pytest.raises(Forbidden) as caught:
            require(ALICE, Role.ADMIN, "locking shop")
        assert caught.value.status_code == 403
        assert str(caught.value) == "locking shop needs the admin role (alice is a deployer)"


class TestFindByToken:
    def test_the_matching_operator_is_found_and_nothing_else(self) -> None:
        """A token finds its operator; an unknown or empty token finds no one."""
        bob = Operator("bob", Role.VIEWER)
        credentials = [(ALICE, "a" * 20), (bob, "b" * 20)]
        assert find_by_token(credentials, "b" * 20) == bob
        assert find_by_token(credentials, "c" * 20) is None
        assert find_by_token(credentials, "") is None
