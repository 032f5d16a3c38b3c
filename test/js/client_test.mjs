// Runs Qdrant's official JavaScript client (@qdrant/js-client-rest) against a
// running shoal node, unchanged: every call a Qdrant user makes through the
// client must work. Usage: node client_test.mjs URL [API_KEY]
// Prints one line per case and ends with "N passed, N failed".
import assert from 'node:assert/strict';
import { QdrantClient } from '@qdrant/js-client-rest';

const url = process.argv[2] || process.env.QDRANT_URL || 'http://127.0.0.1:6333';
const apiKey = process.argv[3] || process.env.QDRANT_API_KEY || undefined;

// The version check prints a warning instead of failing; catch it, since a
// failed check is exactly what this suite must notice.
const warnings = [];
const realWarn = console.warn;
console.warn = (...args) => { warnings.push(args.join(' ')); };

const client = new QdrantClient({ url, apiKey, checkCompatibility: true });
const cases = [];
const test = (name, fn) => cases.push({ name, fn });

// Deterministic pseudo-random vectors, so failures can be replayed.
let seed = 12345;
const rnd = () => { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 - 0.5; };
const vec = (dim) => Array.from({ length: dim }, rnd);
const dot = (a, b) => a.reduce((s, x, i) => s + x * b[i], 0);
const norm = (a) => { const n = Math.sqrt(dot(a, a)); return a.map((x) => x / n); };
const l2 = (a, b) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]) ** 2, 0));

const C = 'js_basic';
const N = 'js_named';
const points = Array.from({ length: 200 }, (_, i) => ({
    id: i + 1,
    vector: vec(8),
    payload: { group: i % 5 === 0 ? 'a' : 'b', n: i, tags: [`t${i % 3}`], nested: { x: i % 7 } },
}));

test('version check passes and root answers', async () => {
    const info = await client.versionInfo();
    assert.ok(info.version, 'root reports a version');
    // Give the constructor's asynchronous check time to finish.
    for (let i = 0; i < 50 && warnings.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(warnings.filter((w) => /incompatible|Failed to obtain/.test(w)), []);
});

test('health endpoints answer', async () => {
    const api = client.api();
    for (const name of ['healthz', 'livez', 'readyz']) {
        const res = await api[name]({});
        assert.equal(res.status, 200, name);
    }
});

test('create, exists, list and get a collection', async () => {
    await client.deleteCollection(C).catch(() => {});
    assert.equal(await client.createCollection(C, { vectors: { size: 8, distance: 'Cosine' }, shard_number: 2 }), true);
    assert.deepEqual(await client.collectionExists(C), { exists: true });
    assert.deepEqual(await client.collectionExists('js_nope'), { exists: false });
    const list = await client.getCollections();
    assert.ok(list.collections.some((c) => c.name === C));
    const info = await client.getCollection(C);
    assert.equal(info.config.params.vectors.size, 8);
    assert.equal(info.config.params.vectors.distance, 'Cosine');
    assert.equal(info.config.params.shard_number, 2);
    assert.equal(info.points_count, 0);
    assert.equal(info.status, 'green');
});

test('creating an existing collection is a conflict', async () => {
    await assert.rejects(client.createCollection(C, { vectors: { size: 8, distance: 'Cosine' } }),
        (err) => err.status === 409);
});

test('update a collection', async () => {
    assert.equal(await client.updateCollection(C, { optimizers_config: { indexing_threshold: 20000 } }), true);
    const info = await client.getCollection(C);
    assert.equal(info.config.optimizer_config.indexing_threshold, 20000);
});

test('upsert points and count them', async () => {
    const res = await client.upsert(C, { wait: true, points });
    assert.equal(res.status, 'completed');
    assert.equal((await client.count(C, { exact: true })).count, 200);
    assert.equal((await client.getCollection(C)).points_count, 200);
});

test('upsert in batch form with UUID ids', async () => {
    const ids = ['5c56c793-69f3-4fbf-87e6-c4bf54c28c26', 'a7e2f0b5-51c6-4b4e-9b6c-0a1c2d3e4f50'];
    const res = await client.upsert(C, {
        wait: true,
        batch: { ids, vectors: [vec(8), vec(8)], payloads: [{ group: 'u' }, { group: 'u' }] },
    });
    assert.equal(res.status, 'completed');
    const got = await client.retrieve(C, { ids, with_payload: true });
    assert.deepEqual(got.map((p) => p.id).sort(), [...ids].sort());
    assert.equal(got[0].payload.group, 'u');
});

test('retrieve with payload and vector', async () => {
    const got = await client.retrieve(C, { ids: [1, 2, 999999], with_payload: true, with_vector: true });
    assert.equal(got.length, 2);
    const p1 = got.find((p) => p.id === 1);
    assert.deepEqual(p1.payload, points[0].payload);
    const expected = norm(points[0].vector);
    p1.vector.forEach((x, i) => assert.ok(Math.abs(x - expected[i]) < 1e-5));
});

test('query nearest equals brute force', async () => {
    const q = vec(8);
    const res = await client.query(C, { query: q, limit: 10, with_payload: true });
    const brute = points.map((p) => ({ id: p.id, score: dot(norm(p.vector), norm(q)) }))
        .sort((a, b) => b.score - a.score || a.id - b.id);
    // The two UUID points take part too: compare among integer ids only when
    // they are not in the top 10.
    const top = res.points.filter((p) => typeof p.id === 'number').map((p) => p.id);
    const want = brute.slice(0, top.length).map((p) => p.id);
    assert.deepEqual(top, want);
    for (let i = 1; i < res.points.length; i++) assert.ok(res.points[i - 1].score >= res.points[i].score);
});

test('query with a filter and score threshold', async () => {
    const q = vec(8);
    const res = await client.query(C, {
        query: { nearest: q }, limit: 100, with_payload: true,
        filter: { must: [{ key: 'group', match: { value: 'a' } }], must_not: [{ key: 'n', range: { gte: 100 } }] },
        score_threshold: -0.5,
    });
    assert.ok(res.points.length > 0);
    for (const p of res.points) {
        assert.equal(p.payload.group, 'a');
        assert.ok(p.payload.n < 100);
        assert.ok(p.score >= -0.5);
    }
    const want = points.filter((p) => p.payload.group === 'a' && p.payload.n < 100
        && dot(norm(p.vector), norm(q)) >= -0.5).length;
    assert.equal(res.points.length, want);
});

test('query batch', async () => {
    const res = await client.queryBatch(C, { searches: [{ query: vec(8), limit: 3 }, { query: vec(8), limit: 5 }] });
    assert.equal(res.length, 2);
    assert.equal(res[0].points.length, 3);
    assert.equal(res[1].points.length, 5);
});

test('scroll pages through every point once', async () => {
    const seen = [];
    let offset;
    do {
        const page = await client.scroll(C, { limit: 37, offset, with_payload: false,
            filter: { must: [{ key: 'n', range: { gte: 0 } }] } });
        seen.push(...page.points.map((p) => p.id));
        offset = page.next_page_offset;
    } while (offset !== null && offset !== undefined);
    assert.equal(seen.length, 200);
    assert.deepEqual(seen, points.map((p) => p.id));
});

test('count with a filter', async () => {
    const res = await client.count(C, { filter: { must: [{ key: 'tags', match: { any: ['t0'] } }] }, exact: true });
    assert.equal(res.count, points.filter((p) => p.payload.tags[0] === 't0').length);
    const nested = await client.count(C, { filter: { must: [{ key: 'nested.x', match: { value: 3 } }] } });
    assert.equal(nested.count, points.filter((p) => p.payload.nested.x === 3).length);
});

test('set, overwrite, delete and clear payload', async () => {
    await client.setPayload(C, { wait: true, points: [1], payload: { extra: 'yes' } });
    let [p] = await client.retrieve(C, { ids: [1], with_payload: true });
    assert.equal(p.payload.extra, 'yes');
    assert.equal(p.payload.group, 'a');
    await client.deletePayload(C, { wait: true, points: [1], keys: ['extra'] });
    [p] = await client.retrieve(C, { ids: [1], with_payload: true });
    assert.equal(p.payload.extra, undefined);
    await client.overwritePayload(C, { wait: true, points: [1], payload: { only: 1 } });
    [p] = await client.retrieve(C, { ids: [1], with_payload: true });
    assert.deepEqual(p.payload, { only: 1 });
    await client.clearPayload(C, { wait: true, points: [1] });
    [p] = await client.retrieve(C, { ids: [1], with_payload: true });
    assert.deepEqual(p.payload ?? {}, {});
    await client.setPayload(C, { wait: true, filter: { must: [{ key: 'group', match: { value: 'b' } }] }, payload: { flag: true } });
    const flagged = await client.count(C, { filter: { must: [{ key: 'flag', match: { value: true } }] } });
    assert.equal(flagged.count, points.filter((x) => x.payload.group === 'b').length);
});

test('update vectors', async () => {
    const v = vec(8);
    await client.updateVectors(C, { wait: true, points: [{ id: 2, vector: v }] });
    const [p] = await client.retrieve(C, { ids: [2], with_vector: true });
    norm(v).forEach((x, i) => assert.ok(Math.abs(x - p.vector[i]) < 1e-5));
});

test('delete points by id and by filter', async () => {
    await client.delete(C, { wait: true, points: [3, 4] });
    assert.deepEqual(await client.retrieve(C, { ids: [3, 4] }), []);
    await client.delete(C, { wait: true, filter: { must: [{ key: 'group', match: { value: 'u' } }] } });
    assert.equal((await client.count(C, {})).count, 198 - 0);
});

test('batch update', async () => {
    const res = await client.batchUpdate(C, {
        wait: true,
        operations: [
            { upsert: { points: [{ id: 5000, vector: vec(8), payload: { b: 1 } }] } },
            { set_payload: { payload: { b: 2 }, points: [5000] } },
            { delete: { points: [5] } },
        ],
    });
    assert.equal(res.length, 3);
    const [p] = await client.retrieve(C, { ids: [5000], with_payload: true });
    assert.equal(p.payload.b, 2);
    assert.deepEqual(await client.retrieve(C, { ids: [5] }), []);
});

test('payload indexes', async () => {
    const res = await client.createPayloadIndex(C, { field_name: 'group', field_schema: 'keyword', wait: true });
    assert.equal(res.status, 'completed');
    await client.createPayloadIndex(C, { field_name: 'n', field_schema: { type: 'integer', range: true }, wait: true });
    const info = await client.getCollection(C);
    assert.equal(info.payload_schema.group.data_type, 'keyword');
    assert.equal(info.payload_schema.n.data_type, 'integer');
    assert.ok(info.payload_schema.n.points > 0);
    const q = await client.query(C, { query: vec(8), limit: 5, params: { hnsw_ef: 64 },
        filter: { must: [{ key: 'group', match: { value: 'b' } }] }, with_payload: true });
    assert.equal(q.points.length, 5);
    for (const p of q.points) assert.equal(p.payload.group, 'b');
    await client.deletePayloadIndex(C, 'n', { wait: true });
    assert.equal((await client.getCollection(C)).payload_schema.n, undefined);
});

test('aliases', async () => {
    await client.updateCollectionAliases({ actions: [{ create_alias: { collection_name: C, alias_name: 'js_alias' } }] });
    const aliases = await client.getAliases();
    assert.ok(aliases.aliases.some((a) => a.alias_name === 'js_alias' && a.collection_name === C));
    assert.equal((await client.count('js_alias', {})).count, (await client.count(C, {})).count);
    const own = await client.getCollectionAliases(C);
    assert.equal(own.aliases.length, 1);
    await client.updateCollectionAliases({ actions: [{ delete_alias: { alias_name: 'js_alias' } }] });
    assert.ok(!(await client.getAliases()).aliases.some((a) => a.alias_name === 'js_alias'));
});

test('named and sparse vectors', async () => {
    await client.deleteCollection(N).catch(() => {});
    await client.createCollection(N, {
        vectors: { img: { size: 4, distance: 'Euclid' }, txt: { size: 3, distance: 'Dot' } },
        sparse_vectors: { kw: {} },
    });
    const pts = [
        { id: 1, vector: { img: [0, 0, 0, 0], txt: [1, 0, 0], kw: { indices: [1, 7], values: [1.0, 2.0] } } },
        { id: 2, vector: { img: [1, 1, 1, 1], txt: [0, 1, 0], kw: { indices: [7], values: [0.5] } } },
        { id: 3, vector: { img: [3, 3, 3, 3] } },
    ];
    await client.upsert(N, { wait: true, points: pts });
    const near = await client.query(N, { query: [0.9, 0.9, 0.9, 0.9], using: 'img', limit: 3 });
    assert.deepEqual(near.points.map((p) => p.id), [2, 1, 3]);
    assert.ok(Math.abs(near.points[0].score - l2([0.9, 0.9, 0.9, 0.9], [1, 1, 1, 1])) < 1e-5);
    const sparse = await client.query(N, { query: { indices: [7], values: [1.0] }, using: 'kw', limit: 10 });
    assert.deepEqual(sparse.points.map((p) => p.id), [1, 2]);
    assert.ok(Math.abs(sparse.points[0].score - 2.0) < 1e-6);
    const [p] = await client.retrieve(N, { ids: [1], with_vector: true });
    assert.deepEqual(p.vector.txt, [1, 0, 0]);
    assert.deepEqual(p.vector.kw.indices, [1, 7]);
    await client.deleteVectors(N, { wait: true, points: [1], vector: ['txt'] });
    const [q] = await client.retrieve(N, { ids: [1], with_vector: true });
    assert.equal(q.vector.txt, undefined);
});

test('wrong vector size is rejected', async () => {
    await assert.rejects(client.upsert(C, { wait: true, points: [{ id: 1, vector: [1, 2, 3] }] }),
        (err) => err.status === 400 || err.status === 422);
});

test('cluster calls on a node without cluster mode', async () => {
    const api = client.api();
    const res = await api.clusterStatus({});
    assert.deepEqual(res.data.result, { status: 'disabled' });
    await assert.rejects(api.recoverCurrentPeer({}), (err) => err.status === 400);
    await assert.rejects(api.removePeer({ peer_id: 1 }), (err) => err.status === 400);
});

test('unknown collection is 404', async () => {
    await assert.rejects(client.getCollection('js_missing'), (err) => err.status === 404);
    await assert.rejects(client.upsert('js_missing', { points: [{ id: 1, vector: vec(8) }] }),
        (err) => err.status === 404);
});

test('delete collections', async () => {
    assert.equal(await client.deleteCollection(C), true);
    assert.equal(await client.deleteCollection(N), true);
    assert.deepEqual(await client.collectionExists(C), { exists: false });
});

let passed = 0;
let failed = 0;
for (const { name, fn } of cases) {
    try {
        await fn();
        passed++;
        realWarn.call(console, `ok   ${name}`);
    } catch (err) {
        failed++;
        realWarn.call(console, `FAIL ${name}: ${err && err.stack ? err.stack : err}`);
        if (err && err.data) realWarn.call(console, `     response: ${JSON.stringify(err.data)}`);
    }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
