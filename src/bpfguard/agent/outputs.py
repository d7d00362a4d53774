"""The agent's outputs, built from its configuration: the alert channels
(stdout, file, syslog, webhook, SQLite), each behind its own bounded queue,
and the optional per-rule rate limiter in front of them."""

from __future__ import annotations

from typing import TextIO

from ..outputs.channels import (
    Channel,
    FileChannel,
    Format,
    HttpChannel,
    Rfc5424SyslogChannel,
    StdoutChannel,
)
from ..outputs.ratelimit import Limit, RateLimiter
from .config import AgentConfig

__all__ = ["build_channels", "build_limiter"]


def build_channels(cfg: AgentConfig, stdout: TextIO | None = None) -> list[Channel]:
    """The outputs `cfg` enables (ConfigError for a bad path or address)."""
    from ..outputs.store import SqliteChannel

    o = cfg.data["outputs"]
    fmt = Format(json_output=o["json"],
                 json_include_output_property=o["json_include_output_property"],
                 json_include_tags_property=o["json_include_tags_property"])
    cap = o["queue_size"]
    chans: list[Channel] = []
    if o["stdout"]["enabled"]:
        chans.append(StdoutChannel(fmt, stream=stdout, capacity=cap))
    if o["file"]["enabled"]:
        chans.append(FileChannel(o["file"]["path"], fmt, keep_alive=True, capacity=cap,
                                 max_bytes=o["file"]["max_bytes"],
                                 backups=o["file"]["backups"], create_dirs=True))
    if o["syslog"]["enabled"]:
        chans.append(Rfc5424SyslogChannel(fmt, address=o["syslog"]["address"],
                                          facility=o["syslog"]["facility"], capacity=cap))
    if o["webhook"]["enabled"]:
        w = o["webhook"]
        chans.append(HttpChannel(w["url"], insecure=w["insecure"], ca_cert=w["ca_cert"] or None,
                                 compress=w["compress"], capacity=cap))
    if o["sqlite"]["enabled"]:
        chans.append(SqliteChannel(o["sqlite"]["path"], max_rows=o["sqlite"]["max_rows"],
                                   capacity=cap))
    return chans


def build_limiter(cfg: AgentConfig) -> RateLimiter | None:
    """The per-rule rate limit and dedup window `cfg` asks for; None for none."""
    rl = cfg.data["outputs"]["rate_limit"]
    if rl["rate"] <= 0 and rl["dedup_window"] <= 0:
        return None
    return RateLimiter(limit=Limit(rl["rate"], rl["burst"]) if rl["rate"] > 0 else None,
                       dedup_window=rl["dedup_window"] or None)
