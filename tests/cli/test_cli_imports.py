"""What a command imports: ``certgate --version`` and ``policy check`` must not pay for parts
they do not use (asyncssh for the console backends, SQLAlchemy for --version, the YAML parser
and the evaluator for a duration). Checked in a fresh interpreter, by module names."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def modules_after(code: str) -> set[str]:
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=True)
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_cli_entry_point_loads_no_database_console_or_policy_parser() -> None:
    loaded = modules_after("import certgate.cli.main")
    assert "click" in loaded
    assert {"sqlalchemy", "asyncssh", "yaml", "certgate.policy.loader",
            "certgate.policy.evaluate", "certgate.consoles", "certgate.home"}.isdisjoint(loaded)


def test_reading_durations_does_not_load_the_policy_parser_or_evaluator() -> None:
    loaded = modules_after("import certgate.home")  # its limits read durations
    assert "certgate.policy.values" in loaded
    assert {"yaml", "certgate.policy.loader", "certgate.policy.evaluate",
            "sqlalchemy"}.isdisjoint(loaded)


def test_the_fleet_parses_console_uris_without_the_console_backends() -> None:
    loaded = modules_after("import certgate.fleet\n"
                           "from certgate.consoles import parse_console_uri\n"
                           "parse_console_uri('unix:/run/vm1.sock')")
    assert "certgate.consoles.uri" in loaded
    assert {"asyncssh", "certgate.consoles.ssh_backend", "certgate.consoles.hub"}.isdisjoint(
        loaded)


@pytest.mark.parametrize("package", ["certgate.consoles", "certgate.policy"])
def test_every_exported_name_resolves_to_its_modules_object(package: str) -> None:
    module = __import__(package, fromlist=["__all__"])
    for name in module.__all__:
        value = getattr(module, name)
        home = __import__(f"{package}.{module._MODULE_OF[name]}", fromlist=[name])
        assert value is getattr(home, name)
    assert sorted(module.__all__) == sorted(module._MODULE_OF)
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        module.nonesuch  # noqa: B018


def test_policy_check_loads_neither_the_yaml_parser_nor_asyncssh() -> None:
    # A cached policy is rebuilt without parsing: the parser comes only for a cache miss.
    loaded = modules_after("import certgate.cli.policy_commands\n"
                           "import certgate.access.service, certgate.policy_cache")
    assert {"yaml", "certgate.policy.loader", "asyncssh"}.isdisjoint(loaded)
