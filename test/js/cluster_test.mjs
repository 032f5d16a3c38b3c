// Runs the cluster calls of Qdrant's official JavaScript client
// (@qdrant/js-client-rest) against a running shoal cluster, unchanged:
// clusterStatus on every peer, collections created through one peer seen by
// the others, recoverCurrentPeer, a collection of 6 shards over the peers
// (upserts through one peer, query/batch query/count/scroll through every peer
// against brute force, collectionClusterInfo, updateCollectionCluster
// move_shard and its refusals) and removePeer.
// Usage: node cluster_test.mjs URL,URL,URL [API_KEY]   (every peer's REST URL)
// Prints one line per case and ends with "N passed, N failed".
import assert from 'node:assert/strict';
import { QdrantClient } from '@qdrant/js-client-rest';

const urls = (process.argv[2] || '').split(',').filter(Boolean);
const apiKey = process.argv[3] || undefined;
if (urls.length < 3) {
    console.log('usage: node cluster_test.mjs URL,URL,URL [API_KEY]');
    console.log('0 passed, 1 failed');
    process.exit(1);
}

const warnings = [];
const realWarn = console.warn;
console.warn = (...args) => { warnings.push(args.join(' ')); };

const clients = urls.map((url) => new QdrantClient({ url, apiKey, checkCompatibility: true }));
const cases = [];
const test = (name, fn) => cases.push({ name, fn });

// Polls fn until it returns something truthy; fails after `ms`.
const waitFor = async (fn, what, ms = 60000) => {
    const deadline = Date.now() + ms;
    let last;
    for (;;) {
        try {
            const value = await fn();
            if (value) return value;
        } catch (err) {
            last = err;
        }
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${last}` : ''}`);
        await new Promise((r) => setTimeout(r, 100));
    }
};

const status = async (client) => (await client.api().clusterStatus({})).data.result;

let leaderIndex = -1;
let ids = [];

test('clusterStatus agrees on every peer', async () => {
    const all = await waitFor(async () => {
        const seen = await Promise.all(clients.map(status));
        const first = seen[0];
        const same = seen.every((s) => s.status === 'enabled'
            && JSON.stringify(s.peers) === JSON.stringify(first.peers)
            && s.raft_info.leader === first.raft_info.leader
            && s.raft_info.commit === first.raft_info.commit
            && s.raft_info.term === first.raft_info.term);
        return same && first.raft_info.leader !== null && seen;
    }, 'every peer to agree');
    ids = all.map((s) => s.peer_id);
    assert.equal(new Set(ids).size, clients.length, 'distinct peer ids');
    assert.deepEqual(Object.keys(all[0].peers).map(Number).sort(), [...ids].sort());
    for (const s of all) {
        assert.ok(Number.isSafeInteger(s.peer_id) && s.peer_id >= 1, 'peer id is exact in JSON');
        for (const info of Object.values(s.peers)) assert.match(info.uri, /^https?:\/\//);
        assert.equal(typeof s.raft_info.is_voter, 'boolean');
        assert.equal(s.consensus_thread_status.consensus_thread_status, 'working');
        assert.ok(!Number.isNaN(Date.parse(s.consensus_thread_status.last_update)));
        assert.equal(typeof s.message_send_failures, 'object');
    }
    leaderIndex = all.findIndex((s) => s.raft_info.role === 'Leader');
    assert.ok(leaderIndex >= 0, 'one peer says it leads');
    assert.equal(all.filter((s) => s.raft_info.role === 'Leader').length, 1);
    assert.equal(all[leaderIndex].peer_id, all[0].raft_info.leader);
    assert.deepEqual(warnings.filter((w) => /incompatible|Failed to obtain/.test(w)), []);
});

const followers = () => clients.map((c, i) => i).filter((i) => i !== leaderIndex);

test('a collection created through a follower is seen by every peer', async () => {
    const f = clients[followers()[0]];
    await f.deleteCollection('js_cluster').catch(() => {});
    assert.equal(await f.createCollection('js_cluster', { vectors: { size: 4, distance: 'Dot' } }), true);
    for (const client of clients) {
        await waitFor(async () => (await client.collectionExists('js_cluster')).exists, 'the collection everywhere');
        const info = await client.getCollection('js_cluster');
        assert.equal(info.config.params.vectors.size, 4);
    }
    await assert.rejects(clients[leaderIndex].createCollection('js_cluster', { vectors: { size: 4, distance: 'Dot' } }),
        (err) => err.status === 409);
});

test('recoverCurrentPeer on a follower', async () => {
    const res = await clients[followers()[1]].api().recoverCurrentPeer({});
    assert.equal(res.status, 200);
    assert.equal(res.data.result, true);
});

test('removePeer refuses an unknown peer', async () => {
    const unknown = Math.max(...ids) + 1;
    await assert.rejects(clients[leaderIndex].api().removePeer({ peer_id: unknown }),
        (err) => err.status === 404);
});

// --- sharding: 6 shards over the 3 peers ----------------------------------
const S = 'js_sharded';
const DIM = 8;
const points = new Map();   // id -> vector (float32 values)
let seed = 20240605;
const rand = () => {        // a small LCG: the same points on every run
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648 * 2 - 1;
};
const vec = () => Array.from({ length: DIM }, () => Math.fround(rand()));
const dot = (a, b) => a.reduce((acc, x, i) => acc + x * b[i], 0);
const bruteForce = (q, k) => [...points].map(([id, v]) => ({ id, score: dot(v, q) }))
    .sort((x, y) => y.score - x.score).slice(0, k);
const sameHits = (hits, want, what) => {
    assert.equal(hits.length, want.length, `${what}: number of hits`);
    hits.forEach((h, i) => assert.ok(Math.abs(h.score - want[i].score) < 1e-4,
        `${what}: hit ${i} is ${h.id} (${h.score}), brute force says ${want[i].id} (${want[i].score})`));
    assert.equal(new Set(hits.map((h) => h.id)).size, hits.length, `${what}: duplicates`);
};
// {shard_id: {peer_id: state}} as one peer's collectionClusterInfo shows it.
const placementOf = (info) => {
    const out = {};
    for (const s of info.local_shards) (out[s.shard_id] ??= {})[info.peer_id] = s.state;
    for (const s of info.remote_shards) (out[s.shard_id] ??= {})[s.peer_id] = s.state;
    return out;
};
const scrollIds = async (client) => {
    const seen = [];
    let offset;
    do {
        const page = await client.scroll(S, { limit: 500, offset, with_payload: false, with_vector: false });
        seen.push(...page.points.map((p) => p.id));
        offset = page.next_page_offset ?? undefined;
    } while (offset !== undefined);
    return seen;
};
const checkEverywhere = async (what) => {
    const want = [...points.keys()].sort((a, b) => a - b);
    for (const [i, client] of clients.entries()) {
        assert.equal((await client.count(S, { exact: true })).count, points.size, `${what}: count via ${ids[i]}`);
        assert.deepEqual(await scrollIds(client), want, `${what}: scroll via ${ids[i]}`);
        const q = vec();
        const res = await client.query(S, { query: q, limit: 5, params: { exact: true } });
        sameHits(res.points, bruteForce(q, 5), `${what}: query via ${ids[i]}`);
        const r = vec();
        const batch = await client.queryBatch(S, { searches: [
            { query: q, limit: 7, params: { exact: true } },
            { query: r, limit: 3, offset: 2, params: { exact: true } },
        ] });
        sameHits(batch[0].points, bruteForce(q, 7), `${what}: batch query 0 via ${ids[i]}`);
        sameHits(batch[1].points, bruteForce(r, 5).slice(2), `${what}: batch query 1 via ${ids[i]}`);
    }
};

test('a collection created with shard_number 6 spreads 2 shards on each peer', async () => {
    const leader = clients[leaderIndex];
    await leader.deleteCollection(S).catch(() => {});
    assert.equal(await leader.createCollection(S, {
        vectors: { size: DIM, distance: 'Dot' }, shard_number: 6,
    }), true);
    const owners = new Map();
    for (const [i, client] of clients.entries()) {
        await waitFor(async () => (await client.collectionExists(S)).exists, 'the collection everywhere');
        const info = await client.collectionClusterInfo(S);
        assert.equal(info.peer_id, ids[i]);
        assert.equal(info.shard_count, 6);
        assert.deepEqual(info.shard_transfers, []);
        assert.equal(info.local_shards.length, 2, `peer ${ids[i]} holds 2 shards`);
        for (const s of info.local_shards) {
            assert.equal(s.state, 'Active');
            assert.equal(s.points_count, 0);
            assert.ok(!owners.has(s.shard_id), `shard ${s.shard_id} on two peers`);
            owners.set(s.shard_id, info.peer_id);
        }
        assert.equal(info.remote_shards.length, 4);
    }
    assert.deepEqual([...owners.keys()].sort(), [0, 1, 2, 3, 4, 5]);
});

test('points upserted through one peer are found through every peer', async () => {
    for (let id = 1; id <= 3000; id++) points.set(id, vec());
    const all = [...points];
    for (let at = 0; at < all.length; at += 500) {
        const res = await clients[0].upsert(S, {
            wait: true, points: all.slice(at, at + 500).map(([id, vector]) => ({ id, vector, payload: { n: id } })),
        });
        assert.equal(res.status, 'completed');
    }
    // Each peer's shards hold a share, and the shares add up.
    let total = 0;
    for (const client of clients) {
        const info = await client.collectionClusterInfo(S);
        for (const s of info.local_shards) {
            assert.ok(s.points_count > 0, `shard ${s.shard_id} got points`);
            total += s.points_count;
        }
    }
    assert.equal(total, points.size);
    await checkEverywhere('after the upserts');
    const got = await clients[2].retrieve(S, { ids: [1, 1500, 3000], with_payload: true });
    assert.deepEqual(got.map((p) => [p.id, p.payload.n]), [[1, 1], [1500, 1500], [3000, 3000]]);
});

test('updateCollectionCluster refuses a move to the same peer and an unknown transfer', async () => {
    const info = await clients[0].collectionClusterInfo(S);
    const shard = info.local_shards[0].shard_id;
    await assert.rejects(clients[0].updateCollectionCluster(S, {
        move_shard: { shard_id: shard, from_peer_id: ids[0], to_peer_id: ids[0] },
    }), (err) => err.status === 422 && /cannot transfer shard to itself/.test(JSON.stringify(err.data)));
    await assert.rejects(clients[0].updateCollectionCluster(S, {
        abort_transfer: { shard_id: shard, from_peer_id: ids[0], to_peer_id: ids[1] },
    }), (err) => err.status === 404);
});

test('updateCollectionCluster moves a shard; collectionClusterInfo shows it moved', async () => {
    const from = ids[0];
    const to = ids[1];
    const shard = (await clients[0].collectionClusterInfo(S)).local_shards[0].shard_id;
    assert.equal(await clients[2].updateCollectionCluster(S, {
        move_shard: { shard_id: shard, from_peer_id: from, to_peer_id: to, method: 'stream_records' },
    }), true);
    for (const [i, client] of clients.entries()) {
        await waitFor(async () => {
            const info = await client.collectionClusterInfo(S);
            const placed = placementOf(info)[shard];
            return info.shard_transfers.length === 0 && JSON.stringify(placed) === JSON.stringify({ [to]: 'Active' });
        }, `shard ${shard} on peer ${to} as peer ${ids[i]} sees it`);
    }
    const target = await clients[1].collectionClusterInfo(S);
    assert.equal(target.local_shards.length, 3);
    const moved = target.local_shards.find((s) => s.shard_id === shard);
    assert.ok(moved && moved.points_count > 0, 'the moved shard kept its points');
    assert.equal((await clients[0].collectionClusterInfo(S)).local_shards.length, 1);
    await checkEverywhere('after the move');
    // Writes after the move reach the shard on its new peer.
    for (let id = 3001; id <= 3200; id++) points.set(id, vec());
    await clients[0].upsert(S, {
        wait: true, points: [...points].filter(([id]) => id > 3000).map(([id, vector]) => ({ id, vector })),
    });
    await checkEverywhere('after more upserts');
    assert.equal(await clients[0].deleteCollection(S), true);
});

test('removePeer refuses a peer with shards, and force removes it', async () => {
    const leader = clients[leaderIndex];
    const victimIndex = followers()[1];
    const victim = ids[victimIndex];
    assert.equal(await leader.createCollection('js_spread', {
        vectors: { size: 4, distance: 'Dot' }, shard_number: clients.length,
    }), true);
    await assert.rejects(leader.api().removePeer({ peer_id: victim }),
        (err) => err.status === 400 && /shards/.test(JSON.stringify(err.data)));
    const res = await leader.api().removePeer({ peer_id: victim, force: true, timeout: 30 });
    assert.equal(res.data.result, true);
    for (const [i, client] of clients.entries()) {
        if (i === victimIndex) continue;
        await waitFor(async () => !(String(victim) in (await status(client)).peers), 'the peer to be gone');
    }
});

test('delete the collections', async () => {
    assert.equal(await clients[leaderIndex].deleteCollection('js_cluster'), true);
    assert.equal(await clients[leaderIndex].deleteCollection('js_spread'), true);
    const f = clients[followers()[0]];
    await waitFor(async () => !(await f.collectionExists('js_cluster')).exists, 'the delete on a follower');
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
