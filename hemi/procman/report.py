"""What the admin interfaces show: a snapshot of the leader and its workers as plain data
(cmdui's ``info -json``, the webui, /metrics), and its text forms for ``pids`` and ``info``."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from .. import __version__
from .stats import rss_bytes, uptime

if TYPE_CHECKING:
    from .leader import Leader


def snapshot(leader: "Leader") -> dict[str, Any]:
    """Everything the admin interfaces show, as plain data."""
    workers = []
    servers: dict[str, dict[str, Any]] = {}
    for i, slot in enumerate(leader.slots):
        w = slot.worker
        entries = [w] if w is not None and w.state == "serving" else []
        if not entries:
            workers.append({"slot": i, "pid": None, "state": "restarting" if slot.restarting else "dead",
                            "uptime": 0, "stage": None, "conns_open": 0, "requests_total": 0,
                            "connections_total": 0, "rate": 0.0, "rss": 0, "restarts": slot.restarts,
                            "servers": []})
        entries += [r for r in leader.retiring if r.slot == i]
        for x in entries:
            st = x.stats
            workers.append({"slot": i, "pid": x.pid, "state": x.state, "uptime": uptime(x.started),
                            "stage": st.get("stage"), "conns_open": st.get("conns_open", 0),
                            "requests_total": st.get("requests_total", 0),
                            "connections_total": st.get("connections_total", 0), "rate": round(x.rate, 2),
                            "rss": rss_bytes(x.pid) or st.get("rss", 0), "restarts": slot.restarts,
                            "servers": st.get("servers", [])})
            for s in st.get("servers", []):
                agg = servers.setdefault(s["name"], {"name": s["name"], "sign": s.get("sign", ""),
                                                     "address": s["address"], "conns_open": 0,
                                                     "connections_total": 0, "requests_total": 0, "rate": 0.0})
                for k in ("conns_open", "connections_total", "requests_total"):
                    agg[k] += s[k]
                agg["rate"] = round(agg["rate"] + x.server_rates.get(s["name"], 0.0), 2)
    return {
        "leader": {"pid": os.getpid(), "uptime": uptime(leader.started), "started": leader.started,
                   "version": __version__, "config": leader.opts.config_file, "base": leader.opts.dirs.base,
                   "stage": leader.generation, "cmdui": leader.cmdui_addr, "webui": leader.webui_addr,
                   "workers_wanted": len(leader.slots), "grace": leader.opts.grace,
                   "max_rss": leader.opts.max_rss, "max_requests": leader.opts.max_requests,
                   "reconfs": dict(leader.reconfs), "last_reconf": leader.last_reconf,
                   "quitting": leader.quitting, "warnings_total": leader.errors.seq},
        "workers": workers,
        "servers": list(servers.values()),
        "errors": list(leader.errors.entries)[-50:],
    }


def pids_args(leader: "Leader") -> dict[str, str]:
    args = {"leader": str(os.getpid())}
    for i, slot in enumerate(leader.slots):
        if slot.worker is not None and slot.worker.state == "serving":
            args[f"worker {i}"] = str(slot.worker.pid)
    for w in leader.retiring:
        args[f"worker {w.slot} (draining)"] = str(w.pid)
    return args


def info_args(snap: dict[str, Any]) -> dict[str, str]:
    """One line per fact and per worker, and everything as JSON in ``json``."""
    lead = snap["leader"]
    args = {"leader": str(lead["pid"]), "uptime": f"{lead['uptime']:.0f}s", "config": lead["config"],
            "base": lead["base"], "stage": str(lead["stage"]), "workers": str(len(snap["workers"]))}
    for w in snap["workers"]:
        args[f"worker {w['slot']}"] = (f"pid={w['pid']} state={w['state']} uptime={w['uptime']:.0f}s "
                                       f"stage={w['stage']} conns={w['conns_open']} "
                                       f"requests={w['requests_total']} rate={w['rate']:.1f}/s "
                                       f"rss={w['rss'] >> 20}MiB restarts={w['restarts']}")
    args["json"] = json.dumps(snap)
    return args
