"""harness: what every integration suite needs to drive real shoal nodes.

A Node is one `shoal` supervisor (and its actors) on loopback ports picked
free by the kernel, with its own temp dir as working dir and storage, its
stderr in <dir>/shoal.log. Nodes are always stopped by pid, also when a test
fails or the suite is killed (context manager, try/finally, atexit, SIGTERM
handler), and every process of a node is found by its working dir, so even
an orphaned actor is seen and stopped.

A Cluster is N such nodes with cluster.enabled, the first started with
--uri (its own p2p address) and the others with --bootstrap pointing at a
live peer, each with its own ports and storage dir. Its helpers crash
(kill -9 every process of a node), stop (SIGTERM) and restart a node with
its storage, add a node, and wait until every live node's GET /cluster
agrees on peers, leader, term and commit, every one of them a voter.

The tiny test framework: decorate functions with @test, call main(); each
test runs in order, a failure prints its traceback and the log tail of the
nodes it started, and the last line is "N passed, N failed" (test/run counts
it). Standard library only. Waiting is done by polling a condition with a
deadline (wait_for), never by a bare sleep.
"""
import atexit
import ctypes
import http.client
import json
import os
import re
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHOAL_BIN = os.path.abspath(os.environ.get("SHOAL_BIN") or os.path.join(REPO, "build", "shoal"))
#  Deadlines, in seconds: generous so a loaded CI machine does not fail a
#  test that waits for a condition that does come true.
START_TIMEOUT = float(os.environ.get("SHOAL_TEST_START_TIMEOUT", "30"))
WAIT_TIMEOUT = float(os.environ.get("SHOAL_TEST_WAIT_TIMEOUT", "90"))
#  Environment a node must not inherit from whoever runs the tests.
_SCRUBBED_PREFIXES = ("QDRANT__", "SHOAL__")
_SCRUBBED_NAMES = ("QDRANT_URI", "QDRANT_BOOTSTRAP", "RUN_MODE", "SHOAL_RUN_CONFIG")

_live_nodes = []            # every Node not yet stopped


def debian_module(name, script):
    """Imports `name`, one of Debian's python3-* packages, which only
    /usr/bin/python3 sees: when this interpreter lacks it, re-runs `script`
    (the calling suite, with its arguments) under /usr/bin/python3, once.
    None when no interpreter has it."""
    import importlib
    try:
        return importlib.import_module(name)
    except ImportError:
        debian = "/usr/bin/python3"
        if (os.path.realpath(sys.executable) != os.path.realpath(debian)
                and os.access(debian, os.X_OK) and not os.environ.get("SHOAL_DEBIAN_REEXEC")):
            os.environ["SHOAL_DEBIAN_REEXEC"] = "1"
            os.execv(debian, [debian, os.path.abspath(script), *sys.argv[1:]])
        return None


def id_key(pid):
    """Qdrant's scroll order of point ids: unsigned integers first, then
    UUIDs (as strings)."""
    return (0, pid, "") if isinstance(pid, int) else (1, 0, pid)


def free_ports(count):
    """count distinct loopback ports the kernel says are free right now."""
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(condition, timeout=WAIT_TIMEOUT, what="condition", interval=0.05):
    """Polls condition() until it returns something truthy (returned) or the
    deadline passes (AssertionError naming what was awaited: what, or what()
    called then when it is a function, to describe the state at the end)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = condition()
            if value:
                return value
        except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
            last_error = exc
        if time.monotonic() >= deadline:
            if callable(what):
                what = what()
            extra = f" (last error: {last_error!r})" if last_error else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{extra}")
        time.sleep(interval)


def pid_alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = stat[stat.rfind(")") + 2:].split(" ", 1)[0]
    return state not in ("Z", "X")


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def actor_role(pid):
    """'raft', 'gateway', 'shard:<uid>/<shard>' for an actor's pid, else None."""
    args = _cmdline(pid)
    if "--actor" not in args:
        return None
    opts = dict(zip(args[1::2], args[2::2])) if args[1:2] == ["--actor"] else {}
    role = opts.get("--actor")
    if role == "shard":
        return f"shard:{opts.get('--collection-uid')}/{opts.get('--shard-id')}"
    return role


def _set_parent_death_signal():
    """Runs in the forked child before exec: a killed test runner takes its
    nodes with it (prctl PR_SET_PDEATHSIG, SIGTERM)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)
    except OSError:
        pass


def run_shoal(args, cwd=None, env=None, timeout=20):
    """Runs shoal to completion (--help, a bad flag, a bad config) and returns
    the CompletedProcess. A process still running at the deadline is killed
    and the call fails: those commands must exit on their own."""
    workdir = cwd or tempfile.mkdtemp(prefix="shoal-run-")
    try:
        proc = subprocess.Popen([SHOAL_BIN, *args], cwd=workdir, env=clean_env(env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=_set_parent_death_signal)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            _kill_tree_in(workdir)
            raise AssertionError(f"shoal {' '.join(args)} did not exit within {timeout} s;"
                                 f" stderr:\n{err[-2000:]}")
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    finally:
        if cwd is None:
            _kill_tree_in(workdir)
            shutil.rmtree(workdir, ignore_errors=True)


def clean_env(extra=None):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_SCRUBBED_PREFIXES) and k not in _SCRUBBED_NAMES}
    env.update(extra or {})
    return env


def _pids_in(workdir):
    """Live pids whose working dir is workdir: every process of a node (the
    supervisor and the actors it exec'ed inherit it), orphans included."""
    real = os.path.realpath(workdir)
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{name}/cwd") == real and pid_alive(int(name)):
                pids.append(int(name))
        except OSError:
            continue
    return sorted(pids)


def _kill_tree_in(workdir):
    for pid in _pids_in(workdir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Node:
    """One shoal node. Node(start=False) prepares the dir and ports only.

    env: extra environment variables; files: {relative path: text} written
    into the node's working dir before the start (config/config.yaml ...);
    args: command line flags; port_env: pass the ports and storage path as
    QDRANT__ variables (False when a test sets them in a file itself);
    api_key: sent by request() unless told otherwise, and used for /readyz.
    """

    def __init__(self, args=(), env=None, files=None, port_env=True, api_key=None,
                 start=True, wait_ready=True):
        self.dir = tempfile.mkdtemp(prefix="shoal-test-")
        self.storage = os.path.join(self.dir, "storage")
        self.log_path = os.path.join(self.dir, "shoal.log")
        self.http_port, self.grpc_port, self.p2p_port = free_ports(3)
        self.args = list(args)
        self.api_key = api_key
        self.proc = None
        self._log = None
        self.env = {
            "QDRANT__SERVICE__HOST": "127.0.0.1",
            "QDRANT__LOG_LEVEL": os.environ.get("SHOAL_TEST_LOG_LEVEL", "info"),
        }
        if port_env:
            self.env.update({
                "QDRANT__SERVICE__HTTP_PORT": str(self.http_port),
                "QDRANT__SERVICE__GRPC_PORT": str(self.grpc_port),
                "QDRANT__CLUSTER__P2P__PORT": str(self.p2p_port),
                "QDRANT__STORAGE__STORAGE_PATH": self.storage,
                "QDRANT__STORAGE__SNAPSHOTS_PATH": os.path.join(self.dir, "snapshots"),
            })
        self.env.update(env or {})
        for rel, text in (files or {}).items():
            path = os.path.join(self.dir, rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
        _live_nodes.append(self)
        if start:
            self.start(wait_ready=wait_ready)

    # -- lifecycle ---------------------------------------------------------

    def start(self, wait_ready=True):
        assert self.proc is None or self.proc.poll() is not None, "node already running"
        if self._log:
            self._log.close()
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SHOAL_BIN, *self.args], cwd=self.dir,
                                     env=clean_env(self.env), stdin=subprocess.DEVNULL,
                                     stdout=self._log, stderr=self._log,
                                     preexec_fn=_set_parent_death_signal)
        if wait_ready:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def ready(self):
        status, _ = self.try_request("GET", "/readyz", timeout=2)
        return status == 200

    def wait_ready(self, timeout=START_TIMEOUT):
        def check():
            if not self.running():
                raise AssertionError(f"shoal exited with code {self.proc.returncode}"
                                     f" before it was ready")
            return self.ready()
        wait_for(check, timeout, f"node on port {self.http_port} to answer /readyz")

    def kill(self, sig=signal.SIGKILL):
        """Sends sig to the supervisor."""
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=WAIT_TIMEOUT):
        """The supervisor's exit code, waiting at most timeout."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"supervisor pid={self.proc.pid} still running after"
                                 f" {timeout:g} s")

    def stop(self, remove=True):
        """SIGTERM, then SIGKILL by pid; kills any leftover process of the
        node; removes its dir unless remove=False. Safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _kill_tree_in(self.dir)
        if self._log:
            self._log.close()
            self._log = None
        if self in _live_nodes:
            _live_nodes.remove(self)
        if remove and not os.environ.get("SHOAL_TEST_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def crash(self, timeout=WAIT_TIMEOUT):
        """kill -9 of the whole node, as a power cut would: SIGKILL to the
        supervisor and every actor (by pid, found by working dir, until none
        is left: an actor the supervisor forked meanwhile is caught too), so
        no process gets to shut down cleanly. Storage is kept."""
        deadline = time.monotonic() + timeout
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        while True:
            pids = self.all_pids()
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() >= deadline:
                raise AssertionError(f"processes {pids} of node {self.dir} survive SIGKILL")
            time.sleep(0.02)
        if self.proc is not None:
            self.proc.wait()

    def terminate(self, timeout=WAIT_TIMEOUT):
        """Graceful stop: SIGTERM to the supervisor, then waits for it and
        every actor to exit; the exit code. Storage is kept."""
        self.kill(signal.SIGTERM)
        code = self.wait_exit(timeout)
        wait_for(lambda: not self.all_pids(), timeout, f"every actor of {self.dir} to exit")
        return code

    def restart(self, args=None, wait_ready=True):
        """Starts the node again with its storage (after crash, terminate or
        stop(remove=False)); args replaces the command line flags if given."""
        if args is not None:
            self.args = list(args)
        if self not in _live_nodes:
            _live_nodes.append(self)
        return self.start(wait_ready=wait_ready)

    # -- cluster mode ----------------------------------------------------------

    @property
    def p2p_uri(self):
        """This node's p2p address as its peers reach it."""
        return f"http://127.0.0.1:{self.p2p_port}"

    def peer_id(self):
        """The peer id the supervisor stored (None before the first start)."""
        try:
            with open(os.path.join(self.storage, "peer_id")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def cluster(self, timeout=5):
        """GET /cluster's result, or None when the node does not answer 200."""
        status, body = self.try_request("GET", "/cluster", timeout=timeout)
        if status != 200 or not isinstance(body, dict):
            return None
        return body.get("result")

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.proc is not None:
            #  The dir goes with stop(): show the log while it is there.
            print(f"--- log tail of node pid={self.proc.pid} dir={self.dir}:\n"
                  f"{self.log_tail()}", flush=True)
        self.stop()
        return False

    # -- processes ---------------------------------------------------------

    def children(self):
        """{pid: role} of the supervisor's live children."""
        pids = set()
        for task in _listdir(f"/proc/{self.proc.pid}/task"):
            try:
                with open(f"/proc/{self.proc.pid}/task/{task}/children") as f:
                    pids.update(int(p) for p in f.read().split())
            except OSError:
                continue
        return {pid: actor_role(pid) for pid in sorted(pids) if pid_alive(pid)}

    def actors(self, role=None):
        """Pids of live children, optionally only those whose role is role or
        starts with role (e.g. 'shard')."""
        return sorted(pid for pid, r in self.children().items()
                      if role is None or (r or "").split(":")[0] == role or r == role)

    def all_pids(self):
        """Every live process of this node, found by working dir."""
        return _pids_in(self.dir)

    # -- HTTP --------------------------------------------------------------

    def request(self, method, path, body=None, headers=None, timeout=30, api_key=True):
        """(status, parsed JSON or text). api_key=True sends the node's key if
        it has one; a string sends that key; None sends none."""
        hdrs = dict(headers or {})
        key = self.api_key if api_key is True else api_key
        if key:
            hdrs.setdefault("api-key", key)
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            hdrs.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return resp.status, parsed

    def try_request(self, *args, **kwargs):
        """request(), but (None, error) when the node cannot be reached."""
        try:
            return self.request(*args, **kwargs)
        except (OSError, http.client.HTTPException) as exc:
            return None, exc

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"


class Cluster:
    """Nodes of one cluster on loopback (see the module docstring).

    size: nodes started at once (0: none; add them with start_first / add);
    env, files: for every node, on top of cluster.enabled; tick_ms: sets
    cluster.consensus.tick_period_ms when given. Nodes are Node objects:
    stopped by pid with the cluster (context manager, or stop()), or by the
    test framework at the end of the test that started them."""

    def __init__(self, size=3, env=None, files=None, tick_ms=None, start=True):
        self.env = {"QDRANT__CLUSTER__ENABLED": "true"}
        if tick_ms:
            self.env["QDRANT__CLUSTER__CONSENSUS__TICK_PERIOD_MS"] = str(tick_ms)
        self.env.update(env or {})
        self.files = dict(files or {})
        self.nodes = []
        if start and size:
            self.start_first()
            self.add(size - 1)
            self.wait_agree()

    # -- membership ---------------------------------------------------------

    def _new_node(self, args=(), env=None):
        """A node of this cluster, prepared (ports, dir) but not started."""
        node = Node(args=args, env={**self.env, **(env or {})}, files=self.files, start=False)
        self.nodes.append(node)
        return node

    def start_first(self, env=None, args=(), wait_ready=True):
        """The first peer: --uri with its own p2p address, a new cluster."""
        node = self._new_node(env=env)
        node.args = ["--uri", node.p2p_uri, *args]
        return node.start(wait_ready=wait_ready)

    def add(self, count=1, bootstrap=None, env=None, args=(), wait_ready=True):
        """Starts count nodes with --bootstrap (bootstrap's p2p address; by
        default the first running node) and no --uri: their peers learn
        their address from their join. They start at once and are then
        waited for. Returns the new node, or the list when count > 1."""
        target = bootstrap or next(n for n in self.nodes if n.running())
        new = [self._new_node(["--bootstrap", target.p2p_uri, *args], env=env)
               for _ in range(count)]
        for node in new:
            node.start(wait_ready=False)
        if wait_ready:
            for node in new:
                node.wait_ready()
        return new[0] if count == 1 else new

    def running(self):
        return [n for n in self.nodes if n.running()]

    def by_id(self, peer_id):
        return next((n for n in self.nodes if n.peer_id() == peer_id), None)

    # -- state ----------------------------------------------------------------

    def statuses(self, nodes=None):
        """{node: GET /cluster result or None} of nodes (default: running)."""
        return {n: n.cluster() for n in (self.running() if nodes is None else nodes)}

    def agreement(self, nodes=None, members=None):
        """The leader's Node when every node of nodes (default: the running
        ones) answers GET /cluster with the same peers (ids and uris), the
        same leader (one of them, whose own role is Leader), term and
        commit, each says it is a voter (learners are promoted once they
        have caught up: until then a peer's loss may cost the majority),
        and the peer ids are exactly members' (default: nodes'); else
        None."""
        nodes = self.running() if nodes is None else list(nodes)
        members = nodes if members is None else list(members)
        if not nodes:
            return None
        seen = self.statuses(nodes)
        if any(s is None or s.get("status") != "enabled" for s in seen.values()):
            return None
        want = {str(n.peer_id()) for n in members}
        first = next(iter(seen.values()))
        peers = first["peers"]
        info = first["raft_info"]
        for node, s in seen.items():
            if s["peer_id"] != node.peer_id() or s["peers"] != peers:
                return None
            r = s["raft_info"]
            if (r["leader"], r["term"], r["commit"]) != (info["leader"], info["term"],
                                                          info["commit"]):
                return None
            if r.get("is_voter") is not True:
                return None
        if set(peers) != want or info["leader"] is None:
            return None
        leader = self.by_id(info["leader"])
        if leader is None or leader not in nodes or seen[leader]["raft_info"]["role"] != "Leader":
            return None
        return leader

    def wait_agree(self, nodes=None, members=None, timeout=WAIT_TIMEOUT):
        """Waits for agreement (see agreement()) and returns the leader."""
        nodes_list = self.running() if nodes is None else list(nodes)
        return wait_for(lambda: self.agreement(nodes_list, members), timeout,
                        lambda: f"{len(nodes_list)} voters to agree on peers, leader, term"
                                f" and commit (now: {self.describe(nodes_list)})")

    def leader(self, nodes=None):
        """The running node that says it is the leader, if exactly one does."""
        leaders = [n for n, s in self.statuses(nodes).items()
                   if s and s["raft_info"].get("role") == "Leader"]
        return leaders[0] if len(leaders) == 1 else None

    def describe(self, nodes=None):
        """One line per node of what its GET /cluster says, for messages."""
        lines = []
        for n in (self.running() if nodes is None else nodes):
            s = n.cluster(timeout=2)
            r = (s or {}).get("raft_info") or {}
            lines.append(f"{n.peer_id()}:{n.http_port} leader={r.get('leader')}"
                         f" role={r.get('role')} voter={r.get('is_voter')} term={r.get('term')}"
                         f" commit={r.get('commit')} peers={sorted((s or {}).get('peers', {}))}")
        return "; ".join(lines)

    # -- lifecycle ------------------------------------------------------------

    def stop(self):
        for node in self.nodes:
            node.stop()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            for node in self.nodes:
                if node.proc is not None:
                    print(f"--- log tail of node {node.peer_id()} pid={node.proc.pid}"
                          f" dir={node.dir}:\n{node.log_tail()}", flush=True)
        self.stop()
        return False


# -- what the cluster suites check on every node ------------------------------

#  ?timeout= (seconds) of the collection operations expected to fail for want
#  of a leader: short, since the suite waits for each of them.
NO_LEADER_TIMEOUT = 3
#  How long such a request may take at most before the suite calls it hung:
#  the timeout plus a generous margin for a loaded CI machine.
HUNG_AFTER = NO_LEADER_TIMEOUT + 30


def vectors(size=4):
    return {"vectors": {"size": size, "distance": "Dot"}}


def create(node, name, body=None, timeout=None, expect=200):
    query = f"?timeout={timeout}" if timeout else ""
    status, reply = node.request("PUT", f"/collections/{name}{query}", body or vectors(),
                                 timeout=HUNG_AFTER if timeout else 60)
    if expect is not None:
        assert status == expect, (node.peer_id(), name, status, reply)
    return status, reply


def names(node):
    """Collection names as GET /collections lists them, or None."""
    status, body = node.try_request("GET", "/collections", timeout=5)
    if status != 200:
        return None
    return [c["name"] for c in body["result"]["collections"]]


def aliases(node):
    """{alias: collection} from GET /aliases, or None."""
    status, body = node.try_request("GET", "/aliases", timeout=5)
    if status != 200:
        return None
    return {a["alias_name"]: a["collection_name"] for a in body["result"]["aliases"]}


def config_of(node, name):
    status, body = node.try_request("GET", f"/collections/{name}", timeout=5)
    return body["result"]["config"] if status == 200 else None


def wait_same_collections(nodes, expected=None, what="collections"):
    """Waits until every node lists the same collections (expected, if
    given) and aliases; returns the names."""
    def check():
        seen = [(names(n), aliases(n)) for n in nodes]
        if any(s[0] is None or s[1] is None for s in seen) or any(s != seen[0] for s in seen):
            return None
        if expected is not None and sorted(seen[0][0]) != sorted(expected):
            return None
        return seen[0][0] or True
    return wait_for(check, what=f"every node to list the same {what}")


def assert_no_leader_op_fails(node, name, existing):
    """Collection operations on node fail cleanly (a 5xx with a message, an
    answer within their ?timeout=) for want of a leader: creating name,
    and updating, aliasing and deleting the existing collection."""
    t = f"?timeout={NO_LEADER_TIMEOUT}"
    attempts = [
        ("PUT", f"/collections/{name}{t}", vectors()),
        ("PATCH", f"/collections/{existing}{t}",
         {"optimizers_config": {"indexing_threshold": 777}}),
        ("POST", f"/collections/aliases{t}",
         {"actions": [{"create_alias": {"collection_name": existing,
                                        "alias_name": f"{name}-alias"}}]}),
        ("DELETE", f"/collections/{existing}{t}", None),
    ]
    for method, path, body in attempts:
        status, reply = node.request(method, path, body, timeout=HUNG_AFTER)
        assert status is not None and status >= 500, (method, path, status, reply)
        assert reply["status"]["error"], reply


def check_status_shape(node, status):
    """GET /cluster of node (status) has the shape of Qdrant's ClusterStatus."""
    assert status["status"] == "enabled"
    assert status["peer_id"] == node.peer_id()
    assert 1 <= status["peer_id"] <= 2 ** 53
    r = status["raft_info"]
    assert set(r) == {"term", "commit", "pending_operations", "leader", "role", "is_voter"}, r
    assert r["role"] in ("Leader", "Follower", "Candidate", "PreCandidate"), r
    assert isinstance(r["is_voter"], bool) and isinstance(r["pending_operations"], int)
    c = status["consensus_thread_status"]
    assert c["consensus_thread_status"] == "working", c
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
                        c["last_update"]), c
    assert isinstance(status["message_send_failures"], dict)


def _listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _stop_all():
    for node in list(_live_nodes):
        node.stop()


atexit.register(_stop_all)

# -- the test framework ------------------------------------------------------

_tests = []


def test(fn):
    """Registers fn as a test case; cases run in the order they are defined."""
    _tests.append(fn)
    return fn


def _on_sigterm(signo, frame):
    raise SystemExit(128 + signo)


def main(shared=None):
    """Runs the registered tests (or those named on the command line) and
    exits 1 if any failed. The last line printed is "N passed, N failed".

    shared: a function that starts the suite's shared node, called before
    the tests so the node outlives each of them (nodes a test starts are
    stopped at its end); should it fail, each test calls it again and
    reports why."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if shared is not None:
        try:
            shared()
        except Exception:
            traceback.print_exc(file=sys.stdout)
    wanted = set(sys.argv[1:])
    passed = failed = 0
    if not os.access(SHOAL_BIN, os.X_OK):
        print(f"shoal binary not found at {SHOAL_BIN} (set SHOAL_BIN)", flush=True)
        print(f"0 passed, {len(_tests)} failed", flush=True)
        sys.exit(1)
    try:
        for fn in _tests:
            if wanted and fn.__name__ not in wanted:
                continue
            before = list(_live_nodes)
            print(f"--- {fn.__name__}", flush=True)
            started = time.monotonic()
            try:
                fn()
                passed += 1
                print(f"ok   {fn.__name__} ({time.monotonic() - started:.1f} s)", flush=True)
            except Exception:
                failed += 1
                traceback.print_exc(file=sys.stdout)
                for node in _live_nodes:
                    if node not in before:
                        print(f"--- log tail of node pid={node.proc.pid if node.proc else '-'}"
                              f" dir={node.dir}:\n{node.log_tail()}", flush=True)
                print(f"FAIL {fn.__name__}", flush=True)
            finally:
                for node in list(_live_nodes):
                    if node not in before:
                        node.stop()
    finally:
        _stop_all()
        print(f"{passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)
