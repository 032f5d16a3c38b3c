#!/usr/bin/env python3
"""test_node: what a Qdrant user sees of one node before any point is
written: the root, health and readiness probes, telemetry, Prometheus
metrics, the cluster status of a single node, and the collection and alias
API (create with every distance and with named + sparse vectors, list,
exists, conflict on re-create, update, delete, 404 shape, aliases used for
point operations). Every JSON answer must carry Qdrant's envelope:
{"result": ..., "status": "ok", "time": seconds}, or {"status": {"error":
...}, "time": ...} with the matching HTTP status."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Node, run_shoal, test, wait_for  # noqa: E402

DISTANCES = ("Cosine", "Euclid", "Dot", "Manhattan")
_node = None


def node():
    """One node shared by the suite's tests (they use distinct names)."""
    global _node
    if _node is None or not _node.running():
        _node = Node()
    return _node


def envelope_ok(status, body):
    """The result of a 200 answer in Qdrant's envelope."""
    assert status == 200, (status, body)
    assert isinstance(body, dict), body
    assert body.get("status") == "ok", body
    assert isinstance(body.get("time"), (int, float)) and not isinstance(body["time"], bool), body
    assert body["time"] >= 0, body
    assert "result" in body, body
    return body["result"]


def envelope_error(status, body, want_status):
    """The error message of a failed answer in Qdrant's envelope."""
    assert status == want_status, (status, body)
    assert isinstance(body, dict), body
    assert isinstance(body.get("status"), dict), body
    assert isinstance(body["status"].get("error"), str) and body["status"]["error"], body
    assert isinstance(body.get("time"), (int, float)), body
    assert "result" not in body or body["result"] is None, body
    return body["status"]["error"]


def ok(n, method, path, body=None):
    return envelope_ok(*n.request(method, path, body))


def create(n, name, config):
    assert ok(n, "PUT", f"/collections/{name}", config) is True


def collection_names(n):
    result = ok(n, "GET", "/collections")
    assert set(result) == {"collections"}, result
    return sorted(c["name"] for c in result["collections"])


def parse_metrics(text):
    """[(name, {label: value}, float value)] of a Prometheus text page; fails
    on any line that is not a comment, blank, or a well-formed sample."""
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ([^ ]+)( [0-9]+)?$')
    label = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            if line.startswith("# TYPE"):
                assert len(line.split()) == 4, line
            continue
        m = sample.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = {}
        rest = m.group(3) or ""
        while rest:
            lm = label.match(rest)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = lm.group(2)
            rest = rest[lm.end():]
        samples.append((m.group(1), labels, float(m.group(4))))
    return samples


def metric(samples, name, **labels):
    """The value of the one sample of name with these labels (0 if none)."""
    found = [v for n, l, v in samples if n == name
             and all(l.get(k) == v2 for k, v2 in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def metrics(n):
    status, text = n.request("GET", "/metrics")
    assert status == 200 and isinstance(text, str), (status, text)
    return parse_metrics(text)


# --- service endpoints -----------------------------------------------------

@test
def test_root_reports_qdrant_api_version_and_shoal_version():
    n = node()
    status, body = n.request("GET", "/")
    assert status == 200, (status, body)
    assert "vector search engine" in body["title"], body
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["version"]), body
    assert body["version"].startswith("1."), body
    assert re.fullmatch(r"\d+\.\d+\.\d+", body["shoal_version"]), body
    version = run_shoal(["--version"]).stdout
    assert version == f"shoal {body['shoal_version']} (Qdrant API {body['version']})\n", \
        (version, body)


@test
def test_health_probes_answer_200_with_text():
    n = node()
    for path, text in (("/healthz", "healthz check passed"),
                       ("/livez", "healthz check passed"),
                       ("/readyz", "all shards are ready")):
        status, body = n.request("GET", path)
        assert status == 200, (path, status, body)
        assert body == text, (path, body)


@test
def test_cluster_is_disabled_on_a_single_node():
    n = node()
    assert ok(n, "GET", "/cluster") == {"status": "disabled"}


@test
def test_telemetry_has_app_and_collections():
    n = node()
    create(n, "tele_a", {"vectors": {"size": 3, "distance": "Dot"}})
    create(n, "tele_b", {"vectors": {"size": 5, "distance": "Cosine"}})
    result = ok(n, "GET", "/telemetry")
    assert isinstance(result["id"], str) and result["id"], result
    assert result["app"]["name"], result["app"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", result["app"]["version"]), result["app"]
    colls = result["collections"]
    assert colls["number_of_collections"] == len(collection_names(n)), colls
    listed = [c["id"] for c in colls.get("collections", [])]
    assert "tele_a" in listed and "tele_b" in listed, colls
    for name in ("tele_a", "tele_b"):
        assert ok(n, "DELETE", f"/collections/{name}") is True


@test
def test_metrics_are_prometheus_text_and_count_responses():
    n = node()
    create(n, "metrics_a", {"vectors": {"size": 2, "distance": "Dot"}})
    listed = collection_names(n)
    before = metrics(n)
    names = {s[0] for s in before}
    app_info = [s for s in before if s[0] == "app_info"]
    assert len(app_info) == 1 and app_info[0][2] == 1.0, app_info
    assert re.fullmatch(r"\d+\.\d+\.\d+", app_info[0][1].get("version", "")), app_info
    assert metric(before, "collections_total") == len(listed)
    assert "rest_responses_total" in names, sorted(names)
    labels = {"method": "GET", "endpoint": "/collections", "status": "200"}
    start = metric(before, "rest_responses_total", **labels)
    for _ in range(5):
        collection_names(n)
    after = metrics(n)
    #  Exactly the five list calls happened between the two scrapes.
    assert metric(after, "rest_responses_total", **labels) == start + 5, \
        (start, metric(after, "rest_responses_total", **labels))
    missing = {"method": "GET", "endpoint": "/collections/{collection_name}", "status": "404"}
    base_404 = metric(after, "rest_responses_total", **missing)
    status, _ = n.request("GET", "/collections/metrics_nope")
    assert status == 404
    assert metric(metrics(n), "rest_responses_total", **missing) == base_404 + 1
    assert ok(n, "DELETE", "/collections/metrics_a") is True
    assert metric(metrics(n), "collections_total") == len(collection_names(n))


# --- collections -----------------------------------------------------------

@test
def test_create_single_vector_collection_with_each_distance():
    n = node()
    for i, distance in enumerate(DISTANCES):
        name = f"dist_{distance.lower()}"
        create(n, name, {"vectors": {"size": 4 + i, "distance": distance}})
        info = ok(n, "GET", f"/collections/{name}")
        assert info["status"] == "green", info
        assert info["points_count"] == 0, info
        params = info["config"]["params"]
        assert params["vectors"]["size"] == 4 + i and params["vectors"]["distance"] == distance, \
            params
        assert params["shard_number"] == 1 and params["replication_factor"] == 1, params
        assert params["write_consistency_factor"] == 1, params
        for key in ("hnsw_config", "optimizer_config"):
            assert isinstance(info["config"][key], dict), info["config"]
    for distance in DISTANCES:
        assert f"dist_{distance.lower()}" in collection_names(n)
        assert ok(n, "DELETE", f"/collections/dist_{distance.lower()}") is True


@test
def test_create_named_and_sparse_vectors_collection():
    n = node()
    create(n, "named", {
        "vectors": {"img": {"size": 4, "distance": "Euclid"},
                    "txt": {"size": 3, "distance": "Manhattan"}},
        "sparse_vectors": {"kw": {}, "kw2": {"modifier": "none"}}})
    params = ok(n, "GET", "/collections/named")["config"]["params"]
    vectors = params["vectors"]
    assert sorted(vectors) == ["img", "txt"], vectors
    assert vectors["img"]["size"] == 4 and vectors["img"]["distance"] == "Euclid", vectors
    assert vectors["txt"]["size"] == 3 and vectors["txt"]["distance"] == "Manhattan", vectors
    assert sorted(params["sparse_vectors"]) == ["kw", "kw2"], params
    assert ok(n, "DELETE", "/collections/named") is True


@test
def test_shard_replication_and_write_consistency_are_stored():
    n = node()
    create(n, "sharded", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 3,
                          "replication_factor": 2, "write_consistency_factor": 2,
                          "on_disk_payload": True})
    params = ok(n, "GET", "/collections/sharded")["config"]["params"]
    assert params["shard_number"] == 3, params
    assert params["replication_factor"] == 2, params
    assert params["write_consistency_factor"] == 2, params
    assert params["on_disk_payload"] is True, params
    assert ok(n, "DELETE", "/collections/sharded") is True


@test
def test_list_exists_and_conflict_on_recreate():
    n = node()
    create(n, "listed", {"vectors": {"size": 2, "distance": "Cosine"}})
    assert "listed" in collection_names(n)
    assert ok(n, "GET", "/collections/listed/exists") == {"exists": True}
    assert ok(n, "GET", "/collections/not_there/exists") == {"exists": False}
    status, body = n.request("PUT", "/collections/listed",
                             {"vectors": {"size": 2, "distance": "Cosine"}})
    error = envelope_error(status, body, 409)
    assert "listed" in error and "already exists" in error, error
    assert collection_names(n).count("listed") == 1
    assert ok(n, "DELETE", "/collections/listed") is True


@test
def test_patch_optimizers_params_and_hnsw_visible_in_get():
    n = node()
    create(n, "patched", {"vectors": {"size": 2, "distance": "Dot"}})
    before = ok(n, "GET", "/collections/patched")["config"]
    assert ok(n, "PATCH", "/collections/patched", {
        "optimizers_config": {"indexing_threshold": 12345, "default_segment_number": 3},
        "params": {"write_consistency_factor": 1, "on_disk_payload": False},
        "hnsw_config": {"m": 32, "ef_construct": 123}}) is True
    after = ok(n, "GET", "/collections/patched")["config"]
    assert after["optimizer_config"]["indexing_threshold"] == 12345, after
    assert after["optimizer_config"]["default_segment_number"] == 3, after
    assert after["params"]["on_disk_payload"] is False, after
    assert after["hnsw_config"]["m"] == 32 and after["hnsw_config"]["ef_construct"] == 123, after
    #  What was not patched is unchanged.
    assert after["params"]["vectors"] == before["params"]["vectors"], (before, after)
    assert after["hnsw_config"]["full_scan_threshold"] == \
        before["hnsw_config"]["full_scan_threshold"], (before, after)
    status, body = n.request("PATCH", "/collections/patched_missing",
                             {"optimizers_config": {"indexing_threshold": 1}})
    envelope_error(status, body, 404)
    assert ok(n, "DELETE", "/collections/patched") is True


@test
def test_optimizer_config_alias_is_accepted_on_create_and_patch():
    #  Qdrant's CreateCollection and UpdateCollection take "optimizer_config"
    #  (the name GET answers with) as an alias of "optimizers_config".
    n = node()
    create(n, "aliased_field", {"vectors": {"size": 2, "distance": "Dot"},
                                "optimizer_config": {"indexing_threshold": 777}})
    config = ok(n, "GET", "/collections/aliased_field")["config"]
    assert config["optimizer_config"]["indexing_threshold"] == 777, config
    assert ok(n, "PATCH", "/collections/aliased_field",
              {"optimizer_config": {"indexing_threshold": 888}}) is True
    config = ok(n, "GET", "/collections/aliased_field")["config"]
    assert config["optimizer_config"]["indexing_threshold"] == 888, config
    assert ok(n, "DELETE", "/collections/aliased_field") is True


@test
def test_delete_returns_true_then_false_and_get_missing_is_404():
    n = node()
    create(n, "doomed", {"vectors": {"size": 2, "distance": "Dot"}})
    assert ok(n, "DELETE", "/collections/doomed") is True
    assert "doomed" not in collection_names(n)
    #  Qdrant answers a delete of a collection that does not exist with
    #  200 and result false.
    assert ok(n, "DELETE", "/collections/doomed") is False
    status, body = n.request("GET", "/collections/doomed")
    error = envelope_error(status, body, 404)
    assert error == "Not found: Collection `doomed` doesn't exist!", error
    status, body = n.request("POST", "/collections/doomed/points/count", {})
    error = envelope_error(status, body, 404)
    assert "doomed" in error, error
    #  The name can be used again.
    create(n, "doomed", {"vectors": {"size": 3, "distance": "Euclid"}})
    params = ok(n, "GET", "/collections/doomed")["config"]["params"]
    assert params["vectors"]["size"] == 3 and params["vectors"]["distance"] == "Euclid"
    assert ok(n, "DELETE", "/collections/doomed") is True


# --- aliases ---------------------------------------------------------------

def aliases(n, path="/aliases"):
    result = ok(n, "GET", path)
    return sorted((a["alias_name"], a["collection_name"]) for a in result["aliases"])


def alias_actions(n, *actions):
    assert ok(n, "POST", "/collections/aliases", {"actions": list(actions)}) is True


@test
def test_aliases_create_rename_delete_and_list():
    n = node()
    create(n, "aliased", {"vectors": {"size": 2, "distance": "Dot"}})
    create(n, "other", {"vectors": {"size": 2, "distance": "Dot"}})
    alias_actions(n, {"create_alias": {"collection_name": "aliased", "alias_name": "al1"}},
                  {"create_alias": {"collection_name": "other", "alias_name": "al2"}})
    assert aliases(n) == [("al1", "aliased"), ("al2", "other")]
    assert aliases(n, "/collections/aliased/aliases") == [("al1", "aliased")]
    alias_actions(n, {"rename_alias": {"old_alias_name": "al1", "new_alias_name": "al3"}})
    assert aliases(n) == [("al2", "other"), ("al3", "aliased")]
    #  Re-pointing an alias: create_alias on an existing alias name moves it.
    alias_actions(n, {"create_alias": {"collection_name": "aliased", "alias_name": "al2"}})
    assert aliases(n) == [("al2", "aliased"), ("al3", "aliased")]
    alias_actions(n, {"delete_alias": {"alias_name": "al2"}},
                  {"delete_alias": {"alias_name": "al3"}})
    assert aliases(n) == []
    assert aliases(n, "/collections/aliased/aliases") == []
    status, body = n.request("POST", "/collections/aliases", {"actions": [
        {"create_alias": {"collection_name": "no_such", "alias_name": "al4"}}]})
    envelope_error(status, body, 404)
    assert aliases(n) == []
    for name in ("aliased", "other"):
        assert ok(n, "DELETE", f"/collections/{name}") is True


@test
def test_alias_serves_point_operations():
    n = node()
    create(n, "real", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2})
    alias_actions(n, {"create_alias": {"collection_name": "real", "alias_name": "nick"}})
    points = [{"id": i, "vector": [float(i), 1.0], "payload": {"i": i}} for i in range(1, 11)]
    result = ok(n, "PUT", "/collections/nick/points?wait=true", {"points": points})
    assert result["status"] == "completed", result
    assert ok(n, "POST", "/collections/real/points/count", {"exact": True}) == {"count": 10}
    assert ok(n, "POST", "/collections/nick/points/count", {"exact": True}) == {"count": 10}
    hits = ok(n, "POST", "/collections/nick/points/search",
              {"vector": [1.0, 0.0], "limit": 3, "with_payload": True})
    assert [h["id"] for h in hits] == [10, 9, 8], hits
    assert [h["payload"] for h in hits] == [{"i": 10}, {"i": 9}, {"i": 8}], hits
    assert ok(n, "GET", "/collections/nick")["config"]["params"]["shard_number"] == 2
    record = ok(n, "GET", "/collections/nick/points/4")
    assert record["id"] == 4 and record["payload"] == {"i": 4}, record
    #  Deleting the collection removes its aliases.
    assert ok(n, "DELETE", "/collections/real") is True
    assert aliases(n) == []
    status, body = n.request("POST", "/collections/nick/points/count", {})
    envelope_error(status, body, 404)


@test
def test_payload_indexes_are_created_shown_and_deleted():
    n = node()
    create(n, "idx", {"vectors": {"size": 2, "distance": "Dot"}, "shard_number": 2})
    ok(n, "PUT", "/collections/idx/points?wait=true", {"points": [
        {"id": i, "vector": [1.0, float(i)],
         "payload": {"city": "Oslo" if i % 2 else "Rome", "n": i} if i < 8 else {}}
        for i in range(10)]})
    result = ok(n, "PUT", "/collections/idx/index?wait=true",
                {"field_name": "city", "field_schema": "keyword"})
    assert result["status"] == "completed" and isinstance(result["operation_id"], int), result
    ok(n, "PUT", "/collections/idx/index", {"field_name": "n",
                                           "field_schema": {"type": "integer", "range": True}})
    schema = ok(n, "GET", "/collections/idx")["payload_schema"]
    assert schema["city"] == {"data_type": "keyword", "points": 8}, schema
    assert schema["n"]["data_type"] == "integer" and schema["n"]["points"] == 8, schema
    assert schema["n"]["params"]["range"] is True, schema
    #  Filters give the same answers with the index.
    count = ok(n, "POST", "/collections/idx/points/count",
               {"filter": {"must": [{"key": "city", "match": {"value": "Oslo"}}]}})
    assert count == {"count": 4}, count
    ok(n, "DELETE", "/collections/idx/index/city?wait=true")
    schema = ok(n, "GET", "/collections/idx")["payload_schema"]
    assert list(schema) == ["n"], schema
    #  Bad input is refused with 400, an unknown collection with 404.
    for body in ({"field_name": "city", "field_schema": "nope"},
                 {"field_name": "city"}, {"field_schema": "keyword"},
                 {"field_name": "a..b", "field_schema": "keyword"},
                 {"field_name": "g", "field_schema": "geo"}):
        envelope_error(*n.request("PUT", "/collections/idx/index", body), 400)
    envelope_error(*n.request("PUT", "/collections/missing/index",
                              {"field_name": "a", "field_schema": "keyword"}), 404)
    ok(n, "DELETE", "/collections/idx")


if __name__ == "__main__":
    harness.main(shared=node)
