"""Write section 1 man pages for finchd and each subcommand from its argparse parser.

Usage: python3 packaging/manpages.py OUTPUT_DIR

The pages are generated from `finchd.cli.parser()`, so every subcommand and
flag that the command accepts has a page entry. finchd and its libraries must
be importable.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

from finchd import __version__
from finchd.cli import parser as finchd_parser

FILES_SECTION = r""".SH FILES
.TP
.I $XDG_CONFIG_HOME/finchd/finchd.toml
Settings. Each key is the name of a flag, with underscores in place of hyphens.
.TP
.I $XDG_RUNTIME_DIR/finch.sock
The Docker API socket.
.TP
.I $XDG_DATA_HOME/finchd
Images, containers, volumes and CNI state.
.TP
.I $XDG_RUNTIME_DIR/finchd
The engine's sockets, runtime state, log and lock.
.TP
.I /usr/libexec/finchd/bin
nerdctl, containerd, buildkitd and rootlesskit carried by the package.
"""

DESCRIPTIONS = {
    None: (
        "finchd serves the Docker Engine API on a Unix socket for one user. "
        "Each request is carried out by nerdctl against a rootless containerd and "
        "buildkitd that run under rootlesskit, so nothing runs as root. Docker "
        "clients reach it with DOCKER_HOST=unix://$XDG_RUNTIME_DIR/finch.sock. "
        "With the packaged systemd user units, "
        "\\fBsystemctl \\-\\-user enable \\-\\-now finch.socket\\fR starts it on the "
        "first connection."
    ),
    "serve": (
        "Serve the Docker Engine API on a Unix socket in the foreground. When "
        "started by systemd socket activation, the socket comes from systemd. "
        "The rootless engine is started when it is not already running."
    ),
    "engine": (
        "Run the rootless engine in the foreground: rootlesskit with slirp4netns "
        "networking, and containerd and buildkitd inside it. Each user runs at "
        "most one engine. SIGTERM stops buildkitd, containerd and rootlesskit."
    ),
    "check": (
        "Check that this machine and user can run rootless containers: "
        "subordinate ids, newuidmap, /dev/net/tun, user namespaces, engine "
        "executables and their versions, cgroups. Each failed check prints the "
        "command that fixes it. The exit status is 1 when containers cannot run."
    ),
}


def escape(text: str) -> str:
    """Escape text for roff: backslashes, hyphens, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def header(name: str, summary: str, date: str) -> list[str]:
    return [
        f'.TH {name.upper()} 1 "{date}" "finchd {__version__}" "User Commands"',
        ".SH NAME",
        f"{escape(name)} \\- {escape(summary)}",
    ]


def option_lines(parser: argparse.ArgumentParser) -> list[str]:
    lines = [".SH OPTIONS"]
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        flags = ", ".join(f"\\fB{escape(flag)}\\fR" for flag in action.option_strings)
        if action.nargs != 0:
            flags += f" \\fI{escape(action.metavar or action.dest.upper())}\\fR"
        lines += [".TP", flags, escape(action.help or "")]
    return lines


def subcommands(root: argparse.ArgumentParser) -> dict[str, tuple[str, argparse.ArgumentParser]]:
    """Return each subcommand's name, help text and parser, in definition order."""
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            return {name: (helps.get(name, ""), sub) for name, sub in action.choices.items()}
    return {}


def main_page(root: argparse.ArgumentParser, commands: dict, date: str) -> str:
    lines = header("finchd", "rootless Docker Engine API daemon", date)
    lines += [
        ".SH SYNOPSIS",
        "\\fBfinchd\\fR [\\fB\\-\\-version\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        DESCRIPTIONS[None],
        ".SH COMMANDS",
    ]
    for name, (summary, _) in commands.items():
        lines += [".TP", f"\\fB{escape(name)}\\fR", escape(summary) + "; see",
                  f".BR finchd\\-{escape(name)} (1)."]
    lines += option_lines(root)
    lines.append(FILES_SECTION.rstrip("\n"))
    see_also = ",\n".join(f".BR finchd\\-{escape(name)} (1)" for name in commands)
    lines += [".SH SEE ALSO", see_also + ",", ".BR systemctl (1),", ".BR docker (1)"]
    return "\n".join(lines) + "\n"


def command_page(name: str, summary: str, sub: argparse.ArgumentParser, date: str) -> str:
    lines = header(f"finchd-{name}", summary, date)
    lines += [
        ".SH SYNOPSIS",
        f"\\fBfinchd {escape(name)}\\fR [\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        DESCRIPTIONS.get(name, escape(summary[:1].upper() + summary[1:] + ".")),
    ]
    lines += option_lines(sub)
    lines.append(FILES_SECTION.rstrip("\n"))
    lines += [".SH SEE ALSO", ".BR finchd (1)"]
    return "\n".join(lines) + "\n"


def build_date() -> str:
    """Return the page date, from SOURCE_DATE_EPOCH when set, for reproducible builds."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        moment = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.timezone.utc)
    else:
        moment = datetime.datetime.now(tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: manpages.py OUTPUT_DIR", file=sys.stderr)
        return 2
    output = Path(argv[1])
    output.mkdir(parents=True, exist_ok=True)
    date = build_date()
    root = finchd_parser()
    commands = subcommands(root)
    (output / "finchd.1").write_text(main_page(root, commands, date))
    for name, (summary, sub) in commands.items():
        (output / f"finchd-{name}.1").write_text(command_page(name, summary, sub, date))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
