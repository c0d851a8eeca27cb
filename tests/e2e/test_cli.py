"""The ``gorox`` command, run as a real process: check (a good config, a config with many
mistakes), help, version, unknown actions and options, and serve creating its directories."""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.request
from pathlib import Path
from typing import Callable

from hemi import __version__

from ..conftest import ROOT, Gorox, gorox_cmd

# A str.format template ({port}), as the gorox fixture takes.
GOOD = '''// a small but complete config
stage {{
    .readTimeout = 30s
    app "site" {{
        .hostnames = ("*")
        .webRoot = %baseDir + "/www"
        rule $path == "/ping" {{
            .returnCode = 200
            .returnText = "pong"
        }}
        rule {{
            static {{ }}
        }}
    }}
    httpxServer "main" {{
        .address = "127.0.0.1:{port}"
        .forApps = ("site")
    }}
}}
'''

# Five independent mistakes in the main file, one in an included file.
BROKEN = '''stage {
    app "a" {
        .hostnames = ("*")
        .webRot = "/srv"
        <rules.conf>
    }
    <missing.conf>
    httpxServer "main" {
        .address = "127.0.0.1:0"
        .forApps = ("a")
        .numGates = 2s
    }
    fooServer "x" { }
    http2Backend "b" { }
}
'''
BROKEN_RULES = '''// included by broken.conf
rule {
    .returnCod = 200
}
'''


def gorox_run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run(gorox_cmd(*args), cwd=str(cwd), env=env, capture_output=True, text=True, timeout=timeout)


def test_check_a_good_config(tmp_path: Path) -> None:
    conf = tmp_path / "good.conf"
    conf.write_text(GOOD.format(port=0))
    result = gorox_run("check", "-config", str(conf), "-base", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{conf}: ok (1 app, 1 server)"]
    assert result.stderr == ""
    assert not (tmp_path / "data").exists()  # checking changes nothing on disk


def test_check_reports_every_mistake_with_its_place(tmp_path: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text(BROKEN)
    (tmp_path / "rules.conf").write_text(BROKEN_RULES)
    result = gorox_run("check", "-config", "broken.conf", "-base", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"{conf}: 6 errors",
        f"  {conf}:4:9: found unknown property .webRot in app \"a\"; did you mean .webRoot?",
        f"  {conf}:7:5: cannot include <missing.conf>: No such file or directory",
        f"  {conf}:11:21: .numGates is a duration, expected an integer (in httpxServer \"main\")",
        f"  {conf}:13:5: found unknown component 'fooServer' in stage, expected one of its kinds: fixture, runner, "
        "backend, mesher, stater, storer, app, svc, server, cronjob; did you mean 'echoServer'?",
        f"  {conf}:14:5: backend 'http2Backend' is not implemented yet (planned in a later issue (HTTP/2, HTTP/3 backends))",
        f"  {tmp_path / 'rules.conf'}:3:5: found unknown property .returnCod in rule \"rule#1\"; did you mean .returnCode?",
    ]


def test_check_a_syntax_error(tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text('stage {\n    app "a" {\n        .hostnames = ("*"\n    }\n}\n')
    result = gorox_run("check", "-config", str(conf), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"{conf}: 1 error",
        f"  {conf}:4:5: found '}}', expected ',' or ')' in the list"]


def test_check_a_missing_config_file(tmp_path: Path) -> None:
    result = gorox_run("check", "-config", "nope.conf", "-base", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert f"cannot read config file {tmp_path / 'nope.conf'}: No such file or directory" in result.stderr


def test_check_without_config_uses_the_base_or_the_embedded_config(tmp_path: Path) -> None:
    result = gorox_run("check", "-base", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    embedded = ROOT / "gorox" / "conf" / "gorox.conf"
    assert result.stdout.splitlines() == [f"{embedded}: ok (1 app, 1 server)"]
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "gorox.conf").write_text("stage { }")
    result = gorox_run("check", "-base", str(tmp_path), cwd=tmp_path)
    assert result.stdout.splitlines() == [f"{tmp_path / 'conf' / 'gorox.conf'}: ok (no components)"]


def test_help(tmp_path: Path) -> None:
    for args in (("help",), ("-h",), ("--help",)):
        result = gorox_run(*args, cwd=tmp_path)
        assert result.returncode == 0
        assert "Usage:" in result.stdout and "check" in result.stdout and "-config FILE" in result.stdout


def test_version(tmp_path: Path) -> None:
    result = gorox_run("version", cwd=tmp_path)
    assert (result.returncode, result.stdout) == (0, f"gorox {__version__}\n")


def test_unknown_action(tmp_path: Path) -> None:
    result = gorox_run("frobnicate", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown action 'frobnicate'" in result.stderr and "gorox help" in result.stderr
    assert result.stdout == ""


def test_unknown_option(tmp_path: Path) -> None:
    result = gorox_run("check", "-nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "unrecognized arguments: -nope" in result.stderr


def test_serve_creates_the_data_dirs_and_stops_on_sigterm(gorox: Callable[..., Gorox]) -> None:
    g = gorox(GOOD, files={"www/index.html": "hi"})
    for sub in ("log", "tmp", "var"):
        assert (g.base / "data" / sub).is_dir()
    with urllib.request.urlopen(g.url("/ping"), timeout=10) as resp:
        assert resp.read() == b"pong"
    assert g.stop(signal.SIGTERM) == 0
    assert (g.base / "data" / "log" / "error.log").is_file()


def test_serve_refuses_a_broken_config(tmp_path: Path) -> None:
    conf = tmp_path / "broken.conf"
    conf.write_text(BROKEN)
    (tmp_path / "rules.conf").write_text(BROKEN_RULES)
    result = gorox_run("serve", "-config", str(conf), "-base", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert f"{conf}: 6 errors" in result.stderr
    assert f"  {conf}:11:21: .numGates is a duration" in result.stderr


CHECKED = '''stage {{
    app "py" {{
        .hostnames = ("*")
        rule $path ^= "/a" {{ asgi {{ .app = "{asgi}" .appDir = %baseDir }} }}
        rule {{ wsgi {{ .app = "{wsgi}" .appDir = %baseDir }} }}
    }}
    httpxServer "main" {{
        .address = "127.0.0.1:0"
        .forApps = ("py")
        .tlsMode = {tls}
        .tlsCertificate = %baseDir + "/server.pem"
        .tlsPrivateKey = %baseDir + "/server.key"
    }}
}}
'''


def test_check_imports_the_apps_and_loads_the_certificates_without_touching_the_disk(tmp_path: Path) -> None:
    """What would fail at start fails the check, with the place: an app that does not import, a
    WSGI app that is not callable, a certificate that does not load. A good one passes."""
    (tmp_path / "good_asgi.py").write_text("async def app(scope, receive, send):\n    pass\n")
    (tmp_path / "good_wsgi.py").write_text("def app(environ, start_response):\n    return []\n")
    (tmp_path / "broken_asgi.py").write_text("import no_such_module_anywhere\n")
    (tmp_path / "notcallable_wsgi.py").write_text("app = 42\n")
    (tmp_path / "server.pem").write_text("not a certificate\n")  # (not loaded while .tlsMode is false)
    (tmp_path / "server.key").write_text("not a key\n")
    conf = tmp_path / "py.conf"

    conf.write_text(CHECKED.format(asgi="good_asgi:app", wsgi="good_wsgi:app", tls="false"))
    result = gorox_run("check", "-config", str(conf), "-base", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{conf}: ok (1 app, 1 server)"]
    assert not (tmp_path / "data").exists()

    conf.write_text(CHECKED.format(asgi="broken_asgi:app", wsgi="notcallable_wsgi:app", tls="true"))
    result = gorox_run("check", "-config", str(conf), "-base", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{conf}: 3 errors", result.stderr
    assert lines[1].startswith(f"  {conf}:4:44: cannot load the app:") and "no_such_module_anywhere" in lines[1]
    assert lines[2] == (f'  {conf}:5:30: cannot load the app: "notcallable_wsgi:app" is not callable, so it is not '
                        'a WSGI app (in wsgi "wsgi#1")'), lines[2]
    assert lines[3].startswith(f"  {conf}:11:9: cannot load the certificate {tmp_path / 'server.pem'} with the key "
                               f"{tmp_path / 'server.key'} (PEM files, and a matching pair?): "), lines[3]
    assert lines[3].endswith('(in httpxServer "main")')
    assert not (tmp_path / "data").exists()


def test_check_loads_a_tls_meshers_certificate(tmp_path: Path) -> None:
    (tmp_path / "m.pem").write_text("not a certificate\n")
    (tmp_path / "m.key").write_text("not a key\n")
    conf = tmp_path / "l4.conf"
    conf.write_text('stage {\n    tcpsMesher "term" {\n        .address = "127.0.0.1:0"\n        .tlsMode = true\n'
                    '        .tlsCertificate = %baseDir + "/m.pem"\n        .tlsPrivateKey = %baseDir + "/m.key"\n'
                    '        case { echoDealer {} }\n    }\n}\n')
    result = gorox_run("check", "-config", str(conf), "-base", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert lines[0] == f"{conf}: 1 error"
    assert lines[1].startswith(f"  {conf}:5:9: cannot load the certificate {tmp_path / 'm.pem'} with the key "
                               f"{tmp_path / 'm.key'}"), lines[1]
    assert lines[1].endswith('(in tcpsMesher "term")')
