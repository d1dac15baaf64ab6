// An in-memory SCIM 2.0 server built on SCIMMY (scimmy + scimmy-routers on express), the peer
// that benches/scim_peers.rs measures scim-sync against with the same load generator.
//
//   node server.mjs --port 8090 --token TOKEN [--scan]
//
// Storage is two Maps; `userName eq "…"` and `id` lookups use an index, as a real store would,
// so the figures measure the library and its HTTP stack, not a linear scan. With --scan every
// filter goes through SCIMMY's own matcher over all users, as SCIMMY's documentation shows.
import express from 'express';
import SCIMMY from 'scimmy';
import SCIMMYRouters from 'scimmy-routers';
import { randomUUID } from 'node:crypto';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : fallback;
};
const port = Number(arg('--port', '8090'));
const token = arg('--token', 'peer-token');
const scan = process.argv.includes('--scan');

const users = new Map();
const byUserName = new Map();
const groups = new Map();

function meta(kind, id, created) {
  const now = new Date().toISOString();
  return { resourceType: kind, created: created || now, lastModified: now };
}

/** `userName eq "x"` alone: the index answers it. */
function userNameLookup(filter) {
  if (!filter || filter.length !== 1) return undefined;
  const expr = filter[0];
  const keys = Object.keys(expr);
  if (keys.length !== 1 || keys[0].toLowerCase() !== 'username') return undefined;
  const [op, value] = expr[keys[0]];
  return op === 'eq' && typeof value === 'string' ? value.toLowerCase() : undefined;
}

function egressFrom(store, resource, index) {
  if (resource.id) {
    const found = store.get(resource.id);
    if (!found) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
    return found;
  }
  const name = index && !scan ? userNameLookup(resource.filter) : undefined;
  if (name !== undefined) {
    const id = byUserName.get(name);
    return id ? [store.get(id)] : [];
  }
  const all = [...store.values()];
  return resource.filter ? resource.filter.match(all) : all;
}

SCIMMY.Resources.declare(SCIMMY.Resources.User)
  .ingress((resource, data) => {
    const name = String(data.userName).toLowerCase();
    const taken = byUserName.get(name);
    if (taken && taken !== resource.id) {
      throw new SCIMMY.Types.Error(409, 'uniqueness', `userName ${data.userName} is taken`);
    }
    const id = resource.id || randomUUID();
    const before = users.get(id);
    if (resource.id && !before) throw new SCIMMY.Types.Error(404, null, `Resource ${id} not found`);
    if (before) byUserName.delete(String(before.userName).toLowerCase());
    const user = { ...data, id, meta: meta('User', id, before?.meta?.created) };
    users.set(id, user);
    byUserName.set(name, id);
    return user;
  })
  .egress((resource) => egressFrom(users, resource, true))
  .degress((resource) => {
    const user = users.get(resource.id);
    if (!user) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
    users.delete(resource.id);
    byUserName.delete(String(user.userName).toLowerCase());
  });

SCIMMY.Resources.declare(SCIMMY.Resources.Group)
  .ingress((resource, data) => {
    const id = resource.id || randomUUID();
    const before = groups.get(id);
    if (resource.id && !before) throw new SCIMMY.Types.Error(404, null, `Resource ${id} not found`);
    const group = { ...data, id, meta: meta('Group', id, before?.meta?.created) };
    groups.set(id, group);
    return group;
  })
  .egress((resource) => egressFrom(groups, resource, false))
  .degress((resource) => {
    if (!groups.delete(resource.id)) throw new SCIMMY.Types.Error(404, null, `Resource ${resource.id} not found`);
  });

const app = express();
app.use('/scim/v2', new SCIMMYRouters({
  type: 'bearer',
  docUri: 'https://example.invalid/auth',
  handler: (request) => {
    if (request.header('Authorization') !== `Bearer ${token}`) throw new Error('Unauthorized');
    return 'bench';
  },
}));
const server = app.listen(port, '127.0.0.1', () => {
  console.log(`scimmy peer listening on http://127.0.0.1:${port}/scim/v2`);
});
// Node closes a keep-alive connection after 5 s idle by default; with slow PATCHes queued, the
// load generator's pooled connections sit idle longer than that and would be reset under it.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
