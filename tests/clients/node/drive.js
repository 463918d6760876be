// Drives one etcd server through the etcd3 npm package (Node, @grpc/grpc-js) and prints
// what it saw as one JSON object, so tests/clients/test_node_etcd3.py can compare a run
// against pyetcd with a run against real etcd.
//
//   node drive.js <endpoint> <proto dir>
//
// The sections run one after another (the revisions they report are then the same on
// two fresh servers); only the lease's keep-alive loop runs beside the others. Lease IDs
// and times are never reported: they differ between servers by design.
'use strict';

const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const { Etcd3, EtcdLockFailedError } = require('etcd3');

const [endpoint, protoDir] = process.argv.slice(2);
const client = new Etcd3({ hosts: endpoint });
const str = (b) => (b === undefined || b === null ? null : b.toString());
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const kvOut = (kv) => ({
  key: str(kv.key),
  value: str(kv.value),
  create_revision: kv.create_revision,
  mod_revision: kv.mod_revision,
  version: kv.version,
});

async function until(what, check, timeoutMs = 10000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

async function kv() {
  const out = {};
  for (let i = 0; i < 5; i++) await client.put(`kv/k${i}`).value(`v${i}`);
  await client.put('kv/k1').value('v1b');
  await client.put('kvx').value('outside');
  out.get = await client.get('kv/k1').string();
  out.missing = await client.get('kv/none').string();
  out.prefix = await client.getAll().prefix('kv/').strings();
  out.limit = (await client.getAll().prefix('kv/').limit(2).exec()).kvs.map(kvOut);
  const limited = await client.getAll().prefix('kv/').limit(2).exec();
  out.limit_more = limited.more;
  out.limit_count = limited.count;
  out.count = await client.getAll().prefix('kv/').count();
  out.descend = await client.getAll().prefix('kv/').sort('Key', 'Descend').limit(3).keys();
  out.deleted = (await client.delete().key('kv/k4').exec()).deleted;
  out.delete_prefix = (await client.delete().prefix('kv/k').getPrevious()).map(kvOut);
  out.after_delete = await client.getAll().prefix('kv/').keys();
  return out;
}

async function txns() {
  const out = {};
  const create = () =>
    client
      .if('tx/a', 'Mod', '==', 0)
      .then(client.put('tx/a').value('created'))
      .else(client.get('tx/a'))
      .commit();
  const first = await create();
  out.create = { succeeded: first.succeeded, revision: first.header.revision };
  const second = await create();
  out.create_again = {
    succeeded: second.succeeded,
    kvs: second.responses[0].response_range.kvs.map(kvOut),
  };
  const mod = second.responses[0].response_range.kvs[0].mod_revision;
  const update = await client
    .if('tx/a', 'Mod', '==', mod)
    .and('tx/a', 'Value', '==', 'created')
    .then(client.put('tx/a').value('updated'), client.put('tx/b').value('b'))
    .else(client.get('tx/a'))
    .commit();
  out.update = { succeeded: update.succeeded, responses: update.responses.length };
  const stale = await client
    .if('tx/a', 'Mod', '==', mod)
    .then(client.put('tx/a').value('lost'))
    .else(client.get('tx/a'))
    .commit();
  out.stale = {
    succeeded: stale.succeeded,
    kvs: stale.responses[0].response_range.kvs.map(kvOut),
  };
  const version = await client
    .if('tx/a', 'Version', '>', 1)
    .and('tx/b', 'Create', '<', 1000)
    .then(client.delete().key('tx/b'))
    .commit();
  out.version = { succeeded: version.succeeded };
  out.final = await client.getAll().prefix('tx/').strings();
  return out;
}

// A lease with keep-alive that must outlive several TTLs; the key on it must stay.
function startLease(ttl) {
  const lease = client.lease(ttl);
  const seen = { keepalives: 0, ttl: null, lost: null };
  lease.on('keepaliveSucceeded', (res) => {
    seen.keepalives += 1;
    seen.ttl = Number(res.TTL);
  });
  lease.on('lost', (err) => {
    seen.lost = String(err);
  });
  const started = Date.now();
  const ready = lease.put('lease/k').value('held').then(() => lease);
  return { lease, seen, started, ready };
}

async function finishLease(run, ttl) {
  await run.ready;
  const waitMs = 2.5 * ttl * 1000 - (Date.now() - run.started);
  if (waitMs > 0) await sleep(waitMs);
  const out = {
    key_after_ttls: await client.get('lease/k').string(),
    granted_ttl: run.seen.ttl,
    keepalives_at_least_3: run.seen.keepalives >= 3,
    lost: run.seen.lost,
  };
  await run.lease.revoke();
  out.key_after_revoke = await client.get('lease/k').string();
  return out;
}

async function watch() {
  const watcher = await client.watch().prefix('w/').withPreviousKV().create();
  const events = [];
  const done = new Promise((resolve) => {
    const record = (type) => (kv, prev) => {
      events.push({ type, kv: kvOut(kv), prev: prev ? kvOut(prev) : null });
      if (events.length === 4) resolve();
    };
    watcher.on('put', record('put'));
    watcher.on('delete', record('delete'));
  });
  await client.put('w/a').value('1');
  await client.put('w/a').value('2');
  await client.put('w/b').value('3');
  await client.delete().key('w/a');
  await done;
  await watcher.cancel();
  // A second watcher from an old revision replays history.
  const start = events[0].kv.mod_revision;
  const replay = await client.watch().key('w/a').startRevision(String(start)).create();
  const replayed = [];
  await new Promise((resolve) => {
    replay.on('data', (res) => {
      for (const e of res.events) replayed.push({ type: e.type, value: str(e.kv.value) });
      if (replayed.length >= 3) resolve();
    });
  });
  await replay.cancel();
  return { events, replayed };
}

// A namespaced client, the library's STM (a txn comparing the mod_revision of every key
// read, retried on conflict) and several watchers on the library's one watch stream.
async function more() {
  const out = {};
  const ns = client.namespace('ns/');
  await ns.put('a').value('1');
  out.ns_get = await ns.get('a').string();
  out.ns_raw = await client.get('ns/a').string();
  out.ns_keys = await ns.getAll().keys();
  await client.put('stm/x').value('0');
  let tries = 0;
  await client.stm().transact(async (tx) => {
    tries += 1;
    const v = Number(await tx.get('stm/x').string());
    if (tries === 1) await client.put('stm/x').value('100'); // a concurrent writer
    await tx.put('stm/y').value(String(v + 1));
  });
  out.stm_tries = tries;
  out.stm = await client.getAll().prefix('stm/').strings();
  const w1 = await client.watch().key('mw/a').create();
  const w2 = await client.watch().key('mw/b').create();
  const w3 = await client.watch().prefix('mw/').create();
  const seen = [];
  for (const [name, w] of [['w1', w1], ['w2', w2], ['w3', w3]]) {
    w.on('put', (kv) => seen.push(`${name}:${kv.key}`));
  }
  await w2.cancel();
  await client.put('mw/a').value('1');
  await client.put('mw/b').value('1');
  await until('w3 to see mw/b', async () => seen.includes('w3:mw/b'));
  out.multi_watch = seen.sort();
  await w1.cancel();
  await w3.cancel();
  return out;
}

// The library's own lock: a txn on create_revision == 0 under a lease; a second
// contender is refused while the first holds it.
async function libraryLock() {
  const out = {};
  const first = await client.lock('lk/lib').ttl(5).acquire();
  out.held = await client.get('lk/lib').exists();
  try {
    await client.lock('lk/lib').ttl(5).acquire();
    out.second = 'acquired';
  } catch (err) {
    out.second = err instanceof EtcdLockFailedError ? 'refused' : String(err);
  }
  await first.release();
  out.released = !(await client.get('lk/lib').exists());
  const third = await client.lock('lk/lib').ttl(5).acquire();
  out.after_release = 'acquired';
  await third.release();
  return out;
}

// The library's election (keys under election/<name>/ and watches): the second
// candidate waits until the first resigns; an observer follows the leader.
async function libraryElection() {
  const out = {};
  const election = client.election('el', 5);
  const a = election.campaign('alice');
  await a.wait();
  out.leader = await election.leader();
  const observer = await election.observe();
  const changes = [];
  observer.on('change', (value) => changes.push(value));
  let bElected = false;
  const b = election.campaign('bob');
  const bWait = b.wait().then(() => {
    bElected = true;
  });
  await until('bob to queue', async () => (await client.getAll().prefix('election/el/').count()) === 2);
  out.second_elected_while_first_leads = bElected;
  await a.resign();
  await bWait;
  out.leader_after_resign = await election.leader();
  await until('the observer to see bob', async () => changes.includes('bob'));
  out.observed = changes;
  await b.resign();
  observer.cancel();
  out.leader_after_all_resigned = (await election.leader()) === undefined ? null : 'someone';
  return out;
}

// etcd's Lock and Election gRPC services (v3lockpb, v3electionpb), on @grpc/grpc-js
// directly with the project's .proto files.
function services() {
  const load = (file) =>
    grpc.loadPackageDefinition(
      protoLoader.loadSync(file, {
        includeDirs: [protoDir],
        longs: String,
        defaults: true,
      }),
    );
  const target = endpoint.replace(/^https?:\/\//, '');
  const creds = grpc.credentials.createInsecure();
  const lockPb = load('pyetcd/pb/v3lock.proto').v3lockpb;
  const electionPb = load('pyetcd/pb/v3election.proto').v3electionpb;
  const rpcPb = load('pyetcd/pb/rpc.proto').etcdserverpb;
  const unary = (stub, method) => (req) =>
    new Promise((resolve, reject) =>
      stub[method](req, (err, res) => (err ? reject(err) : resolve(res))),
    );
  const lock = new lockPb.Lock(target, creds);
  const election = new electionPb.Election(target, creds);
  const lease = new rpcPb.Lease(target, creds);
  const kvRaw = new rpcPb.KV(target, creds);
  return {
    compact: unary(kvRaw, 'Compact'),
    lock: unary(lock, 'Lock'),
    unlock: unary(lock, 'Unlock'),
    campaign: unary(election, 'Campaign'),
    leader: unary(election, 'Leader'),
    resign: unary(election, 'Resign'),
    proclaim: unary(election, 'Proclaim'),
    observe: (req) => election.Observe(req),
    grant: unary(lease, 'LeaseGrant'),
    revoke: unary(lease, 'LeaseRevoke'),
    close: () => [lock, election, lease, kvRaw].forEach((c) => c.close()),
  };
}

async function serviceLock(svc) {
  const out = {};
  const l1 = (await svc.grant({ TTL: 10 })).ID;
  const l2 = (await svc.grant({ TTL: 10 })).ID;
  const first = await svc.lock({ name: Buffer.from('lk/svc'), lease: l1 });
  out.first_key_prefix = str(first.key).startsWith('lk/svc/');
  let secondDone = false;
  const second = svc.lock({ name: Buffer.from('lk/svc'), lease: l2 }).then((res) => {
    secondDone = true;
    return res;
  });
  // The second contender has written its key and waits on the first one's.
  await until('the second contender to queue', async () => (await client.getAll().prefix('lk/svc/').count()) === 2);
  out.second_blocked_while_held = !secondDone;
  await svc.unlock({ key: first.key });
  const got = await second;
  out.second_after_unlock = secondDone;
  out.second_key_differs = !got.key.equals(first.key);
  await svc.unlock({ key: got.key });
  out.keys_left = await client.getAll().prefix('lk/svc/').count();
  await svc.revoke({ ID: l1 });
  await svc.revoke({ ID: l2 });
  return out;
}

async function serviceElection(svc) {
  const out = {};
  const name = Buffer.from('el/svc');
  const l1 = (await svc.grant({ TTL: 10 })).ID;
  const l2 = (await svc.grant({ TTL: 10 })).ID;
  const a = (await svc.campaign({ name, lease: l1, value: Buffer.from('alice') })).leader;
  out.leader = str((await svc.leader({ name })).kv.value);
  const observed = [];
  const stream = svc.observe({ name });
  stream.on('data', (res) => observed.push(str(res.kv.value)));
  stream.on('error', () => undefined);
  await until('the observer to see alice', async () => observed.includes('alice'));
  let bDone = false;
  const bCampaign = svc.campaign({ name, lease: l2, value: Buffer.from('bob') }).then((res) => {
    bDone = true;
    return res;
  });
  await until('bob to queue', async () => (await client.getAll().prefix('el/svc/').count()) === 2);
  out.second_elected_while_first_leads = bDone;
  await svc.proclaim({ leader: a, value: Buffer.from('alice2') });
  await until('the observer to see alice2', async () => observed.includes('alice2'));
  await svc.resign({ leader: a });
  const b = (await bCampaign).leader;
  out.leader_after_resign = str((await svc.leader({ name })).kv.value);
  await until('the observer to see bob', async () => observed.includes('bob'));
  out.observed = observed;
  await svc.resign({ leader: b });
  stream.cancel();
  try {
    await svc.leader({ name });
    out.leader_when_none = 'answered';
  } catch (err) {
    out.leader_when_none = err.details;
  }
  await svc.revoke({ ID: l1 });
  await svc.revoke({ ID: l2 });
  return out;
}

// What the library makes of the server's errors: it types them by etcd's message texts
// (and by gRPC code), so a different text is a different error to its callers.
async function errors(svc) {
  const out = {};
  const attempt = async (name, fn) => {
    try {
      await fn();
      out[name] = 'no error';
    } catch (err) {
      out[name] = { type: err.constructor.name, message: err.message };
    }
  };
  const old = (await client.put('err/k').value('1').exec()).header.revision;
  const now = (await client.put('err/k').value('2').exec()).header.revision;
  await svc.compact({ revision: now });
  await attempt('compacted_read', () => client.get('err/k').revision(old).string());
  await attempt('future_read', () => client.get('err/k').revision(String(Number(now) + 100)).string());
  await attempt('compact_again', () => svc.compact({ revision: now }).catch((e) => {
    throw new Error(e.details);
  }));
  await attempt('put_unknown_lease', () => client.put('err/l').value('x').lease('123456789'));
  await attempt('revoke_unknown_lease', () => svc.revoke({ ID: '123456789' }).catch((e) => {
    throw new Error(e.details);
  }));
  await attempt('empty_key', () => client.put('').value('x'));
  await attempt('duplicate_txn_key', () =>
    client.if('err/k', 'Version', '>', 0)
      .then(client.put('err/d').value('1'), client.put('err/d').value('2'))
      .commit());
  await client.user('u1').create('pw');
  await attempt('user_exists', () => client.user('u1').create('pw'));
  await client.role('r1').create();
  await attempt('role_exists', () => client.role('r1').create());
  await attempt('role_not_found', () => client.user('u1').addRole('nope'));
  await attempt('user_not_found', () => client.user('nobody').roles());
  await client.user('u1').addRole('r1');
  out.user_roles = (await client.user('u1').roles()).map((r) => r.name);
  out.users = (await client.getUsers()).map((u) => u.name);
  await client.user('u1').delete();
  await client.role('r1').delete();
  out.roles_left = (await client.getRoles()).map((r) => r.name);
  return out;
}

async function main() {
  const result = {};
  const leaseTTL = 2;
  const leaseRun = startLease(leaseTTL);
  await leaseRun.ready;
  result.kv = await kv();
  result.txn = await txns();
  result.watch = await watch();
  result.more = await more();
  result.lock = await libraryLock();
  result.election = await libraryElection();
  const svc = services();
  try {
    result.lock_service = await serviceLock(svc);
    result.election_service = await serviceElection(svc);
    result.errors = await errors(svc);
  } finally {
    svc.close();
  }
  result.lease = await finishLease(leaseRun, leaseTTL);
  client.close();
  process.stdout.write(JSON.stringify(result, null, 1) + '\n');
}

main().catch((err) => {
  process.stderr.write(`drive.js failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
