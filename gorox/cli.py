"""The ``gorox`` command.

    gorox [ACTION] [OPTIONS]

Actions: serve (the default), check, help, version. Options are written Gorox-style with one
dash (``-config FILE``), and ``--config`` works too.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from hemi import __version__
from hemi.config.errors import ConfigError
from hemi.core.logs import setup_error_log
from hemi.core.stage import Dirs, Stage

PROGRAM = "gorox"
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
EMBEDDED_CONFIG = os.path.join(PACKAGE_DIR, "conf", "gorox.conf")
USER_PACKAGES = ("apps", "svcs", "srvs", "jobs", "exts")

USAGE = f"""\
gorox {__version__}, a web server, app server and proxy in one engine (Hemi).

Usage:
  gorox [ACTION] [OPTIONS]

Actions:
  serve      start serving (the default action)
  check      check a config file: print a one-line summary, or every error with its place
  help       show this help
  version    show the version

Options:
  -config FILE   the config file (default: <base>/conf/gorox.conf if it exists, else the
                 built-in default config, which serves a welcome page on 127.0.0.1:3080)
  -base DIR      the base directory, %baseDir in configs (default: the current directory);
                 data/log, data/tmp and data/var are created under it
  -single        run in one process (the only mode of this version)
  -debug N       log level: 0 info, 1 and up debug
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"gorox: {message}\nRun 'gorox help' for usage.\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROGRAM, add_help=False)
    p.add_argument("-config", "--config", dest="config")
    p.add_argument("-base", "--base", dest="base")
    p.add_argument("-single", "--single", dest="single", action="store_true")
    p.add_argument("-debug", "--debug", dest="debug", type=int, default=0)
    return p


def load_user_components(base: str) -> None:
    """Import the program's own component packages (apps/, svcs/, srvs/, jobs/, exts/) from the
    base directory, which registers their signs the way built-ins register theirs."""
    if base not in sys.path:
        sys.path.insert(0, base)
    for name in USER_PACKAGES:
        if os.path.isfile(os.path.join(base, name, "__init__.py")):
            importlib.import_module(name)


def load_components(base: str) -> None:
    importlib.import_module("hemi.contrib")
    load_user_components(base)


def resolve_config(config: str | None, base: str) -> str:
    if config:
        return os.path.abspath(os.path.join(base, config)) if not os.path.isabs(config) else config
    local = os.path.join(base, "conf", "gorox.conf")
    return local if os.path.isfile(local) else EMBEDDED_CONFIG


def check(config_file: str, dirs: Dirs) -> int:
    try:
        stage = Stage.from_file(config_file, dirs)
        stage.configure()
    except ConfigError as e:
        print(f"{config_file}: {len(e.problems)} error{'s' if len(e.problems) != 1 else ''}", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    counts = []
    for kind, comps in stage.by_kind.items():
        if comps and kind != "fixture":
            counts.append(f"{len(comps)} {kind}{'s' if len(comps) != 1 else ''}")
    print(f"{config_file}: ok ({', '.join(counts) or 'no components'})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    action = "serve"
    if args and (not args[0].startswith("-") or args[0] in ("-h", "--help")):
        action = args.pop(0)
    if action in ("help", "-h", "--help"):
        print(USAGE, end="")
        return 0
    if action == "version":
        print(f"gorox {__version__}")
        return 0
    if action not in ("serve", "check"):
        sys.stderr.write(f"gorox: unknown action '{action}'\nRun 'gorox help' for usage.\n")
        return 2
    opts = _parser().parse_args(args)
    base = os.path.abspath(opts.base or os.getcwd())
    dirs = Dirs.under(base)
    config_file = resolve_config(opts.config, base)
    load_components(base)
    if action == "check":
        return check(config_file, dirs)
    dirs.create()
    setup_error_log(dirs.logs, level=logging.DEBUG if opts.debug > 0 else logging.INFO)
    from hemi.procman.single import serve
    try:
        return serve(config_file, dirs)
    except ConfigError as e:
        print(f"{config_file}: {len(e.problems)} error{'s' if len(e.problems) != 1 else ''}", file=sys.stderr)
        for problem in e.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"gorox: cannot start: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
