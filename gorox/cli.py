"""The ``gorox`` command.

    gorox [ACTION] [OPTIONS]

Actions: serve (the default: a leader and its workers, ``hemi.procman``), check, help, version,
and the commands for a running leader (pids, info, reconf, ...). Options are written Gorox-style
with one dash (``-config FILE``), and ``--config`` works too.
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

DEFAULT_CMDUI = "127.0.0.1:9527"
CLIENT_ACTIONS = ("pids", "info", "quit", "stop", "reconf", "reload", "reopen", "ping", "rework")

USAGE = f"""\
gorox {__version__}, a web server, app server and proxy in one engine (Hemi).

Usage:
  gorox [ACTION] [OPTIONS]

Actions:
  serve      start serving (the default action): a leader process and its workers
  check      check a config file: print a one-line summary, or every error with its place
  help       show this help
  version    show the version

Actions for a running leader (found with -cmdui, or by -base through data/var/gorox.cmdui):
  ping       is it there?
  pids       the pids of the leader and its workers
  info       pids, uptime, config, and per worker: stage, connections, requests, memory
  reconf     reload the config (a broken one is rejected with its errors; serving continues)
  reopen     reopen the log files (after logrotate moved them)
  rework     replace every worker by a fresh process, one at a time
  quit       stop accepting, finish in-flight requests (within -grace), then exit
  stop       exit now

Options:
  -config FILE      the config file (default: <base>/conf/gorox.conf if it exists, else the
                    built-in default config, which serves a welcome page on 127.0.0.1:3080)
  -base DIR         the base directory, %baseDir in configs (default: the current directory);
                    data/log, data/tmp and data/var are created under it
  -workers N        worker processes (default: the number of CPUs, here {os.cpu_count() or 1})
  -single           run in one process, no leader (for debugging); signals control it
  -daemon           run in the background; output goes to data/log/gorox.out and .err
  -cmdui ADDR       the admin channel (default {DEFAULT_CMDUI}; host:0 picks a free port)
  -webui ADDR       serve the admin web page and /metrics there (default: off)
  -grace SECONDS    how long quit waits for in-flight requests (default 30)
  -maxRSS SIZE      recycle a worker whose memory exceeds SIZE (e.g. 512M; default: never)
  -maxRequests N    recycle a worker after N requests (default: never)
  -json             info: print everything as JSON
  -debug N          log level: 0 info, 1 and up debug

Signals to the leader: HUP reconf, TERM and QUIT quit, INT stop, USR1 reopen.
"""


def _size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    t = text.strip().lower().rstrip("b").rstrip("i")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad size {text!r}, expected e.g. 512M") from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"gorox: {message}\nRun 'gorox help' for usage.\n")
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROGRAM, add_help=False)
    p.add_argument("-config", "--config", dest="config")
    p.add_argument("-base", "--base", dest="base")
    p.add_argument("-single", "--single", dest="single", action="store_true")
    p.add_argument("-daemon", "--daemon", dest="daemon", action="store_true")
    p.add_argument("-workers", "--workers", dest="workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("-cmdui", "--cmdui", dest="cmdui")
    p.add_argument("-webui", "--webui", dest="webui", default="")
    p.add_argument("-grace", "--grace", dest="grace", type=float, default=30.0)
    p.add_argument("-maxRSS", "--maxRSS", dest="max_rss", type=_size, default=0)
    p.add_argument("-maxRequests", "--maxRequests", dest="max_requests", type=int, default=0)
    p.add_argument("-json", "--json", dest="json", action="store_true")
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
        stage.check()  # apps imported, certificates loaded: what would fail at start
    except ConfigError as e:
        _print_problems(config_file, e)
        return 1
    counts = []
    for kind, comps in stage.by_kind.items():
        if comps and kind != "fixture":
            counts.append(f"{len(comps)} {kind}{'s' if len(comps) != 1 else ''}")
    print(f"{config_file}: ok ({', '.join(counts) or 'no components'})")
    return 0


def _print_problems(config_file: str, e: ConfigError) -> None:
    print(f"{config_file}: {len(e.problems)} error{'s' if len(e.problems) != 1 else ''}", file=sys.stderr)
    for problem in e.problems:
        print(f"  {problem}", file=sys.stderr)


def _child_env() -> dict[str, str]:
    """The environment of a worker or daemon: ours, with this package importable for sure."""
    root = os.path.dirname(PACKAGE_DIR)
    path = os.environ.get("PYTHONPATH", "")
    env = {k: v for k, v in os.environ.items() if not k.startswith("_GOROX_")}  # our own markers
    return {**env, "PYTHONPATH": root + (os.pathsep + path if path else "")}


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    original = list(args)
    action = "serve"
    if args and (not args[0].startswith("-") or args[0] in ("-h", "--help")):
        action = args.pop(0)
    if action in ("help", "-h", "--help"):
        print(USAGE, end="")
        return 0
    if action == "version":
        print(f"gorox {__version__}")
        return 0
    if action not in ("serve", "check", *CLIENT_ACTIONS):
        sys.stderr.write(f"gorox: unknown action '{action}'\nRun 'gorox help' for usage.\n")
        return 2
    opts = _parser().parse_args(args)
    base = os.path.abspath(opts.base or os.getcwd())
    dirs = Dirs.under(base)
    if action in CLIENT_ACTIONS:
        from hemi.procman import client
        return client.main(action, dirs, program=PROGRAM, cmdui=opts.cmdui, as_json=opts.json)
    if opts.workers < 1:
        sys.stderr.write("gorox: -workers must be at least 1\n")
        return 2
    config_file = resolve_config(opts.config, base)
    load_components(base)
    if action == "check":
        return check(config_file, dirs)
    dirs.create()
    setup_error_log(dirs.logs, level=logging.DEBUG if opts.debug > 0 else logging.INFO)
    from hemi.procman import daemon, leader, single, worker
    try:
        if worker.is_worker():
            return worker.main(config_file, dirs, grace=opts.grace)
        if opts.single:
            return single.serve(config_file, dirs)
        if opts.daemon and daemon.ENV not in os.environ:
            return daemon.detach([sys.executable, "-m", "gorox", *original], dirs, PROGRAM, _child_env())
        return leader.main(leader.Options(
            config_file=config_file, dirs=dirs, worker_argv=[sys.executable, "-m", "gorox", *original],
            worker_env=_child_env(), workers=opts.workers, cmdui=opts.cmdui or DEFAULT_CMDUI, webui=opts.webui,
            grace=opts.grace, max_rss=opts.max_rss, max_requests=opts.max_requests, program=PROGRAM))
    except ConfigError as e:
        _print_problems(config_file, e)
        return 1
    except OSError as e:
        print(f"gorox: cannot start: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
