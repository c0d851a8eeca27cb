"""Find a user's Python web application from a config string (shared by ``asgi`` and ``wsgi``).

Forms, as uvicorn, gunicorn and granian accept them:

- ``"package.module:attr"`` (``attr`` may be dotted: ``"pkg.mod:holder.app"``);
- ``"package.module:create_app()"`` — the factory form: the attribute is called, with literal
  arguments if any are written (``"mod:make_app('prod', debug=False)"``);
- ``"package.module"`` — the attribute ``app``, else ``application`` (Django's name).

``app_dir`` is put first on ``sys.path`` so the app imports the way it does in its own
project. A failure is an :class:`AppLoadError` whose message says what went wrong and where
in the user's code, in one or two lines: the config check prints it as it is.
"""

from __future__ import annotations

import ast
import importlib
import os
import sys
import traceback
from typing import Any

__all__ = ["AppLoadError", "load_app", "parse_spec", "add_app_dir", "describe_exception"]

DEFAULT_ATTRS = ("app", "application")


class AppLoadError(Exception):
    """The application could not be found, imported or built. ``message`` is for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parse_spec(spec: str) -> tuple[str, list[str], tuple[list[Any], dict[str, Any]] | None]:
    """Split a spec into (module, attribute path, factory arguments or None)."""
    text = spec.strip()
    if not text:
        raise AppLoadError('the app is empty, expected "package.module:attr"')
    module, sep, attr = text.partition(":")
    module, attr = module.strip(), attr.strip()
    if not module or not all(part.isidentifier() for part in module.split(".")):
        raise AppLoadError(f'"{spec}" has no valid module name before ":", expected "package.module:attr"')
    if sep and not attr:
        raise AppLoadError(f'"{spec}" names no attribute after ":", expected "package.module:attr"')
    if not sep:
        return module, [], None
    call: tuple[list[Any], dict[str, Any]] | None = None
    if attr.endswith(")"):
        try:
            node = ast.parse(attr, mode="eval").body
        except SyntaxError:
            raise AppLoadError(f'"{spec}": cannot read the factory call "{attr}"') from None
        if not isinstance(node, ast.Call):
            raise AppLoadError(f'"{spec}": "{attr}" is not a call such as create_app()')
        try:
            args = [ast.literal_eval(a) for a in node.args]
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
        except ValueError:
            raise AppLoadError(f'"{spec}": factory arguments must be literals (strings, numbers, ...)') from None
        if len(kwargs) != len(node.keywords):
            raise AppLoadError(f'"{spec}": **kwargs cannot be used in a factory call')
        call = (args, kwargs)
        attr = ast.unparse(node.func)
    parts = attr.split(".")
    if not all(p.isidentifier() for p in parts):
        raise AppLoadError(f'"{spec}": "{attr}" is not an attribute name')
    return module, parts, call


def add_app_dir(app_dir: str | None, base: str | None = None) -> str | None:
    """Put ``app_dir`` (relative to ``base``) first on ``sys.path``; return its absolute path."""
    if not app_dir:
        return None
    path = os.path.abspath(os.path.join(base or os.getcwd(), app_dir))
    if not os.path.isdir(path):
        raise AppLoadError(f'the app directory "{path}" does not exist')
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    importlib.invalidate_caches()  # a directory created after start-up is seen too
    return path


def load_app(spec: str, app_dir: str | None, *, base: str | None = None) -> object:
    """Import and return the application named by ``spec``; raise :class:`AppLoadError`.

    Modules are imported once per process: a reload of the config finds the same objects
    (Python cannot honestly re-import an application; new code needs new workers)."""
    module_name, attrs, call = parse_spec(spec)
    add_app_dir(app_dir, base)
    module = _import(module_name, spec)
    if attrs:
        obj: Any = module
        for i, name in enumerate(attrs):
            try:
                obj = getattr(obj, name)
            except AttributeError:
                where = module_name + "".join("." + a for a in attrs[:i])
                raise AppLoadError(f'"{spec}": {where} has no attribute "{name}"') from None
    else:
        for name in DEFAULT_ATTRS:
            if hasattr(module, name):
                obj = getattr(module, name)
                break
        else:
            raise AppLoadError(f'"{spec}": module {module_name} has neither "app" nor "application"; '
                               f'name it as "{module_name}:attr"')
    if call is not None:
        if not callable(obj):
            raise AppLoadError(f'"{spec}": {".".join(attrs)} is not callable, so it cannot be a factory')
        args, kwargs = call
        try:
            obj = obj(*args, **kwargs)
        except Exception as e:
            raise AppLoadError(f'"{spec}": the factory failed: {describe_exception(e)}') from e
    if obj is None:
        raise AppLoadError(f'"{spec}" is None' + (" (does the factory return the app?)" if call else ""))
    return obj


def _import(module_name: str, spec: str) -> Any:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise AppLoadError(f'"{spec}": no module named {e.name} (sys.path starts with {sys.path[0]!r})') from e
        raise AppLoadError(f'"{spec}": importing {module_name} failed: {describe_exception(e)}') from e
    except Exception as e:  # the app's own code raised while being imported
        raise AppLoadError(f'"{spec}": importing {module_name} failed: {describe_exception(e)}') from e


def describe_exception(e: BaseException) -> str:
    """``ValueError: bad setting (at settings.py:12)``: the error and the innermost user frame."""
    text = f"{type(e).__name__}: {e}"
    if isinstance(e, SyntaxError) and e.filename:
        return text
    frames = [f for f in traceback.extract_tb(e.__traceback__) if "importlib" not in f.filename]
    if frames:
        last = frames[-1]
        text += f" (at {last.filename}:{last.lineno})"
    return text
