"""The lean client path: `ovsfab attach/detach` handed to a running agent.

The agent runs inside a simulated host's netns (as in test_agent.py); its
control socket is ``$OVS_RUNDIR/ovsfab-agent.sock``.  Each case runs the same
command twice, through the agent and in-process (``OVSFAB_NO_AGENT=1``), on
twin targets, and compares stdout, stderr and exit codes; the agent's log
line ``op: NAME -> exit N`` proves which path served the command.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import stat
import time

import pytest

import testbed as tb
from test_agent import AgentProc, wait_for

NO_AGENT = {"OVSFAB_NO_AGENT": "1"}


@pytest.fixture
def agent_host():
    host = tb.OvsHost()
    agent = AgentProc(host)
    # dockerd is not needed: netns targets; DOCKER_HOST points nowhere so the
    # events thread just retries quietly.
    try:
        agent.wait_log("serving attach/detach")
        agent.wait_log("connected to OVSDB")
        yield host, agent
    finally:
        if agent.proc.poll() is None:
            agent.kill()
        host.close()


def sock_path(host: tb.OvsHost) -> str:
    return os.path.join(str(host.rundir), "ovsfab-agent.sock")


def served(agent: AgentProc) -> int:
    """How many operations the agent ran (its log says ``op: NAME -> exit N``)."""
    return agent.text().count(" op: ")


def typer_cli(host: tb.OvsHost, args: list, env: dict) -> "tb.subprocess.CompletedProcess":
    """The same command line through the typer app in-process (not the lean entry point)."""
    return tb.run(["ip", "netns", "exec", host.name, tb.PYTHON, "-c",
                   "import sys; from ovsfab.cli.main import main; main()", *args],
                  check=False, env=tb.clean_env({"OVS_RUNDIR": str(host.rundir), **NO_AGENT, **env}))


def norm(text: str, target: str, bridge: str) -> str:
    """Output with what differs between twins by construction made equal."""
    text = text.replace(target, "TARGET").replace(bridge, "BRIDGE")
    text = re.sub(r"ovf[0-9a-f]{12}", "PORT", text)
    return re.sub(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", "MAC", text)


def test_attach_detach_go_through_the_agent_and_match_in_process(agent_host, netns_targets):
    """Twins: the same commands on target A / bridge bra (agent) and B / brb (in-process)."""
    host, agent = agent_host
    a, b = netns_targets(), netns_targets()
    n0 = served(agent)
    cases = [
        ("attach", "{br}", "{t}", "10.9.0.1/24"),                        # success, bridge created
        ("attach", "{br}", "{t}", "10.9.0.1/24"),                        # idempotent repeat
        ("attach", "{br}", "{t}", "10.9.0.1/24", "--json"),              # JSON of the no-op
        ("attach", "{br}", "{t}", "10.9.1.1/24"),                        # conflict: exit 4
        ("attach", "{br}", "{t}", "10.9.0.300/24"),                      # bad input: exit 2
        ("attach", "{br}", "{t}", "10.9.0.1/24", "--vlan", "x"),         # bad option: exit 2
        ("attach", "{br}", "{t}x", "10.9.0.1/24"),                       # unknown netns: exit 3
        ("attach", "{br}", "ovsfab-no-such-ctr", "10.9.0.1/24"),         # no dockerd: exit 5
        ("attach", "{br}", "{t}", "10.9.0.1/24", "--ifname", "lo"),      # name clash: exit 4
        ("detach", "{br}", "{t}", "--json"),                             # JSON of a detach
        ("detach", "{br}", "{t}"),                                       # nothing attached: exit 3
        ("detach", "{br}", "{t}", "--if-exists"),                        # exit 0
        ("attach", "{br}", "{t}", "10.9.0.1/24", "2001:db8::1/64@2001:db8::ff", "--json"),
    ]
    env = {"DOCKER_HOST": "unix:///nonexistent.sock"}
    codes = []
    for i, case in enumerate(cases):
        via = host.ovsfab(*[c.format(t=a.target, br="bra") for c in case], env=env)
        assert served(agent) == n0 + i + 1, f"{case} was not served by the agent:\n{agent.text()}"
        local = host.ovsfab(*[c.format(t=b.target, br="brb") for c in case], env={**env, **NO_AGENT})
        assert served(agent) == n0 + i + 1, "OVSFAB_NO_AGENT=1 still went to the agent"
        assert via.returncode == local.returncode, (case, via, local)
        assert norm(via.stdout, a.name, "bra") == norm(local.stdout, b.name, "brb"), (case, via, local)
        assert norm(via.stderr, a.name, "bra") == norm(local.stderr, b.name, "brb"), (case, via, local)
        if i in (2, 3, 4, 5, 6):  # changes nothing: the typer commands print the very same
            typer_run = typer_cli(host, [c.format(t=a.target, br="bra") for c in case], env)
            assert (typer_run.returncode, typer_run.stdout, typer_run.stderr) == \
                (via.returncode, via.stdout, via.stderr), (case, typer_run, via)
        codes.append(via.returncode)
    assert codes == [0, 0, 0, 4, 2, 2, 3, 5, 4, 0, 3, 0, 0], codes
    assert tb.addrs_in(a) == tb.addrs_in(b) if hasattr(tb, "addrs_in") else True
    assert "Traceback" not in agent.text()


def test_fault_injection_is_honoured_and_undone_by_the_agent(agent_host, netns_targets):
    host, agent = agent_host
    t = netns_targets()
    before = tb.snapshot(host, [t])
    cp = host.ovsfab("attach", "br0", t.target, "10.9.2.1/24", env={"OVSFAB_INJECT_FAULT": "plug"})
    assert cp.returncode != 0 and "fault injected after step 'plug'" in cp.stderr, cp
    assert "op: attach -> exit 6" in agent.text()
    tb.assert_no_residue(host, before, [t])
    cp = host.ovsfab("attach", "br0", t.target, "10.9.2.1/24", check=True)
    assert "attached" in cp.stdout


def test_fallback_when_the_agent_is_stopped_or_the_socket_is_stale(agent_host, netns_targets):
    host, agent = agent_host
    t1, t2 = netns_targets(), netns_targets()
    path = sock_path(host)
    assert agent.stop() == 0
    assert not os.path.exists(path), "a stopped agent leaves no socket"
    cp = host.ovsfab("attach", "br0", t1.target, "10.9.3.1/24", check=True)
    assert "attached" in cp.stdout
    # A stale socket file (agent killed): nobody listens; the CLI falls back quickly.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.close()
    t0 = time.monotonic()
    cp = host.ovsfab("attach", "br0", t2.target, "10.9.3.2/24", check=True)
    assert "attached" in cp.stdout and cp.stderr == ""
    assert time.monotonic() - t0 < 20
    # A new agent replaces the stale socket and serves again.
    agent2 = AgentProc(host)
    try:
        agent2.wait_log("serving attach/detach")
        agent2.wait_log("connected to OVSDB")
        cp = host.ovsfab("detach", "br0", t2.target, check=True)
        assert "detached" in cp.stdout
        agent2.wait_log(" op: detach -> exit")
    finally:
        assert agent2.stop() == 0


def test_socket_is_root_only(agent_host):
    host, agent = agent_host
    path = sock_path(host)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0, oct(st.st_mode)

    def as_nobody(p: str) -> str:
        """In a child dropped to uid 65534: what connecting and asking yields."""
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            out = "?"
            try:
                os.setgid(65534)
                os.setuid(65534)
                c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                c.settimeout(5)
                try:
                    c.connect(p)
                    c.sendall(b'{"v": 1, "argv": ["detach", "br0", "netns:x"], "env": {}}')
                    c.shutdown(socket.SHUT_WR)
                    out = "reply:" + c.recv(65536).decode()
                except PermissionError:
                    out = "EACCES"
            except BaseException as exc:  # noqa: BLE001 - report, never escape the child
                out = f"error:{exc!r}"
            os.write(w, out.encode())
            os._exit(0)
        os.close(w)
        os.waitpid(pid, 0)
        data = os.read(r, 65536).decode()
        os.close(r)
        return data

    assert as_nobody(path) == "EACCES"
    # Defence in depth: even if the file mode were loosened, SO_PEERCRED refuses.
    rundir_mode = stat.S_IMODE(os.stat(host.rundir).st_mode)
    os.chmod(host.rundir, 0o711)  # the rundir (mkdtemp) is 0700 too
    os.chmod(path, 0o666)
    try:
        got = as_nobody(path)
    finally:
        os.chmod(path, 0o600)
        os.chmod(host.rundir, rundir_mode)
    assert got.startswith("reply:") and "root only" in got and '"code"' not in got, got
    agent.wait_log("refused a request from uid 65534")
    assert " op: detach" not in agent.text()


def test_top_level_help_is_served_without_typer_and_is_current():
    """`ovsfab --help` prints stored text (no typer import): it must equal what typer renders."""
    from ovsfab.cli.fast import render_help
    from ovsfab.cli.help_text import HELP

    assert HELP == render_help(), ("ovsfab/cli/help_text.py is stale; regenerate it: .venv/bin/python -c "
                                   "'from ovsfab.cli.fast import write_help; write_help()'")
    code = ("import sys; sys.argv = ['ovsfab', '--help']\n"
            "from ovsfab.cli.fast import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert e.code == 0\n"
            "assert 'typer' not in sys.modules and 'click' not in sys.modules, 'typer imported'\n")
    cp = tb.run([tb.PYTHON, "-c", code], env=tb.clean_env({"COLUMNS": "100"}))
    assert cp.stdout == HELP, cp.stdout
    assert "attach" in cp.stdout and "detach" in cp.stdout


# ---------------------------------------------------------------- show / inspect
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _on_tty(host: tb.OvsHost, *args: str, env: dict) -> tuple:
    """Run the CLI with stdout on a pseudo-terminal: (exit code, what it printed, stderr)."""
    return tb.run_on_tty(host.ovsfab_cmd(*args),
                         {k: v for k, v in tb.clean_env(env).items() if k != "NO_COLOR"} | env)


def test_show_and_inspect_through_the_agent_print_what_in_process_prints(agent_host, netns_targets,
                                                                         pid_targets):
    """Read-only commands: the same command line through the agent and in-process, compared exactly."""
    host, agent = agent_host
    a, b = netns_targets(), netns_targets()
    p = pid_targets()
    env = {"DOCKER_HOST": "unix:///nonexistent.sock"}
    for t, addr in ((a, "10.9.4.1/24"), (p, "10.9.4.2/24")):
        host.ovsfab("attach", "br0", t.target, addr, "--vlan", "7", env=env, check=True)
    host.ovsfab("attach", "br1", b.target, "10.9.5.1/24", env=env, check=True)
    host.vsctl("add-port", "br0", "vx0", "--", "set", "interface", "vx0", "type=vxlan",
               "options:remote_ip=192.0.2.6", "options:key=5001")
    cases = [
        ("show",), ("show", "--json"), ("show", "br1"), ("show", "--json", "br0"),
        ("show", "nosuchbr"),                                         # exit 3
        ("show", "a", "b"),                                           # usage error: exit 2
        ("--backend", "linux", "show", "--json"),                     # no OVSDB asked
        ("--db", "unix:/nonexistent/db.sock", "show"),                # exit 5
        ("inspect", a.target), ("inspect", a.target, "--json"), ("inspect", p.target, "--json"),
        ("inspect", "netns:ovsfab-no-such-ns"),                       # exit 3
        ("inspect", "ovsfab-no-such-ctr"),                            # no dockerd: exit 5
        ("--db", "unix:/nonexistent/db.sock", "inspect", a.target),  # OVS facts unavailable: exit 0
    ]
    codes = []
    for case in cases:
        n0 = served(agent)
        via = host.ovsfab(*case, env=env)
        # A usage error is typer's to report: the lean parser leaves it to the in-process CLI.
        usage_error = case == ("show", "a", "b")
        assert served(agent) == n0 + (0 if usage_error else 1), f"{case}: served?\n{agent.text()}"
        n0 = served(agent)
        local = host.ovsfab(*case, env={**env, **NO_AGENT})
        assert served(agent) == n0, "OVSFAB_NO_AGENT=1 still went to the agent"
        assert (via.returncode, via.stdout, via.stderr) == (local.returncode, local.stdout, local.stderr), case
        codes.append(via.returncode)
    assert codes == [0, 0, 0, 0, 3, 2, 0, 5, 0, 0, 0, 3, 5, 0], codes
    doc = json.loads(host.ovsfab("show", "--json", env=env, check=True).stdout)
    ports = {pt["name"]: pt for br in doc["bridges"] if br["name"] == "br0" for pt in br["ports"]}
    assert ports["vx0"]["class"] == "tunnel"
    assert sorted(pt["class"] for pt in ports.values()) == ["attachment", "attachment", "internal", "tunnel"]
    assert "Traceback" not in agent.text()


def test_agent_show_sees_changes_made_behind_its_back(agent_host, netns_targets):
    """The agent's warm session answers as a fresh one: a port removed or added with ovs-vsctl is seen at once."""
    host, agent = agent_host
    t = netns_targets()
    host.ovsfab("attach", "br0", t.target, "10.9.6.1/24", check=True)

    def port_names() -> set:
        doc = json.loads(host.ovsfab("show", "br0", "--json", check=True).stdout)
        return {p["name"] for p in doc["bridges"][0]["ports"]}

    n0 = served(agent)
    before = port_names()
    host.vsctl("add-port", "br0", "hand0", "--", "set", "interface", "hand0", "type=internal")
    assert port_names() == before | {"hand0"}
    host.vsctl("del-port", "br0", "hand0")
    assert port_names() == before
    assert served(agent) == n0 + 3


@pytest.mark.parametrize("no_color", [False, True])
def test_agent_colours_the_tree_for_the_clients_terminal(agent_host, netns_targets, no_color):
    """On a terminal the agent's output is coloured exactly as in-process; on a pipe it is not."""
    host, agent = agent_host
    t = netns_targets()
    host.ovsfab("attach", "br0", t.target, "10.9.7.1/24", check=True)
    # The kernel (linkwatch) and ovs-vswitchd report the new link's
    # operational state a moment after attach returns; both renderings below
    # must see the same state.
    port = tb.ovs_port_for(host, container_id=t.target)["name"]
    wait_for(lambda: tb.links_in(t)["eth1"]["operstate"] == "UP"
             and tb.links_in(host.name)[port]["operstate"] == "UP"
             and tb.ovs_row(host, "Interface", port)["link_state"] == "up", 10, "the new link up everywhere")
    env = {"NO_COLOR": "1"} if no_color else {}
    for args in (("show", "br0"), ("inspect", t.target)):
        n0 = served(agent)
        code, via, err = _on_tty(host, *args, env=env)
        assert served(agent) == n0 + 1 and code == 0, err
        code, local, err = _on_tty(host, *args, env={**env, **NO_AGENT})
        assert served(agent) == n0 + 1 and code == 0, err
        assert via == local, args
        assert bool(ANSI.search(via)) is not no_color, via
        piped = host.ovsfab(*args, check=True).stdout
        assert not ANSI.search(piped) and piped.replace("\n", "\r\n") == ANSI.sub("", via)


def test_show_falls_back_in_process_when_the_agent_is_gone(agent_host, netns_targets):
    host, agent = agent_host
    t = netns_targets()
    host.ovsfab("attach", "br0", t.target, "10.9.8.1/24", check=True)
    via = host.ovsfab("show", "--json", check=True)
    assert " op: show -> exit 0" in agent.text()
    assert agent.stop() == 0
    assert host.ovsfab("show", "--json", check=True).stdout == via.stdout
    # A stale socket file: nobody listens; the same answer, in-process.
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(sock_path(host))
    s.close()
    assert host.ovsfab("show", "--json", check=True).stdout == via.stdout
    assert host.ovsfab("inspect", t.target).returncode == 0


@pytest.mark.parametrize("argv", [["show", "--json"], ["attach", "br0", "netns:{t}", "10.9.4.1/24", "--json"]])
def test_operations_in_process_skip_typer(ovs_host, netns_targets, argv):
    """Without the agent, an operation's command line runs through the operations API in this
    process without importing typer/click (or the docker SDK for netns targets)."""
    t = netns_targets()
    argv = [a.replace("{t}", t.name) for a in argv]
    # main() ends with os._exit (no teardown): here it raises instead, so the modules can be listed.
    code = (f"import sys; sys.argv = ['ovsfab'] + {argv!r}\n"
            "import ovsfab.cli.fast as fast\n"
            "def _exit(code):\n    raise SystemExit(code)\n"
            "fast._exit_now = _exit\n"
            "try:\n    fast.main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'typer', 'click', 'docker', 'rich'})\n"
            "sys.stderr.write('HEAVY=%s\\n' % heavy)\n")
    cp = tb.run(["ip", "netns", "exec", ovs_host.name, tb.PYTHON, "-c", code],
                env=tb.clean_env({"OVS_RUNDIR": str(ovs_host.rundir), "OVSFAB_NO_AGENT": "1"}))
    out = json.loads(cp.stdout)
    assert out.get("command") == "show" or out.get("action") == "attach", out
    assert "HEAVY=[]" in cp.stderr, cp.stderr


@pytest.mark.unprivileged
def test_the_lean_parser_is_generated_from_the_typer_commands_and_current():
    """One definition: ovsfab/cli/argtable.py is what the typer commands define today."""
    from ovsfab.cli.argtable import COMMANDS
    from ovsfab.cli.argv import table

    assert COMMANDS == table(), ("ovsfab/cli/argtable.py is stale; regenerate it: .venv/bin/python -c "
                                 "'from ovsfab.cli.argv import write_table; write_table()'")


@pytest.mark.unprivileged
def test_which_command_lines_the_lean_parser_takes():
    from ovsfab.cli.argv import hoist_globals, parse

    p = parse(["show"])
    assert (p.op, p.params, p.as_json, p.db, p.backend) == ("show", {"bridge": None}, False, None, None)
    p = parse(["--db", "unix:/x", "show", "--json", "br0"])
    assert (p.op, p.params, p.as_json, p.db) == ("show", {"bridge": "br0"}, True, "unix:/x")
    p = parse(["attach", "br0", "web", "10.1.0.5/24", "--backend", "linux", "--vlan=7"])  # globals after the verb
    assert (p.op, p.backend, p.params["vlan"], p.params["addresses"]) == ("attach", "linux", "7", ["10.1.0.5/24"])
    p = parse(["attach", "--network", "blue", "web", "10.9.0.2/24"])
    assert (p.params["bridge"], p.params["container"], p.params["addresses"]) == (None, "web", ["10.9.0.2/24"])
    p = parse(["tunnel", "add", "br0", "192.0.2.6", "--no-bfd", "--key", "5"])
    assert (p.op, p.params["bfd"], p.params["key"], p.params["tun_type"]) == ("tunnel.add", False, "5", "vxlan")
    assert parse(["check", "--wait", "2.5"]).params == {"wait": 2.5}
    for argv in (["show", "--help"], ["show", "-h"], ["--debug", "show"], ["show", "--debug"],
                 ["show", "a", "b"], ["inspect"], ["inspect", "a", "b"], ["--db"], ["--version", "show"],
                 ["show", "--jsn"], ["attach", "br0"], ["check", "--wait", "x"], ["apply", "f.yaml"],
                 ["lab", "up"], ["tunnel", "add", "br0"], ["show", "--json=1"]):
        assert parse(argv) is None, argv
    assert hoist_globals(["attach", "b", "c", "--backend", "linux", "--debug", "--", "--db", "x"]) == \
        ["--backend", "linux", "--debug", "attach", "b", "c", "--", "--db", "x"]
    # a command's own option of the same name stays with it (`lab up --backend linux`)
    assert hoist_globals(["lab", "up", "--backend", "linux"], keep={"--backend"}) == ["lab", "up", "--backend", "linux"]
    from ovsfab.cli.main import _own_options
    assert "--backend" in _own_options(["--db", "unix:/x", "lab", "up", "--backend", "linux"])
    assert "--backend" not in _own_options(["attach", "br0", "web", "--backend", "linux"])


def _refusal(path: str, payload: bytes) -> dict:
    """Send ``payload`` as a whole request; the agent's one-object reply."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(10)
    try:
        c.connect(path)
        try:
            c.sendall(payload)
            c.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it read everything: the reply is still there
        data = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                break
            data += chunk
        return json.loads(data)
    finally:
        c.close()


def test_idle_and_malformed_clients_do_not_hold_up_an_attach(agent_host, netns_targets):
    """20 clients that connect and send nothing used to stall every request for 30 s (each held
    the loop for its read timeout).  Now they are read by the intake thread: an attach goes
    through the agent while all 20 are still connected, and bad requests get clear refusals."""
    host, agent = agent_host
    path = sock_path(host)
    idle = []
    for _ in range(20):
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(path)
        idle.append(c)
    try:
        t = netns_targets()
        n0 = served(agent)
        host.ovsfab("attach", "br0", t.target, "10.9.3.1/24", check=True)
        assert served(agent) == n0 + 1, agent.text()  # the agent served it ...
        for c in idle:  # ... while every idle client was still connected and unanswered
            c.setblocking(False)
            with pytest.raises(BlockingIOError):
                c.recv(1)
    finally:
        for c in idle:
            c.close()
    assert _refusal(path, b"{not json") == {"refused": "not a JSON object"}
    assert _refusal(path, b"[1, 2]") == {"refused": "not a JSON object"}
    big = _refusal(path, b"x" * (2 << 20))
    assert "larger than" in big["refused"] and "code" not in big
    # idle connections are closed by the agent after its read timeout, not kept forever
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(10)
    c.connect(path)
    assert c.recv(1) == b""
    c.close()
    assert "Traceback" not in agent.text()


def test_agent_takes_the_socket_systemd_passes(ovs_host, netns_targets, tmp_path):
    """Socket activation (sd_listen_fds): a client connects before the agent runs; the agent,
    started with the listening socket as fd 3 and LISTEN_PID/LISTEN_FDS, serves it."""
    path = os.path.join(str(ovs_host.rundir), "ovsfab-agent.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o600)
    listener.listen(16)
    t = netns_targets()
    # The client's request waits in the backlog: nobody has accepted yet.
    client = subprocess.Popen(ovs_host.ovsfab_cmd("attach", "br0", t.target, "10.9.6.1/24"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=tb.clean_env(), cwd=str(tb.REPO))
    log = tmp_path / "agent.log"
    # What systemd does: the socket as fd 3, LISTEN_PID = the exec'd process's own PID.
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.environ['LISTEN_PID'] = str(os.getpid()); "
                "os.environ['LISTEN_FDS'] = '1'; os.execv(sys.argv[2], sys.argv[2:])")
    with open(log, "w") as fh:
        agent = subprocess.Popen(["ip", "netns", "exec", ovs_host.name, "env", f"OVS_RUNDIR={ovs_host.rundir}",
                                  tb.PYTHON, "-c", launcher, str(listener.fileno()), tb.PYTHON, "-m", "ovsfab",
                                  "agent"], stdout=fh, stderr=subprocess.STDOUT, pass_fds=(listener.fileno(),),
                                 env=tb.clean_env(), cwd=str(tb.REPO))
    listener.close()
    try:
        out, err = client.communicate(timeout=60)
        assert client.returncode == 0, err
        assert "attached" in out
        text = log.read_text()
        assert "(socket from systemd)" in text and " op: attach -> exit 0" in text, text
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=15) == 0
        assert os.path.exists(path), "the agent must not remove a socket systemd owns"
    finally:
        if agent.poll() is None:
            agent.kill()
        if os.path.exists(path):
            os.unlink(path)


def test_concurrent_attaches_share_a_transaction_and_fail_alone(agent_host, netns_targets):
    """Group commit: attaches that reach the agent together are plugged in one OVSDB transaction
    (its log says `attach xN in one transaction`); each still gets its own answer, and a bad
    one among them fails alone."""
    import concurrent.futures

    host, agent = agent_host
    targets = [netns_targets() for _ in range(12)]
    # One taken already: its second attach with other settings must conflict, alone.
    host.ovsfab("attach", "br0", targets[0].target, "10.9.7.100/24", check=True)
    n0 = served(agent)

    def one(i: int):
        addr = f"10.9.7.{i + 1}/24"
        return host.ovsfab("attach", "br0", targets[i].target, addr)

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        runs = list(pool.map(one, range(12)))
    assert served(agent) >= n0 + 12, agent.text()
    assert runs[0].returncode == 4 and "other settings" in runs[0].stderr, runs[0]
    for i, cp in enumerate(runs[1:], start=1):
        assert cp.returncode == 0 and "attached" in cp.stdout, (i, cp)
        assert tb.addrs_in(targets[i])["eth1"] == [f"10.9.7.{i + 1}/24"]
    grouped = re.findall(r"op: attach x(\d+) in one transaction", agent.text())
    assert grouped and max(map(int, grouped)) >= 2, agent.text()
    ports = {p["name"] for p in tb.ovs_table(host, "Port", ["name"])}
    assert len([p for p in ports if p.startswith("ovf")]) == 12
    assert tb.tcp_transfer(targets[1], targets[2], "10.9.7.3", nbytes=500_000)


def test_the_same_interface_twice_in_one_group_does_not_wait_for_its_own_lock(ovs_host, netns_targets):
    """Group commit with a retry in the group (two shells, or a client that timed out and tried
    again): the second of two requests for one interface would block forever on the lock the first
    holds until the commit.  It runs after the commit and finds the first's record; a different
    settings' duplicate conflicts, as it would one after the other."""
    a, b = netns_targets(), netns_targets()
    code = f"""
import json
from ovsfab.ops import api
from ovsfab.ops.context import Context
ctx = Context(db="unix:{ovs_host.rundir}/db.sock", backend="ovs")
group = api.AttachGroup(ctx)
for target, addr in (("{a.target}", "10.9.8.1/24"), ("{a.target}", "10.9.8.1/24"), ("{b.target}", "10.9.8.2/24"),
                     ("{a.target}", "10.9.8.9/24")):
    group.add({{"bridge": "br0", "container": target, "addresses": [addr]}})
out = []
for r in group.commit():
    out.append({{"error": str(r), "exit_code": r.exit_code}} if isinstance(r, Exception) else r.to_json())
print(json.dumps(out))
"""
    cp = subprocess.run(["ip", "netns", "exec", ovs_host.name, "env", f"OVS_RUNDIR={ovs_host.rundir}",
                         str(tb.PYTHON), "-c", code], capture_output=True, text=True, timeout=60,
                        env=tb.clean_env(), cwd=str(tb.REPO))
    assert cp.returncode == 0, cp.stderr
    first, again, other, conflict = json.loads(cp.stdout)
    assert first["changed"] is True and again["changed"] is False, (first, again)
    assert again["port"] == first["port"] and again["ofport"] == first["ofport"]
    assert other["changed"] is True
    assert conflict["exit_code"] == 4 and "other settings" in conflict["error"], conflict
    assert tb.addrs_in(a)["eth1"] == ["10.9.8.1/24"] and tb.addrs_in(b)["eth1"] == ["10.9.8.2/24"]
    assert len([p for p in tb.ovs_ports(ovs_host) if p.startswith("ovf")]) == 2


class LingeringAgent(AgentProc):
    """The agent with every attach in a burst and a 3 s quiet window (tests only: deterministic groups)."""

    def __init__(self, host: tb.OvsHost) -> None:  # noqa: super().__init__ would start the plain agent
        self.host = host
        self.log = host.rundir / f"agent-{time.monotonic_ns()}.log"
        self._fh = open(self.log, "w")
        code = ("import ovsfab.agent.server as s\n"
                "s.BURST_WINDOW, s.LINGER_QUIET, s.LINGER_MAX = 1e9, 3.0, 20.0\n"
                "import sys; sys.argv = ['ovsfab', 'agent']\nfrom ovsfab.cli.main import main; main()\n")
        self.proc = subprocess.Popen(["ip", "netns", "exec", host.name, "env", f"OVS_RUNDIR={host.rundir}",
                                      str(tb.PYTHON), "-c", code], stdout=self._fh, stderr=subprocess.STDOUT,
                                     env=tb.clean_env(), cwd=str(tb.REPO))


def test_a_request_joining_a_group_reads_ovsdb_as_fresh_as_when_it_arrived(ovs_host, netns_targets):
    """The burst group takes in attaches that arrive later (docs/agent.md); each arrival first
    brings the agent's OVSDB view up to date.  Here the port of x is removed by ovs-vsctl while
    the group is open; the re-attach of x that arrives afterwards must see that (and plug it again),
    not the agent's stale view of it as attached."""
    import concurrent.futures

    x, y = netns_targets(), netns_targets()
    ovs_host.ovsfab("attach", "br0", x.target, "10.9.9.1/24", check=True, env={"OVSFAB_NO_AGENT": "1"})
    port = [p for p in tb.ovs_ports(ovs_host) if p.startswith("ovf")][0]
    agent = LingeringAgent(ovs_host)
    try:
        agent.wait_log("serving attach/detach")
        agent.wait_log("connected to OVSDB")
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            first = pool.submit(ovs_host.ovsfab, "attach", "br0", y.target, "10.9.9.2/24")
            # y's link work is done (its address is in) and its group waits for more.
            wait_for(lambda: tb.addrs_in(y).get("eth1") or first.done(), 20, "y's link work in the group")
            assert not first.done(), "the group was closed before the second request"
            tb.run(["ip", "netns", "exec", ovs_host.name, "ovs-vsctl", f"--db=unix:{ovs_host.rundir}/db.sock",
                    "--no-wait", "del-port", port])
            again = pool.submit(ovs_host.ovsfab, "attach", "br0", x.target, "10.9.9.1/24", "--json")
            runs = [first.result(60), again.result(60)]
        assert all(cp.returncode == 0 for cp in runs), runs
        assert re.search(r"op: attach x2 in one transaction", agent.text()), agent.text()
        assert json.loads(runs[1].stdout)["changed"] is True, runs[1].stdout
        assert port in tb.ovs_ports(ovs_host)
        assert tb.tcp_transfer(x, y, "10.9.9.2", nbytes=200_000)
    finally:
        if agent.proc.poll() is None:
            agent.kill()
