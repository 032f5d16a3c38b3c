#!/usr/bin/env python3
"""test_config: the command line and the configuration layers as Qdrant
users know them: --help/--version, bad flags, --config-path,
config/config.yaml < config/$RUN_MODE.yaml < config/local.yaml < the
--config-path file < QDRANT__* < SHOAL__* environment variables, type errors
naming the key, unknown keys accepted, and service.api_key enforced."""
import os
import re
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, free_ports, run_shoal, test  # noqa: E402


def yaml_service(**keys):
    lines = ["service:"] + [f"  {k}: {v}" for k, v in keys.items()]
    return "\n".join(lines) + "\n"


def storage_env(node):
    """The storage path for a node whose ports come from files."""
    return {"QDRANT__STORAGE__STORAGE_PATH": node.storage}


def listening(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


@test
def test_help_and_version_exit_zero():
    result = run_shoal(["--help"])
    assert result.returncode == 0, result
    assert "Usage" in result.stdout and "--config-path" in result.stdout, result.stdout
    result = run_shoal(["--version"])
    assert result.returncode == 0, result
    assert re.fullmatch(r"shoal \d+\.\d+\.\d+ \(Qdrant API 1\.19\.0\)\n", result.stdout), \
        result.stdout


@test
def test_unknown_flag_exits_2_with_a_message():
    result = run_shoal(["--no-such-flag"])
    assert result.returncode == 2, result
    assert "--no-such-flag" in result.stderr and "--help" in result.stderr, result.stderr
    result = run_shoal(["--config-path"])
    assert result.returncode == 2, result
    assert "config-path" in result.stderr, result.stderr


@test
def test_config_path_file_sets_the_http_port():
    node = Node(port_env=False, start=False)
    with open(os.path.join(node.dir, "custom.yaml"), "w") as f:
        f.write(yaml_service(http_port=node.http_port, grpc_port=node.grpc_port)
                + f"cluster:\n  p2p:\n    port: {node.p2p_port}\n")
    node.args = ["--config-path", "custom.yaml"]
    node.env.update(storage_env(node))
    with node:
        node.start()
        status, body = node.request("GET", "/collections")
        assert status == 200, (status, body)


@test
def test_missing_config_path_file_is_an_error():
    result = run_shoal(["--config-path", "no-such-file.yaml"])
    assert result.returncode == 2, result
    assert "no-such-file.yaml" in result.stderr, result.stderr


@test
def test_config_dir_layers_local_over_config():
    (unused_port,) = free_ports(1)
    node = Node(port_env=False, start=False, api_key="from-config-yaml")
    node.env.update(storage_env(node))
    os.makedirs(os.path.join(node.dir, "config"))
    with open(os.path.join(node.dir, "config", "config.yaml"), "w") as f:
        f.write(yaml_service(http_port=unused_port, api_key="from-config-yaml"))
    with open(os.path.join(node.dir, "config", "local.yaml"), "w") as f:
        f.write(yaml_service(http_port=node.http_port))
    with node:
        node.start()
        # local.yaml's port won; config.yaml's api key still applies.
        assert not listening(unused_port)
        status, _ = node.request("GET", "/collections", api_key=None)
        assert status == 401, status
        status, _ = node.request("GET", "/collections")
        assert status == 200, status


@test
def test_run_mode_file_is_read_between_config_and_local():
    node = Node(port_env=False, start=False, env={"RUN_MODE": "staging"})
    node.env.update(storage_env(node))
    os.makedirs(os.path.join(node.dir, "config"))
    (unused_port,) = free_ports(1)
    with open(os.path.join(node.dir, "config", "config.yaml"), "w") as f:
        f.write(yaml_service(http_port=unused_port))
    with open(os.path.join(node.dir, "config", "staging.yaml"), "w") as f:
        f.write(yaml_service(http_port=node.http_port))
    with node:
        node.start()
        assert not listening(unused_port)


@test
def test_environment_overrides_files_and_shoal_prefix_wins():
    file_port, qdrant_port = free_ports(2)
    node = Node(port_env=False, start=False)
    node.env.update(storage_env(node))
    os.makedirs(os.path.join(node.dir, "config"))
    with open(os.path.join(node.dir, "config", "config.yaml"), "w") as f:
        f.write(yaml_service(http_port=file_port))
    node.env["QDRANT__SERVICE__HTTP_PORT"] = str(node.http_port)
    with node:
        node.start()
        assert not listening(file_port)
    node = Node(port_env=False, start=False)
    node.env.update(storage_env(node))
    node.env["QDRANT__SERVICE__HTTP_PORT"] = str(qdrant_port)
    node.env["SHOAL__SERVICE__HTTP_PORT"] = str(node.http_port)
    with node:
        node.start()
        assert not listening(qdrant_port)


@test
def test_malformed_value_exits_2_naming_the_key():
    workdir = tempfile.mkdtemp(prefix="shoal-run-")
    try:
        os.makedirs(os.path.join(workdir, "config"))
        with open(os.path.join(workdir, "config", "config.yaml"), "w") as f:
            f.write(yaml_service(http_port='"abc"'))
        result = run_shoal([], cwd=workdir)
        assert result.returncode == 2, result
        assert "http_port" in result.stderr, result.stderr
        assert not os.path.exists(os.path.join(workdir, "storage")), \
            "a bad config is refused before anything is created"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result = run_shoal([], env={"QDRANT__SERVICE__HTTP_PORT": "not-a-port"})
    assert result.returncode == 2, result
    assert "http_port" in result.stderr, result.stderr


@test
def test_unknown_keys_are_accepted():
    node = Node(start=False, files={
        "config/config.yaml": "a_future_section:\n  some_key: 1\n"
                              + yaml_service(some_future_option=True)
                              + "storage:\n  performance:\n    max_search_threads: 0\n"})
    node.env["QDRANT__NOT_A_SECTION__NOR_A_KEY"] = "x"
    with node:
        node.start()
        status, body = node.request("GET", "/collections")
        assert status == 200, (status, body)


@test
def test_api_key_is_required_when_set():
    with Node(env={"QDRANT__SERVICE__API_KEY": "s3cret"}, api_key="s3cret") as node:
        status, body = node.request("GET", "/collections", api_key=None)
        assert status == 401, (status, body)
        status, body = node.request("GET", "/collections", api_key="wrong")
        assert status in (401, 403), (status, body)
        status, body = node.request("GET", "/collections")
        assert status == 200, (status, body)
        status, body = node.request("GET", "/collections", api_key=None,
                                    headers={"Authorization": "Bearer s3cret"})
        assert status == 200, (status, body)


if __name__ == "__main__":
    harness.main()
