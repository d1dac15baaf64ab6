// The scim-sync operator console. Plain script, no build step, no dependencies.
//
// Every value shown comes from the admin API and may hold text an IdP chose (names, emails,
// group names), so the page only ever sets it as text (textContent), never as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'scim-sync.admin-token';
  const REFRESH_MS = 3000;
  const AUDIT_PAGE = 100;

  const $ = (id) => document.getElementById(id);
  let refreshTimer = null;

  // ---- building blocks ------------------------------------------------------------------------

  /** An element with attributes (`text` sets its text, `on…` adds a listener) and children. */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = String(v);
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
    for (const kid of kids.flat(Infinity)) {
      if (kid === undefined || kid === null || kid === false) continue;
      e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
    }
    return e;
  }

  function table(headers, rows, attrs) {
    return el('table', attrs,
      el('thead', null, el('tr', null, headers.map((h) => el('th', { text: h })))),
      el('tbody', null, rows.map((cells) => el('tr', null, cells.map((c) => el('td', null, c))))));
  }

  function definitions(pairs) {
    return el('dl', null, pairs.filter(([, v]) => v !== undefined && v !== null && v !== '')
      .map(([k, v]) => [el('dt', { text: k }), el('dd', null, v)]));
  }

  function card(title, state, stateClass, pairs, extra) {
    return el('div', { class: 'card' },
      el('h3', { text: title }),
      el('div', { class: 'state ' + (stateClass || '') }, state),
      definitions(pairs), extra);
  }

  function personLink(email) {
    if (!email) return '';
    return el('a', { href: '#person/' + encodeURIComponent(email), text: email });
  }

  /** One line for an op, as the plan and the audit log record it. */
  function describeOp(op) {
    if (!op || typeof op !== 'object') return String(op);
    const who = op.email || '';
    const where = op.workspace ? ` in ${op.workspace}` : '';
    switch (op.op) {
      case 'create_workspace': return `create workspace ${op.name}`;
      case 'invite': {
        const ws = (op.workspaces || []).map((w) => `${w.workspace} (${w.role})`).join(', ');
        return `invite ${who} as ${op.role}` + (ws ? ` to ${ws}` : '');
      }
      case 'update_org_role': return `change org role of ${who}: ${op.from} → ${op.to}`;
      case 'add_members': {
        const m = (op.members || []).map((x) => `${x.email} (${x.role})`).join(', ');
        return `add to ${op.workspace}: ${m}`;
      }
      case 'update_member_role': return `change role of ${who}${where}: ${op.from} → ${op.to}`;
      case 'remove_member': return `remove ${who} from workspace ${op.workspace}`;
      case 'revoke_invite': return `revoke the invite of ${who}`;
      case 'remove_user': return `remove ${who} from the organisation`;
      default: return JSON.stringify(op);
    }
  }

  /** The people an op is about, as links to their person view. */
  function opPeople(op) {
    if (!op || typeof op !== 'object') return [];
    const emails = op.members ? op.members.map((m) => m.email) : [op.email];
    return emails.filter(Boolean).map((e, i) => [i ? ', ' : '', personLink(e)]);
  }

  function when(ts) {
    if (!ts) return '—';
    const d = new Date(ts);
    if (Number.isNaN(d.getTime())) return ts;
    const secs = Math.round((Date.now() - d.getTime()) / 1000);
    const ago = secs < 0 ? 'in ' + span(-secs) : span(secs) + ' ago';
    return el('span', { title: ts, text: `${d.toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z')} (${ago})` });
  }

  function span(secs) {
    if (secs < 90) return `${secs} s`;
    if (secs < 5400) return `${Math.round(secs / 60)} min`;
    if (secs < 172800) return `${Math.round(secs / 3600)} h`;
    return `${Math.round(secs / 86400)} days`;
  }

  // ---- talking to the daemon -------------------------------------------------------------------

  class SignedOut extends Error {}

  /** Calls the admin API with the tab's token; a 401 signs out. */
  async function api(path, method, token) {
    const bearer = token || sessionStorage.getItem(TOKEN_KEY) || '';
    const r = await fetch(path, {
      method: method || 'GET',
      headers: { Authorization: 'Bearer ' + bearer, Accept: 'application/json' },
      cache: 'no-store',
      credentials: 'omit',
      redirect: 'error',
    });
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (r.status === 401 && !token) {
      signOut('The daemon refused the token (401): it may have been rotated. Sign in again.');
      throw new SignedOut();
    }
    return { status: r.status, ok: r.ok, body };
  }

  function errorText(res) {
    return (res.body && res.body.error) || `HTTP ${res.status}`;
  }

  // ---- where the page is reached from ---------------------------------------------------------

  function isLoopback(host) {
    return host === 'localhost' || host === '[::1]' || host === '::1' || /^127\./.test(host);
  }

  /** Says when the page is not on loopback; returns whether the token may be entered here. */
  function checkExposure() {
    const banner = $('exposure');
    if (isLoopback(location.hostname)) {
      banner.hidden = true;
      return true;
    }
    banner.hidden = false;
    if (location.protocol === 'https:') {
      banner.textContent = `This console is reached at ${location.host}, not on loopback. ` +
        'The token travels encrypted, but anyone who reaches this address can try tokens: keep ' +
        '[admin] listen on 127.0.0.1 and use an SSH tunnel where you can.';
      return true;
    }
    banner.textContent = `This console is reached at ${location.host} over plain HTTP, not on ` +
      'loopback, so the admin token would cross the network unencrypted: sign-in is off here. ' +
      'Reach it on loopback instead (e.g. ssh -L 8081:127.0.0.1:8081 <host>, then open ' +
      '127.0.0.1:8081/console here), or put TLS in front of the admin listener.';
    return false;
  }

  // ---- signing in and out ---------------------------------------------------------------------

  function showSignIn(message) {
    stopRefresh();
    $('nav').hidden = true;
    $('view').hidden = true;
    $('sign-in').hidden = false;
    const allowed = checkExposure();
    $('token').disabled = !allowed;
    $('sign-in-button').disabled = !allowed;
    const err = $('sign-in-error');
    err.hidden = !message;
    err.textContent = message || '';
    if (allowed) $('token').focus();
  }

  function signOut(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    if (location.hash) history.replaceState(null, '', location.pathname);
    showSignIn(message);
  }

  async function signIn(ev) {
    ev.preventDefault();
    if (!checkExposure()) return;
    const token = $('token').value.trim();
    if (!token) return showSignIn('Paste the admin token first.');
    let res;
    try {
      res = await api('admin/status', 'GET', token);
    } catch (e) {
      return showSignIn(`The daemon did not answer: ${e.message}`);
    }
    if (res.status === 401) return showSignIn('The daemon refused this token (401).');
    if (!res.ok) return showSignIn(`The daemon answered ${res.status}: ${errorText(res)}`);
    $('token').value = '';
    sessionStorage.setItem(TOKEN_KEY, token);
    route();
  }

  // ---- views ----------------------------------------------------------------------------------

  function stopRefresh() {
    if (refreshTimer) clearTimeout(refreshTimer);
    refreshTimer = null;
  }

  function show(title, ...content) {
    const view = $('view');
    view.replaceChildren(el('h2', { text: title }), ...content.flat());
    view.hidden = false;
  }

  function markNav(name) {
    for (const a of document.querySelectorAll('nav a')) {
      a.classList.toggle('current', a.dataset.view === name);
    }
  }

  function setHeldBadge(n) {
    const b = $('held-count');
    b.hidden = !n;
    b.textContent = n ? String(n) : '';
  }

  async function status() {
    const res = await api('admin/status');
    if (!res.ok) throw new Error(`GET /admin/status: ${errorText(res)}`);
    setHeldBadge(res.body.reconciler.held_deletions.length);
    $('footer').textContent = `scim-sync ${res.body.version} · up ${span(res.body.uptime_secs)}`;
    return res.body;
  }

  // Overview ------------------------------------------------------------------------------------

  async function showOverview(firstLoad) {
    let st;
    try {
      st = await status();
    } catch (e) {
      if (e instanceof SignedOut) return;
      show('Overview', el('p', { class: 'banner bad', text: e.message }));
      refreshTimer = setTimeout(() => showOverview(false), REFRESH_MS);
      return;
    }
    const r = st.reconciler;
    const cp = st.control_plane;
    const store = st.store;
    const content = [];
    if (r.held_deletions.length) {
      content.push(el('p', { class: 'banner warn', id: 'held-notice' },
        `${r.held_deletions.length} deletion${r.held_deletions.length === 1 ? ' is' : 's are'} held: `,
        (r.held_reason || 'the deletion fuse tripped').replace(/\.?$/, '. '),
        el('a', { href: '#held', text: 'Review them' })));
    }
    content.push(el('div', { class: 'grid', id: 'health' },
      card('SCIM server', st.scim.ok ? 'Answering' : 'Not answering', st.scim.ok ? 'ok' : 'bad', [
        ['Listening on', st.scim.listen],
        ['Base path', st.scim.base_path],
      ]),
      store.ok
        ? card('Store', 'Healthy', 'ok', [
          ['Users', String(store.users)],
          ['Groups', String(store.groups)],
          ['Last change', String(store.last_change_seq)],
          ['Writes / commits', `${store.writes} / ${store.write_commits}`],
        ])
        : card('Store', 'Failing', 'bad', [
          ['Error', store.error || (store.degraded && store.degraded.reason)],
          ['Since', store.degraded && when(store.degraded.since)],
        ]),
      card('Control plane',
        cp.ok === null || cp.ok === undefined ? 'Not reached yet' : cp.ok ? 'Reachable' : 'Failing',
        cp.ok === false ? 'bad' : cp.ok ? 'ok' : 'warn', [
          ['Last answered', when(cp.last_ok_at)],
          ['Last error', cp.last_error],
        ]),
      card('Reconciler',
        reconcilerState(r)[0], reconcilerState(r)[1], [
          ['Run', r.running],
          ['Last successful run', when(r.last_successful_run_at)],
          ['Last successful full run', when(r.last_successful_full_run_at)],
          ['Next retry', r.next_retry_at && when(r.next_retry_at)],
          ['Failing ops', String(r.failing_ops.length)],
        ], r.running ? runProgress(r.progress) : null)));

    content.push(el('div', { class: 'actions' },
      el('button', { id: 'resync', type: 'button', onclick: resyncNow, text: 'Resync now' }),
      el('span', { id: 'resync-result', class: 'muted' })));

    if (r.failing_ops.length) {
      content.push(el('h3', { text: 'Ops that keep failing' }), table(
        ['Op', 'Attempts', 'Last error', 'Next attempt'],
        r.failing_ops.map((f) => [describeOp(f.op), String(f.attempts), f.last_error, when(f.next_attempt_at)])));
    }

    const runs = r.recent_runs && r.recent_runs.length ? r.recent_runs : (r.last_run ? [r.last_run] : []);
    content.push(el('h3', { text: 'Last runs' }));
    if (!runs.length) {
      content.push(el('p', { class: 'muted', text: 'No run has finished since the daemon started.' }));
    } else {
      content.push(table(
        ['Finished', 'Run', 'Kind', 'Result', 'Planned', 'Applied', 'Failed', 'Held', 'Took'],
        runs.map((x) => [
          when(x.finished_at),
          el('a', { href: '#audit/' + encodeURIComponent(x.run_id), class: 'mono', text: x.run_id }),
          `${x.kind} (${x.trigger})${x.dry_run ? ', dry run' : ''}`,
          el('span', { class: x.ok ? 'ok' : 'bad', text: x.ok ? 'ok' : 'failed' },
            x.errors.length ? el('ul', { class: 'plain' }, x.errors.map((e) => el('li', { text: e }))) : null),
          String(Object.values(x.planned).reduce((a, b) => a + b, 0)),
          String(x.applied), String(x.failed), String(x.held),
          `${x.duration_ms} ms`,
        ]), { id: 'runs' }));
    }
    // What the resync button said stays across refreshes.
    const said = firstLoad ? '' : ($('resync-result') || {}).textContent || '';
    show('Overview', content);
    $('resync-result').textContent = said;
    refreshTimer = setTimeout(() => showOverview(false), REFRESH_MS);
  }

  /** A bar of the ops applied so far; before the plan is made, a bar without a value. */
  function runProgress(p) {
    if (!p.total) {
      return el('div', null, el('progress', { id: 'run-progress' }),
        el('div', { class: 'muted', text: 'reading the control plane and planning' }));
    }
    return el('div', null,
      el('progress', { id: 'run-progress', max: p.total, value: p.done }),
      el('div', { class: 'muted', text: `${p.done} of ${p.total} ops applied` }));
  }

  /** What the reconciler card says first, and in which colour. */
  function reconcilerState(r) {
    if (r.running) return ['Running', 'warn'];
    if (r.ok === false) return ['Last run failed', 'bad'];
    if (r.ok === undefined || r.ok === null) return ['No run yet', 'warn'];
    if (r.held_deletions.length) return ['Idle, deletions held', 'warn'];
    if (r.failing_ops.length) return ['Idle, some ops failing', 'warn'];
    return ['Idle, in sync', 'ok'];
  }

  async function resyncNow() {
    const out = $('resync-result');
    $('resync').disabled = true;
    try {
      const res = await api('admin/resync', 'POST');
      out.textContent = res.ok
        ? `Run ${res.body.run_id} started.`
        : `Not started: ${errorText(res)}`;
      // Show the run at once rather than at the next refresh.
      if (res.ok) {
        stopRefresh();
        refreshTimer = setTimeout(() => showOverview(false), 200);
      }
    } catch (e) {
      if (!(e instanceof SignedOut)) out.textContent = `Not started: ${e.message}`;
    }
  }

  // Person ---------------------------------------------------------------------------------------

  async function showPerson(who) {
    const form = el('form', { class: 'inline', id: 'person-form' },
      el('label', { for: 'person-query', text: 'Email, userName or SCIM id' }),
      el('input', { id: 'person-query', type: 'search', value: who || '', autocomplete: 'off', spellcheck: 'false' }),
      el('button', { type: 'submit', text: 'Explain' }));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const v = $('person-query').value.trim();
      if (v) location.hash = '#person/' + encodeURIComponent(v);
    });
    if (!who) {
      show('Person', form, el('p', { class: 'muted', text:
        'What the IdP asks for this person, what the control plane has, which groups grant what, ' +
        'and what the next run would change: the same as `scim-sync explain`.' }));
      $('person-query').focus();
      return;
    }
    show('Person', form, el('p', { class: 'muted', text: `Reading ${who}…` }));
    const res = await api('admin/explain/' + encodeURIComponent(who));
    if (!res.ok) {
      show('Person', form, el('p', { class: 'banner bad', id: 'person-error', text: errorText(res) }));
      return;
    }
    const d = res.body;
    const parts = [form, el('h3', { text: d.email || d.query })];
    const want = d.desired;
    parts.push(el('h3', { text: 'What the IdP asks for' }));
    if (!want) {
      parts.push(el('p', { text: 'No SCIM user: the IdP does not assign this person to scim-sync.' }));
    } else {
      parts.push(el('div', { class: 'card', id: 'desired' }, definitions([
        ['userName', want.user_name],
        ['SCIM id', el('span', { class: 'mono', text: want.scim_id })],
        ['Access', want.desired
          ? el('span', { class: 'ok', text: 'should be in the organisation' })
          : el('span', { class: 'bad', text: `should not: ${want.excluded_because || 'excluded'}` })],
        ['Org role', want.org_role && `${want.org_role}${want.org_role_reason ? ` (${want.org_role_reason})` : ''}`],
      ])));
      if (want.workspaces.length) {
        parts.push(table(['Workspace', 'Role', 'Granted by'],
          want.workspaces.map((w) => [w.workspace, w.role, w.because.join(', ')]), { id: 'desired-workspaces' }));
      } else {
        parts.push(el('p', { class: 'muted', text: 'No workspace is granted by any group.' }));
      }
      for (const c of want.conflicts) {
        parts.push(el('p', { class: 'banner warn', text:
          `Conflicting roles in ${c.workspace}: ${c.roles.join(', ')} from ${c.groups.join(', ')}; ${c.chosen} applies.` }));
      }
    }
    parts.push(el('h3', { text: 'What the control plane has' }));
    const have = d.actual;
    if (!have) {
      parts.push(el('p', { class: 'banner bad', text: 'The control plane could not be read.' }));
    } else {
      parts.push(el('div', { class: 'card', id: 'actual' }, definitions([
        ['User', have.user ? `${have.user.email} (${have.user.role}), id ${have.user.id}` : 'none'],
        ['Invites', have.invites.length
          ? have.invites.map((i) => `${i.status} invite as ${i.role}`).join('; ') : 'none'],
      ])));
      if (have.memberships_in_managed_workspaces.length) {
        parts.push(table(['Workspace id', 'Role'],
          have.memberships_in_managed_workspaces.map((m) => [m.workspace_id, m.role]), { id: 'actual-workspaces' }));
      }
    }
    parts.push(el('h3', { text: 'What the next run would do' }));
    parts.push(d.planned_ops.length
      ? el('ul', { class: 'plain', id: 'planned' }, d.planned_ops.map((op) =>
        el('li', null, describeOp(op), el('span', { class: 'muted', text: ` (${op.reason})` }))))
      : el('p', { id: 'planned', class: 'ok', text: 'Nothing: the control plane matches the IdP.' }));
    for (const e of d.read_errors) parts.push(el('p', { class: 'banner bad', text: e }));
    parts.push(el('p', null, el('a', { href: '#audit/' + encodeURIComponent(d.email || d.query),
      text: 'What was done about this person (audit log)' })));
    show('Person', parts);
  }

  // Held deletions -----------------------------------------------------------------------------

  async function showHeld(note) {
    const st = await status();
    const r = st.reconciler;
    const parts = [];
    if (note) parts.push(note);
    if (!r.held_deletions.length) {
      parts.push(el('p', { id: 'held-empty', class: 'ok', text: 'No deletions are held.' }));
      if (r.approved_waiting) {
        parts.push(el('p', { class: 'muted', text: `${r.approved_waiting} approved deletion(s) wait for the next run.` }));
      }
      show('Held deletions', parts);
      return;
    }
    // What is approved is exactly what this page shows: the digest names this set, and the
    // daemon refuses it if the held set has changed since.
    const digest = r.held_digest;
    const shown = r.held_deletions;
    parts.push(el('p', { class: 'banner warn', text: `The deletion fuse holds these ${shown.length}: ${r.held_reason || ''}` }));
    parts.push(table(['What', 'Who', 'Why'], shown.map((op) => [describeOp(op), opPeople(op), op.reason]), { id: 'held-table' }));
    const confirmRow = el('div', { class: 'actions', id: 'held-confirm', hidden: true },
      el('span', { text: `Apply these ${shown.length} deletions in the control plane now?` }),
      el('button', { id: 'held-approve-yes', type: 'button', class: 'danger', text: 'Yes, approve and apply',
        onclick: () => approve(digest, shown.length) }),
      el('button', { type: 'button', class: 'secondary', text: 'Cancel',
        onclick: () => { confirmRow.hidden = true; $('held-approve').disabled = false; } }));
    parts.push(el('div', { class: 'actions' },
      el('button', { id: 'held-approve', type: 'button', class: 'danger',
        text: `Approve these ${shown.length} deletions…`,
        onclick: (ev) => { ev.target.disabled = true; confirmRow.hidden = false; } })),
    confirmRow,
    el('p', { class: 'muted', text: `Digest of this set: ${digest}` }));
    show('Held deletions', parts);
  }

  async function approve(digest, count) {
    $('held-approve-yes').disabled = true;
    const res = await api('admin/approve-deletions?digest=' + encodeURIComponent(digest), 'POST');
    let note;
    if (res.status === 409) {
      note = el('p', { class: 'banner bad', id: 'held-result', text:
        'The held set changed since this page showed it, so nothing was approved. Here is the set as it is now; review it again.' });
    } else if (!res.ok) {
      note = el('p', { class: 'banner bad', id: 'held-result', text: `Not approved: ${errorText(res)}` });
    } else if (res.body.run_id) {
      const s = res.body.summary;
      note = el('p', { class: 'banner ok', id: 'held-result' },
        `Approved ${res.body.approved} of the ${count} shown. Run `,
        el('a', { href: '#audit/' + encodeURIComponent(res.body.run_id), class: 'mono', text: res.body.run_id }),
        s ? ` applied ${s.applied}, failed ${s.failed}.` : ' has not finished; the next run applies them.');
    } else {
      note = el('p', { class: 'banner ok', id: 'held-result', text: res.body.detail || 'Nothing was held.' });
    }
    await showHeld(note);
  }

  // Audit ----------------------------------------------------------------------------------------

  async function showAudit(q) {
    const form = el('form', { class: 'inline', id: 'audit-form' },
      el('label', { for: 'audit-query', text: 'Search' }),
      el('input', { id: 'audit-query', type: 'search', value: q || '', autocomplete: 'off', spellcheck: 'false',
        placeholder: 'email, workspace, op, run id, result' }),
      el('button', { type: 'submit', text: 'Search' }));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      location.hash = '#audit/' + encodeURIComponent($('audit-query').value.trim());
    });
    const body = el('tbody');
    const more = el('button', { id: 'audit-more', type: 'button', class: 'secondary', text: 'Older entries', hidden: true });
    const summary = el('p', { class: 'muted', id: 'audit-summary' });
    let shown = 0;
    const load = async (before) => {
      more.disabled = true;
      let path = `admin/audit?limit=${AUDIT_PAGE}`;
      if (q) path += '&q=' + encodeURIComponent(q);
      if (before !== undefined) path += `&before=${before}`;
      const res = await api(path);
      if (!res.ok) {
        summary.textContent = `Could not read the audit log: ${errorText(res)}`;
        return;
      }
      for (const e of res.body.entries) {
        body.append(el('tr', null,
          el('td', { class: 'mono', text: String(e.seq) }),
          el('td', null, when(e.at)),
          el('td', null, el('a', { href: '#audit/' + encodeURIComponent(e.run_id), class: 'mono', text: e.run_id })),
          el('td', null, describeOp(e.op), el('div', null, opPeople(e.op))),
          el('td', { text: e.reason }),
          el('td', { class: /^ok/.test(e.result) ? 'ok' : /^failed/.test(e.result) ? 'bad' : 'warn', text: e.result })));
      }
      shown += res.body.entries.length;
      const next = res.body.next_before;
      more.hidden = next === undefined || next === null;
      more.disabled = false;
      more.onclick = () => load(next);
      summary.textContent = `${shown} entr${shown === 1 ? 'y' : 'ies'}` + (q ? ` mentioning “${q}”` : '') +
        (more.hidden ? '.' : '; older entries may match too.');
    };
    show('Audit log', form,
      el('table', { id: 'audit-table' },
        el('thead', null, el('tr', null, ['#', 'When', 'Run', 'Op', 'Why', 'Result'].map((h) => el('th', { text: h })))),
        body),
      summary, more);
    await load();
  }

  // ---- routing ----------------------------------------------------------------------------------

  const VIEWS = { overview: showOverview, person: showPerson, held: showHeld, audit: showAudit };

  async function route() {
    stopRefresh();
    if (!sessionStorage.getItem(TOKEN_KEY) || !checkExposure()) {
      showSignIn();
      return;
    }
    $('sign-in').hidden = true;
    $('nav').hidden = false;
    const hash = location.hash.replace(/^#/, '');
    const slash = hash.indexOf('/');
    const name = slash < 0 ? hash : hash.slice(0, slash);
    let arg = '';
    if (slash >= 0) {
      try { arg = decodeURIComponent(hash.slice(slash + 1)); } catch (_) { arg = hash.slice(slash + 1); }
    }
    const view = VIEWS[name] ? name : 'overview';
    markNav(view);
    try {
      if (view === 'overview') await showOverview(true);
      else if (view === 'held') await showHeld();
      else await VIEWS[view](arg);
    } catch (e) {
      if (!(e instanceof SignedOut)) show('Error', el('p', { class: 'banner bad', text: e.message }));
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('sign-in-form').addEventListener('submit', signIn);
    $('sign-out').addEventListener('click', () => signOut('Signed out.'));
    window.addEventListener('hashchange', route);
    route();
  });
})();
