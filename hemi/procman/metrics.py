"""The leader's figures in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

from typing import Any, Iterable

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[dict[str, Any], float]


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
        lines.append(f"{name}{{{text}}} {_number(value)}" if text else f"{name} {_number(value)}")
    return lines


def _number(value: float) -> str:
    """Integers exactly (a byte count or a Unix time must not lose digits), floats in full."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def render(snap: dict[str, Any]) -> str:
    """``snap`` is ``Leader.snapshot()``."""
    lead = snap["leader"]
    workers = [w for w in snap["workers"] if w["pid"] is not None]
    states: dict[str, int] = {}
    for w in snap["workers"]:
        states[w["state"]] = states.get(w["state"], 0) + 1
    out: list[str] = []
    out += _family("gorox_leader_start_time_seconds", "gauge", "When the leader started (Unix time).",
                   [({}, lead["started"])])
    out += _family("gorox_stage", "gauge", "The config generation: 0 at start, +1 per successful reconf.",
                   [({}, lead["stage"])])
    out += _family("gorox_reconfs_total", "counter", "Config reloads by result.",
                   [({"result": k}, v) for k, v in lead["reconfs"].items()])
    out += _family("gorox_workers", "gauge", "Worker processes by state.",
                   [({"state": k}, v) for k, v in sorted(states.items())])
    out += _family("gorox_worker_restarts_total", "counter", "Times the worker of a slot was restarted after dying.",
                   [({"slot": w["slot"]}, w["restarts"]) for w in snap["workers"] if w["state"] != "draining"])
    out += _family("gorox_worker_resident_memory_bytes", "gauge", "Resident memory of a worker.",
                   [({"slot": w["slot"], "pid": w["pid"]}, w["rss"]) for w in workers])
    out += _family("gorox_worker_connections_open", "gauge", "Client connections a worker holds open.",
                   [({"slot": w["slot"], "pid": w["pid"]}, w["conns_open"]) for w in workers])
    out += _family("gorox_worker_connections_total", "counter", "Client connections a worker accepted.",
                   [({"slot": w["slot"], "pid": w["pid"]}, w["connections_total"]) for w in workers])
    out += _family("gorox_worker_requests_total", "counter", "Requests a worker served.",
                   [({"slot": w["slot"], "pid": w["pid"]}, w["requests_total"]) for w in workers])
    servers = snap["servers"]
    out += _family("gorox_server_connections_open", "gauge", "Client connections open, per server, all workers.",
                   [({"server": s["name"], "address": s["address"]}, s["conns_open"]) for s in servers])
    out += _family("gorox_server_connections_total", "counter", "Connections accepted per server (live workers).",
                   [({"server": s["name"], "address": s["address"]}, s["connections_total"]) for s in servers])
    out += _family("gorox_server_requests_total", "counter", "Requests served per server (live workers).",
                   [({"server": s["name"], "address": s["address"]}, s["requests_total"]) for s in servers])
    out += _family("gorox_server_requests_per_second", "gauge", "Request rate per server over the last second.",
                   [({"server": s["name"], "address": s["address"]}, s["rate"]) for s in servers])
    out += _family("gorox_log_warnings_total", "counter", "Warnings and errors logged by the leader and workers.",
                   [({}, lead.get("warnings_total", 0))])
    return "\n".join(out) + "\n"
