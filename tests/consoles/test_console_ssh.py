"""ssh:// consoles against a real OpenSSH sshd on 127.0.0.1."""

import pytest
from console_testing import read_until, run

from certgate.consoles import ConsoleUnavailable, SshConsole, UpstreamSshOptions, open_console

pytestmark = pytest.mark.slow


def _target(sshd):
    return SshConsole(sshd.user, "127.0.0.1", sshd.port)


def test_command_output_comes_back_and_resize_reaches_the_remote_pty(sshd):
    options = UpstreamSshOptions(
        client_keys=(str(sshd.client_key),),
        known_hosts=sshd.known_hosts,
        command="stty size; read line; stty size; echo got:$line; exit 7",
    )

    async def body():
        console = await open_console(_target(sshd), cols=80, rows=24, ssh_options=options)
        try:
            await read_until(console.read, b"24 80")
            await console.resize(120, 40)
            await console.write(b"hi\r")
            out = await read_until(console.read, b"got:hi")
            assert b"40 120" in out
            while await console.read():
                pass
            assert console.end_reason.endswith("remote shell exited with status 7")
            assert await console.send_break() is True
        finally:
            await console.close()

    run(body())


def test_interactive_shell_runs_commands(sshd):
    options = UpstreamSshOptions(client_keys=(str(sshd.client_key),), known_hosts=sshd.known_hosts)

    async def body():
        console = await open_console(_target(sshd), ssh_options=options)
        try:
            await console.write(b"echo $((6*7))-marker\r")
            output = await read_until(console.read, b"42-marker")
            assert b"42-marker" in output  # the shell computed it: not our own echo
        finally:
            await console.close()

    run(body())


def test_a_trusted_host_ca_verifies_the_guest(sshd):
    options = UpstreamSshOptions(
        client_keys=(str(sshd.client_key),),
        trusted_host_ca_keys=(sshd.host_ca_pub,),
        command="echo ok-ca",
    )

    async def body():
        console = await open_console(_target(sshd), ssh_options=options)
        try:
            assert b"ok-ca" in await read_until(console.read, b"ok-ca")
        finally:
            await console.close()

    run(body())


def test_unknown_host_key_is_refused(sshd, tmp_path):
    stranger = tmp_path / "other_known_hosts"
    stranger.write_text(
        f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIHd3e62gg7Q0xPQmO0nPcrg1lBCNbrTgwJQq7SbOB5jq\n"
    )
    options = UpstreamSshOptions(client_keys=(str(sshd.client_key),), known_hosts=stranger)
    with pytest.raises(ConsoleUnavailable, match="host key not trusted"):
        run(open_console(_target(sshd), ssh_options=options))


def test_no_host_key_verification_configured_is_refused_not_skipped(sshd):
    with pytest.raises(ConsoleUnavailable, match="known_hosts or host CA"):
        run(open_console(_target(sshd), ssh_options=None))
    with pytest.raises(ConsoleUnavailable, match="cannot verify host keys"):
        run(
            open_console(
                _target(sshd), ssh_options=UpstreamSshOptions(client_keys=(str(sshd.client_key),))
            )
        )
