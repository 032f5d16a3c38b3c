// Runs the cluster calls of Qdrant's official JavaScript client
// (@qdrant/js-client-rest) against a running shoal cluster, unchanged:
// clusterStatus on every peer, collections created through one peer seen by
// the others, recoverCurrentPeer and removePeer.
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
