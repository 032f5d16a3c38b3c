#!/usr/bin/env python3
"""test_jsclient: Qdrant's official JavaScript client (@qdrant/js-client-rest)
works against shoal unchanged. Runs the suite test/js/client_test.mjs with
node against a fresh node, once without and once with an API key (passed to
the client, which sends it as the api-key header), and test/js/cluster_test.mjs
(the client's cluster calls) against a 3-node cluster. Each run must exit 0;
its output is printed so a failing case can be read in the log.

The client's dependencies are installed by test/run (npm in test/js); when
test/js/node_modules is missing this suite installs them itself."""
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Cluster, Node, test  # noqa: E402

JS_DIR = os.path.join(harness.REPO, "test", "js")
SUITE = os.path.join(JS_DIR, "client_test.mjs")
CLUSTER_SUITE = os.path.join(JS_DIR, "cluster_test.mjs")
JS_TIMEOUT = float(os.environ.get("SHOAL_TEST_JS_TIMEOUT", "180"))


def node_binary():
    path = shutil.which("node")
    assert path, "node (Node.js) is not installed: run tools/deps"
    return path


def ensure_deps():
    """Installs test/js's npm dependencies when they are not there."""
    client = os.path.join(JS_DIR, "node_modules", "@qdrant", "js-client-rest", "package.json")
    if os.path.exists(client):
        return
    npm = shutil.which("npm")
    assert npm, "npm is not installed and test/js/node_modules is missing: run tools/deps"
    result = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                            cwd=JS_DIR, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"npm install failed:\n{result.stdout}\n{result.stderr}"
    assert os.path.exists(client), "npm install did not bring @qdrant/js-client-rest"


def run_js(n, key=None, suite=SUITE):
    """Runs a JS suite against node n (a list: every peer of a cluster);
    returns (exit code, output)."""
    ensure_deps()
    nodes = n if isinstance(n, list) else [n]
    urls = ",".join(f"http://127.0.0.1:{node.http_port}" for node in nodes)
    args = [node_binary(), suite, urls]
    if key:
        args.append(key)
    env = harness.clean_env({"NODE_NO_WARNINGS": "1"})
    env.pop("QDRANT_URL", None)
    env.pop("QDRANT_API_KEY", None)
    try:
        result = subprocess.run(args, cwd=JS_DIR, env=env, capture_output=True, text=True,
                                timeout=JS_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) \
            else (exc.stdout or "")
        err = (exc.stderr or b"").decode(errors="replace") if isinstance(exc.stderr, bytes) \
            else (exc.stderr or "")
        raise AssertionError(f"the JS suite did not finish in {JS_TIMEOUT:g} s:\n{out}{err}")
    output = result.stdout + result.stderr
    print(output, end="" if output.endswith("\n") else "\n", flush=True)
    return result.returncode, output


def summary(output):
    """(passed, failed) from the suite's last "N passed, N failed" line."""
    for line in reversed(output.splitlines()):
        parts = line.split()
        if len(parts) == 4 and parts[1] == "passed," and parts[3] == "failed":
            return int(parts[0]), int(parts[2])
    raise AssertionError("the JS suite printed no 'N passed, N failed' line")


@test
def test_js_client_suite_passes():
    with Node() as n:
        code, output = run_js(n)
        passed, failed = summary(output)
        assert failed == 0 and passed > 0 and code == 0, \
            f"JS client suite: {passed} passed, {failed} failed, exit {code}"


@test
def test_js_client_suite_passes_with_an_api_key():
    key = "js-client-key-42"
    with Node(env={"QDRANT__SERVICE__API_KEY": key}, api_key=key) as n:
        status, _ = n.request("GET", "/collections", api_key=None)
        assert status == 401, "the node really wants the key"
        code, output = run_js(n, key)
        passed, failed = summary(output)
        assert failed == 0 and passed > 0 and code == 0, \
            f"JS client suite with a key: {passed} passed, {failed} failed, exit {code}"


@test
def test_js_client_cluster_calls_against_three_nodes():
    with Cluster(3) as cluster:
        cluster.wait_agree()
        code, output = run_js(cluster.nodes, suite=CLUSTER_SUITE)
        passed, failed = summary(output)
        assert failed == 0 and passed > 0 and code == 0, \
            f"JS client cluster suite: {passed} passed, {failed} failed, exit {code}"


if __name__ == "__main__":
    harness.main()
