"""The agent's configuration: schema, errors with file:line and key path,
the embedded default and the reference `bpfguard config default` prints."""

from __future__ import annotations

import resource
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from bpfguard.agent.config import (
    SCHEMA,
    Key,
    ListOf,
    default_config,
    load_config,
    parse_config,
    parse_listen,
    render_reference,
)
from bpfguard.agent.policy import default_policy_files, read_policies
from bpfguard.cli import main
from bpfguard.errors import ConfigError


def _errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        parse_config(text, "agent.yaml")
    return str(exc.value).splitlines()


def test_the_embedded_default_is_what_the_issue_promises() -> None:
    cfg = load_config(None)
    assert cfg.source == "<embedded default>"
    assert cfg["rules.enabled"] and cfg["rules.files"] == []          # the stock ruleset
    assert cfg["policies.defaults"] and cfg["policies.defaults_mode"] == "monitor"
    assert cfg["outputs.json"] and cfg["outputs.stdout.enabled"]
    assert cfg["metrics.enabled"] and cfg["metrics.listen"].startswith("127.0.0.1:")
    assert cfg["control.socket"] == "/run/bpfguard/bpfguard.sock"
    assert cfg["control.tcp_listen"] == ""                            # no TCP unless asked


def test_the_reference_is_a_valid_config_equal_to_the_default() -> None:
    text = render_reference()
    assert parse_config(text, "ref.yaml").data == default_config()
    # every key is documented in it
    def keys(node: object, prefix: str = "") -> list[str]:
        out = []
        for k, v in node.items():  # type: ignore[attr-defined]
            if isinstance(v, Key | ListOf):
                out.append(k)
            else:
                out += keys(v, prefix + k + ".")
        return out
    for k in keys(SCHEMA):
        assert f"{k}:" in text


def test_an_empty_file_is_the_default() -> None:
    assert parse_config("", "e.yaml").data == default_config()
    assert parse_config("# nothing\n", "e.yaml").data == default_config()


def test_a_file_changes_only_what_it_names() -> None:
    cfg = parse_config("outputs:\n  file: {enabled: true, path: /tmp/x.json}\n", "a.yaml")
    assert cfg["outputs.file.enabled"] and cfg["outputs.file.path"] == "/tmp/x.json"
    assert cfg["outputs.file.max_bytes"] == 100 << 20
    assert cfg["outputs.stdout.enabled"]


def test_unknown_keys_name_the_path_and_line_and_suggest() -> None:
    errs = _errors("rules:\n  enabeld: true\noutput:\n  x: 1\n")
    assert errs[0] == "agent.yaml:2: rules.enabeld: unknown key; did you mean 'enabled'?"
    assert errs[1].startswith("agent.yaml:3: output: unknown key; did you mean 'outputs'?")


def test_a_retired_key_loads_with_a_warning_naming_its_line(
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = parse_config("sensors:\n  ringbuf_kb: 64\n  queue_size: 4096\n", "old.yaml")
    assert cfg["sensors.ringbuf_kb"] == 64
    assert [r.getMessage() for r in caplog.records] == [
        "old.yaml:3: sensors.queue_size: no longer used: the reader hands alerts straight "
        "to the outputs, each behind its own queue (outputs.queue_size)"]


def test_every_error_is_reported_at_once() -> None:
    errs = _errors("sensors:\n  ringbuf_kb: 1000\n  str_max: 0\nrules:\n  priority: loud\n"
                   "  files: /etc/falco\noutputs:\n  stdout: yes\n  queue_size: -3\n")
    assert errs == [
        "agent.yaml:2: sensors.ringbuf_kb: must be a power of two, at least the page size "
        f"({resource.getpagesize() // 1024} KiB)",
        "agent.yaml:3: sensors.str_max: must be within 1..4096",
        "agent.yaml:5: rules.priority: 'loud' is not one of: emergency, alert, critical, "
        "error, warning, notice, informational, info, debug",
        "agent.yaml:6: rules.files: expected a list of strings",
        "agent.yaml:8: outputs.stdout: expected a mapping of keys",
        "agent.yaml:9: outputs.queue_size: must not be negative, got -3",
    ]


@pytest.mark.parametrize(("text", "msg"), [
    ("rules: {enabled: 1}", "rules.enabled: expected true or false, not 1"),
    ("sensors: {str_max: true}", "sensors.str_max: expected an integer, not True"),
    ("sensors: {str_max: '12'}", "sensors.str_max: expected an integer, not '12'"),
    ("outputs: {rate_limit: {rate: fast}}", "outputs.rate_limit.rate: expected a number"),
    ("rules: {files: [a, 3]}", "rules.files[1]: expected a non-empty string"),
    ("rules: {files: [a, [b]]}", "rules.files[1]: expected a non-empty string"),
    ("metrics: {listen: 'example.org:80'}", "metrics.listen: 'example.org' is not an IP"),
    ("metrics: {listen: '127.0.0.1:99999'}", "metrics.listen: expected HOST:PORT"),
    ("rules: {enabled: true, enabled: false}", "rules.enabled: given twice"),
    ("- a\n- b\n", "(top): expected a mapping of keys"),
    ("firewall: {interfaces: [{netns: x}]}", "firewall.interfaces[0].interface: required"),
    ("firewall: {interfaces: [{interface: eth0, mtu: 3}]}",
     "firewall.interfaces[0].mtu: unknown key"),
    ("control: {tcp_listen: '127.0.0.1:7000'}", "control.tcp_token_file: a TCP control "
                                                "endpoint needs a token"),
    ("outputs: {webhook: {enabled: true}}", "outputs.webhook.url: an enabled webhook needs"),
    ("firewall: {interfaces: [{interface: eth0}, {interface: eth0}]}", "eth0 is listed twice"),
])
def test_wrong_types_and_values(text: str, msg: str) -> None:
    assert any(msg in e for e in _errors(text)), _errors(text)


def test_invalid_yaml_names_the_line() -> None:
    (err,) = _errors("rules:\n  files: [a\n  b: c\n")
    assert err.startswith("agent.yaml:") and "not valid YAML" in err


def test_choices_are_case_insensitive_and_stored_lowercase() -> None:
    assert parse_config("rules: {priority: WARNING}", "a")["rules.priority"] == "warning"


def test_a_missing_file_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "nope.yaml")


@given(st.integers(min_value=1, max_value=65535))
def test_listen_round_trips(port: int) -> None:
    assert parse_listen(f"127.0.0.1:{port}") == ("127.0.0.1", port)
    assert parse_listen(f"[::1]:{port}") == ("::1", port)


def test_default_policies_load_in_the_configured_mode() -> None:
    assert len(default_policy_files()) == 3
    pols = read_policies(load_config(None))
    assert {p.mode for p, _ in pols.values()} == {"monitor"}
    enforce = read_policies(parse_config("policies: {defaults_mode: enforce}", "a"))
    assert {p.mode for p, _ in enforce.values()} == {"enforce"}
    assert read_policies(parse_config("policies: {enabled: false}", "a")) == {}


def test_policy_files_and_directories(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    src = default_policy_files()[0].read_text()
    (tmp_path / "d" / "a.yaml").write_text(src.replace("name: bpfguard-", "name: mine-"))
    cfg = parse_config(f"policies: {{files: [{tmp_path / 'd'}]}}", "a")
    assert len(read_policies(cfg)) == 4
    dup = parse_config(f"policies: {{files: [{default_policy_files()[0]}]}}", "a")
    with pytest.raises(ConfigError, match="comes from"):
        read_policies(dup)
    with pytest.raises(ConfigError, match="no such file"):
        read_policies(parse_config("policies: {files: [/nonexistent.yaml]}", "a"))


def test_cli_config_default_and_check(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["config", "default"])
    assert r.exit_code == 0 and yaml.safe_load(r.output)["metrics"]["listen"]
    good = tmp_path / "good.yaml"
    good.write_text(r.output)
    r = CliRunner().invoke(main, ["config", "check", "-c", str(good)])
    assert r.exit_code == 0 and "ok: " in r.output and "3 policies" in r.output
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  files: [/nonexistent/rules.yaml]\nmetrics: {lisen: x}\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(bad)])
    assert r.exit_code == 1 and "bad.yaml:3: metrics.lisen: unknown key" in r.output
    bad.write_text("rules:\n  files: [/nonexistent/rules.yaml]\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(bad)])
    assert r.exit_code == 1 and "/nonexistent/rules.yaml: no such file" in r.output
    broken = tmp_path / "rules.yaml"
    broken.write_text("- rule: x\n  condition: evt.type = = open\n  output: o\n"
                      "  priority: WARNING\n  desc: d\n")
    bad.write_text(f"rules:\n  files: [{broken}]\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(bad)])
    assert r.exit_code == 1 and "rules.yaml:2" in r.output


def test_config_check_small_gaps(tmp_path: Path) -> None:
    """(issue 22, defect 9) a ring buffer under a page, a cgroup that is a
    plain directory, and a null policy name said once."""
    page_kib = resource.getpagesize() // 1024
    with pytest.raises(ConfigError, match=rf"at least the page size \({page_kib} KiB\)"):
        parse_config(f"sensors: {{ringbuf_kb: {page_kib // 2 or 1}}}\n" if page_kib > 1
                     else "sensors: {ringbuf_kb: 0}\n", "small.yaml")
    unnamed = tmp_path / "null.yaml"
    unnamed.write_text("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n"
                       "  name:\nspec:\n  kprobes:\n  - {call: sys_openat, syscall: true}\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"rules: {{enabled: false}}\n"
                   f"policies: {{defaults: false, files: [{unnamed}], cgroup: {tmp_path}}}\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(cfg)])
    assert r.exit_code == 1
    assert f"policies.cgroup {tmp_path}: not on the cgroup v2 filesystem" in r.output
    assert r.output.count("metadata.name") == 1, r.output


def test_config_check_says_what_a_start_would_refuse(tmp_path: Path) -> None:
    """(issue 22, defect 9) a ring buffer no kernel map can have, a missing
    cgroup, a firewall config over what the firewall holds, a policy
    without a name: each said by `config check`, not at start."""
    with pytest.raises(ConfigError, match=r"sensors.ringbuf_kb: at most 2097152 KiB"):
        parse_config("sensors: {ringbuf_kb: 1073741824}\n", "big.yaml")
    fw = tmp_path / "fw.yaml"
    fw.write_text("rules:\n" + "".join(
        f"- {{action: drop, src: 198.19.0.0/{n}, dst: 198.18.0.0/{m}}}\n"
        for n in range(16, 25) for m in range(16, 24)))
    unnamed = tmp_path / "unnamed.yaml"
    unnamed.write_text("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n"
                       "  name: ''\nspec:\n  kprobes:\n  - {call: sys_openat, syscall: true}\n")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(f"rules: {{enabled: false}}\n"
                   f"policies: {{defaults: false, files: [{unnamed}], "
                   f"cgroup: {tmp_path}/no-such-cgroup, pin_dir: {tmp_path}/pins}}\n"
                   f"firewall: {{interfaces: [{{interface: lo, config: {fw}}}]}}\n")
    r = CliRunner().invoke(main, ["config", "check", "-c", str(cfg)])
    assert r.exit_code == 1
    assert "the name is empty" in r.output
    assert f"policies.cgroup {tmp_path}/no-such-cgroup: no such directory" in r.output
    assert f"policies.pin_dir {tmp_path}/pins: is on a" in r.output
    assert "pins live on a BPF filesystem" in r.output
    assert "the rules have 72 distinct shapes" in r.output


def test_rules_files_name_the_stock_rulesets_as_the_agent_loads_them() -> None:
    from bpfguard.agent.detect import build_engine

    cfg = parse_config("rules:\n  files: [stock:stable, stock:incubating, stock:sandbox]\n",
                       "agent.yaml")
    names = {c.name for c in build_engine(cfg).compiled}
    assert {"Read sensitive file untrusted", "Schedule Cron Jobs", "Write below etc"} <= names
    cfg = parse_config("rules:\n  files: [stock:stable, stock:experimental]\n", "agent.yaml")
    with pytest.raises(ConfigError, match="^rules.files: stock:experimental: no such stock "
                                          "ruleset; known: stock:stable, stock:incubating, "
                                          "stock:sandbox$"):
        build_engine(cfg)
    # the reference says how
    assert "stock:incubating" in render_reference()
