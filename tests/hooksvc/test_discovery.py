"""Registry discovery: the entries a package's modules declare."""

from __future__ import annotations

import pytest

from hooksvc import providers
from hooksvc.discovery import declared
from hooksvc.providers import Provider


class TestDeclared:
    def test_finds_every_declaring_module_in_name_order(self) -> None:
        """Every provider module's PROVIDER is found, sorted by module name; shared modules are skipped."""
        found = declared("hooksvc.providers", providers.__path__, "PROVIDER", Provider)
        assert [p.route for p in found] == ["bitbucket", "bitbucket-server", "git", "gitea", "github", "gitlab",
                                            "gogs"]

    def test_a_declaration_of_the_wrong_type_names_its_module(self) -> None:
        """A module whose attribute is not of the registry's type fails, naming the module and both types."""
        with pytest.raises(TypeError, match=r"hooksvc\.providers\.bitbucket\.PROVIDER must be a int, got Provider"):
            declared("hooksvc.providers", providers.__path__, "PROVIDER", int)
