// The page: sign-in, the app list, the selected app (chat or files), the daily limit.

import * as api from './api.js';
import { ChatView } from './chat.js';
import { h, mount, relativeTime, resetPhrase, safeUrl, toast } from './dom.js';
import { DeploymentLogView } from './deploylogs.js';
import { FilesView } from './files.js';

const $ = (id) => document.getElementById(id);
const PAGE_SIZE = 10;

const state = {
  limit: null,
  apps: [],
  page: 1,
  totalPages: 1,
  total: 0,
  appsLoaded: false,
  appInfo: new Map(), // id → app (from the list or GET /apps/:id), merged with live updates
  deployments: new Map(), // id → deployment or null
  deployLogs: new Map(), // app id → DeploymentLogView of its latest deployment
  chats: new Map(), // id → ChatView (kept while the page lives, so runs go on in the background)
  files: new Map(), // id → FilesView
  newChat: null,
  running: new Set(),
  current: { appId: null, tab: 'chat' },
  testSettings: undefined,
  verifying: false,
};

// ---- sign-in ------------------------------------------------------------------------------

function showSignIn(message = '') {
  for (const view of state.chats.values()) view.close();
  state.newChat?.close();
  Object.assign(state, {
    apps: [],
    appsLoaded: false,
    limit: null,
    newChat: null,
    current: { appId: null, tab: 'chat' },
  });
  state.chats.clear();
  state.files.clear();
  state.appInfo.clear();
  state.deployments.clear();
  for (const view of state.deployLogs.values()) view.close();
  state.deployLogs.clear();
  state.running.clear();
  $('boot').hidden = true;
  $('shell').hidden = true;
  $('signin').hidden = false;
  $('signin-message').hidden = !message;
  $('signin-message').textContent = message;
  $('signin-error').hidden = true;
  api.devLoginAvailable().then((available) => {
    $('dev-login-form').hidden = !available;
    $('signin-or').hidden = !available;
    (available ? $('dev-user') : $('token-input')).focus();
  });
}

function signInError(message) {
  $('signin-error').textContent = message;
  $('signin-error').hidden = false;
}

async function signInWith(token) {
  api.setToken(token);
  state.verifying = true;
  try {
    await api.getMessageLimit();
  } catch (e) {
    api.setToken('');
    if (e.status === 401) signInError(`That token was not accepted: ${e.message}`);
    else signInError(`Could not check the token: ${e.message}`);
    return false;
  } finally {
    state.verifying = false;
  }
  startShell();
  return true;
}

function bindSignIn() {
  $('dev-login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const user = $('dev-user').value.trim();
    if (!user) return;
    const button = e.submitter || $('dev-login-form').querySelector('button');
    button.disabled = true;
    $('signin-error').hidden = true;
    try {
      const { token } = await api.devLogin(user);
      await signInWith(token);
    } catch (err) {
      if (err.status === 404) {
        $('dev-login-form').hidden = true;
        $('signin-or').hidden = true;
        signInError('Quick sign-in is not enabled on this server. Sign in with a token instead.');
      } else {
        signInError(`Sign-in failed: ${err.message}`);
      }
    } finally {
      button.disabled = false;
    }
  });
  $('token-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    const token = $('token-input').value.trim().replace(/^Bearer\s+/i, '');
    if (!token) return;
    $('signin-error').hidden = true;
    if (await signInWith(token)) $('token-input').value = '';
  });
  $('signout').addEventListener('click', () => {
    api.setToken('');
    showSignIn('You are signed out.');
  });
  api.on('unauthorized', (reason) => {
    // While a pasted token is being checked, signInWith reports the failure itself.
    if (!api.getToken() || state.verifying) return;
    api.setToken('');
    const why = String(reason || '').replace(/[.\s]+$/, '');
    showSignIn(`You have been signed out${why ? ` (${why})` : ''}. Please sign in again.`);
  });
}

// ---- the shell ----------------------------------------------------------------------------

function startShell() {
  $('boot').hidden = true;
  $('signin').hidden = true;
  $('shell').hidden = false;
  $('user').textContent = api.tokenUser();
  renderLimit();
  loadApps(1);
  route();
}

function renderLimit() {
  const el = $('limit');
  const l = state.limit;
  if (!l || !Number.isFinite(l.limit)) {
    el.textContent = '';
    el.hidden = true;
    return;
  }
  el.hidden = false;
  el.dataset.remaining = l.remaining;
  el.dataset.limit = l.limit;
  el.classList.toggle('exhausted', l.remaining <= 0);
  el.classList.toggle('low', l.remaining > 0 && l.remaining <= Math.max(1, Math.floor(l.limit / 5)));
  const reset = l.reset ? ` · resets ${resetPhrase(l.reset)}` : '';
  const long =
    l.remaining <= 0
      ? `No messages left today${reset}`
      : `${l.remaining} of ${l.limit} messages left today${reset}`;
  // Small screens show the short form.
  mount(el, h('span.limit-long', null, long), h('span.limit-short', null, `${Math.max(0, l.remaining)}/${l.limit} left`));
  el.title = long;
  for (const view of allChats()) view.updateComposer();
}

function allChats() {
  return [...state.chats.values(), ...(state.newChat ? [state.newChat] : [])];
}

// ---- app list -----------------------------------------------------------------------------

async function loadApps(page = state.page) {
  const list = $('app-list');
  if (!state.appsLoaded) mount(list, h('div.state.loading', null, h('span.spinner'), 'Loading your apps…'));
  let body;
  try {
    body = await api.listApps(page, PAGE_SIZE);
  } catch (e) {
    if (e.status === 401) return;
    mount(
      list,
      h(
        'div.state.error',
        { role: 'alert' },
        `Could not load your apps: ${e.message}`,
        h('button.btn.small', { type: 'button', onclick: () => loadApps(page) }, 'Try again'),
      ),
    );
    return;
  }
  const pagination = body.pagination || {};
  if (page > 1 && !body.data?.length && pagination.totalPages < page) return loadApps(Math.max(1, pagination.totalPages || 1));
  state.apps = body.data || [];
  state.page = pagination.page || page;
  state.totalPages = Math.max(1, pagination.totalPages || 1);
  state.total = pagination.total ?? state.apps.length;
  state.appsLoaded = true;
  for (const app of state.apps) mergeApp(app.id, app);
  renderAppList();
  // The intro of an untouched "new app" says whether this is the user's first app.
  const draft = state.newChat;
  if (draft && !draft.appId && !draft.running && draft.timeline.querySelector('.intro')) draft.showIntro();
}

function mergeApp(id, info) {
  const merged = { ...(state.appInfo.get(id) || {}), ...info };
  state.appInfo.set(id, merged);
  return merged;
}

function appTitle(app) {
  return app?.appName || app?.name || 'Untitled app';
}

// The badge of each of app.build's five `deployStatus` values.
const DEPLOY_BADGES = {
  pending: ['Draft', 'draft'],
  deploying: ['Deploying', 'deploying'],
  deployed: ['Live', 'live'],
  failed: ['Deploy failed', 'failed'],
  stopping: ['Stopping', 'draft'],
};

// Which `deployStatus` each finer `deploymentStatus` belongs to (the gateway's mapping).
const DEPLOY_GROUPS = {
  queued: 'deploying',
  building: 'deploying',
  deploying: 'deploying',
  healthy: 'deployed',
  failed: 'failed',
  superseded: 'stopping',
  cancelled: 'stopping',
};

function statusBadge(appId, app) {
  if (state.running.has(appId)) return h('span.badge.running', { dataset: { testid: 'deploy-badge', status: 'running' } }, 'Building…');
  const status = DEPLOY_BADGES[app?.deployStatus] ? app.deployStatus : 'pending';
  const [label, cls] = DEPLOY_BADGES[status];
  // The finer status names the step, while it still belongs to the same state (a live stream
  // may have moved `deployStatus` on since the app was fetched).
  const finer = app?.deploymentStatus || '';
  const step = status === 'deploying' && DEPLOY_GROUPS[finer] === status ? finer : '';
  return h(
    'span.badge',
    {
      class: cls,
      title: finer ? `Latest deployment: ${finer}` : null,
      dataset: { testid: 'deploy-badge', status, detail: finer || 'none' },
    },
    step ? `${label} · ${step}` : label,
  );
}

// The latest run's outcome when it did not succeed: a rejected diff or a failed deploy must
// show even after the stream that reported it is gone.
const RUN_OUTCOMES = { failed: 'Last run failed', cancelled: 'Last run cancelled', interrupted: 'Last run interrupted' };

function runOutcome(appId, app) {
  const run = app?.latestRun;
  if (state.running.has(appId) || !run || !RUN_OUTCOMES[run.status]) return null;
  return h(
    'span.badge.failed',
    {
      title: run.errorCode ? `${RUN_OUTCOMES[run.status]}: ${run.errorCode}` : RUN_OUTCOMES[run.status],
      dataset: { testid: 'run-outcome', status: run.status, code: run.errorCode || '' },
    },
    RUN_OUTCOMES[run.status],
  );
}

function renderAppList() {
  const list = $('app-list');
  if (!state.apps.length) {
    mount(list, h('div.state.empty', { dataset: { testid: 'apps-empty' } }, 'No apps yet — describe one below.'));
  } else {
    mount(
      list,
      state.apps.map((app) => {
        const info = state.appInfo.get(app.id) || app;
        const current = state.current.appId === app.id;
        return h(
          'a.app-item',
          {
            href: `#/apps/${app.id}`,
            class: current ? 'active' : '',
            'aria-current': current ? 'page' : null,
            dataset: { testid: 'app-item', appId: app.id },
            title: info.name || '',
          },
          h('span.app-name', null, appTitle(info)),
          h(
            'span.app-meta',
            null,
            statusBadge(app.id, info),
            runOutcome(app.id, info),
            info.version ? h('span', null, `v${info.version}`) : null,
            h('span', null, relativeTime(info.updatedAt || info.createdAt)),
          ),
        );
      }),
    );
  }
  const pager = $('pager');
  pager.hidden = state.totalPages <= 1;
  mount(
    pager,
    h('button.btn.small.ghost', { type: 'button', disabled: state.page <= 1, dataset: { testid: 'page-prev' }, onclick: () => loadApps(state.page - 1) }, '‹ Newer'),
    h('span.muted.small', { dataset: { testid: 'page-info' } }, `Page ${state.page} of ${state.totalPages}`),
    h('button.btn.small.ghost', { type: 'button', disabled: state.page >= state.totalPages, dataset: { testid: 'page-next' }, onclick: () => loadApps(state.page + 1) }, 'Older ›'),
  );
}

// ---- routing ------------------------------------------------------------------------------

function parseHash() {
  const m = location.hash.match(/^#\/apps\/([^/?]+)(\/files)?(?:\?v=(\d+))?/);
  if (!m) return { appId: null, tab: 'chat' };
  return { appId: decodeURIComponent(m[1]), tab: m[2] ? 'files' : 'chat', version: m[3] ? Number(m[3]) : null };
}

function route() {
  if ($('shell').hidden) return;
  closeSidebar();
  const { appId, tab, version } = parseHash();
  state.current = { appId, tab };
  if (!appId) {
    if (!state.newChat) state.newChat = new ChatView(null, chatContext());
    renderMain();
    state.newChat.focus();
  } else {
    if (!state.chats.has(appId)) state.chats.set(appId, new ChatView(appId, chatContext()));
    renderMain();
    const chat = state.chats.get(appId);
    if (tab === 'chat') {
      chat.load();
      chat.focus();
    } else {
      filesView(appId).show(version ?? null);
    }
    refreshApp(appId);
  }
  renderAppList();
}

function filesView(appId) {
  if (!state.files.has(appId)) {
    state.files.set(appId, new FilesView(appId, { latestVersion: state.appInfo.get(appId)?.version || 0 }));
  }
  return state.files.get(appId);
}

/** Fetches the app and its deployment, then refreshes the header and list. */
async function refreshApp(appId) {
  const [app, deployment] = await Promise.allSettled([api.getApp(appId), api.getDeployment(appId)]);
  if (app.status === 'fulfilled' && app.value) {
    mergeApp(appId, app.value);
    state.files.get(appId)?.setLatestVersion(app.value.version);
  } else if (app.status === 'rejected' && app.reason?.status === 404 && state.current.appId === appId) {
    state.appInfo.set(appId, { ...(state.appInfo.get(appId) || {}), missing: true });
  }
  if (deployment.status === 'fulfilled') state.deployments.set(appId, deployment.value);
  if (state.current.appId === appId) renderHeader();
  renderAppList();
}

function renderMain() {
  const main = $('main');
  const { appId, tab } = state.current;
  if (!appId) {
    mount(
      main,
      h(
        'div.app-header',
        { dataset: { testid: 'app-header' } },
        h('div.title-row', null, h('h1', { dataset: { testid: 'app-title' } }, 'New app')),
      ),
      h('div.pane', null, state.newChat.el),
    );
    state.newChat.shown();
    return;
  }
  const chat = state.chats.get(appId);
  const pane = h('div.pane', null, tab === 'files' ? filesView(appId).el : chat.el);
  mount(main, h('div.app-header', { id: 'app-header', dataset: { testid: 'app-header' } }), pane);
  renderHeader();
  if (tab === 'chat') chat.shown();
}

function renderHeader() {
  const header = $('app-header');
  const { appId, tab } = state.current;
  if (!header || !appId) return;
  const app = state.appInfo.get(appId) || {};
  const deployment = state.deployments.get(appId);
  const previewUrl = safeUrl(deployment?.url) || safeUrl(app.appUrl);
  const repoUrl = safeUrl(app.repositoryUrl);
  if (app.missing) {
    mount(header, h('div.title-row', null, h('h1', null, 'App not found')), h('p.muted', null, 'It may have been deleted.'));
    return;
  }
  const meta = [];
  if (app.version) meta.push(`v${app.version}`);
  if (app.updatedAt) meta.push(`updated ${relativeTime(app.updatedAt)}`);
  if (app.techStack) meta.push(app.techStack);
  mount(
    header,
    h(
      'div.title-row',
      null,
      h('h1', { dataset: { testid: 'app-title' }, title: app.name || '' }, app.name || app.appName ? appTitle(app) : 'Loading…'),
      statusBadge(appId, app),
      h('span.muted.small', null, meta.join(' · ')),
      h('span.spacer'),
      previewUrl
        ? h('a.btn.primary.small', { href: previewUrl, target: '_blank', rel: 'noopener', dataset: { testid: 'header-preview' } }, 'Open preview ↗')
        : null,
      repoUrl
        ? h('a.btn.small', { href: repoUrl, target: '_blank', rel: 'noopener', dataset: { testid: 'repo-link-header' } }, 'Repository')
        : null,
      h('button.btn.small.ghost.danger-text', { type: 'button', dataset: { testid: 'delete-app' }, onclick: () => removeApp(appId) }, 'Delete'),
    ),
    // The gateway's own sentence, e.g. "Deployment failed: no index.html …".
    deployment?.type === 'ERROR' && (deployment.message || deployment.error)
      ? h('div.notice.error', { role: 'alert' }, deployment.message || `Last deployment failed: ${deployment.error}`)
      : null,
    deploymentLog(appId, deployment)?.el,
    h(
      'nav.tabs',
      { role: 'tablist' },
      h('a.tab', { href: `#/apps/${appId}`, role: 'tab', 'aria-selected': String(tab === 'chat'), class: tab === 'chat' ? 'active' : '', dataset: { testid: 'tab-chat' } }, 'Chat'),
      h('a.tab', { href: `#/apps/${appId}/files`, role: 'tab', 'aria-selected': String(tab === 'files'), class: tab === 'files' ? 'active' : '', dataset: { testid: 'tab-files' } }, 'Files'),
    ),
  );
}

/** The log view of the app's latest deployment, kept while that deployment is the latest. */
function deploymentLog(appId, deployment) {
  const current = state.deployLogs.get(appId);
  if (!deployment?.id) return null;
  if (current?.deploymentId === deployment.id && current.el.dataset.status !== 'unavailable') return current;
  current?.close();
  const view = new DeploymentLogView(deployment.id);
  state.deployLogs.set(appId, view);
  return view;
}

async function removeApp(appId) {
  const app = state.appInfo.get(appId);
  if (!confirm(`Delete "${appTitle(app)}"? Its files, repository and preview go away too.`)) return;
  try {
    await api.deleteApp(appId);
  } catch (e) {
    if (e.status !== 404) {
      toast(`Could not delete the app: ${e.message}`, 'error');
      return;
    }
  }
  state.chats.get(appId)?.close();
  state.chats.delete(appId);
  state.files.delete(appId);
  state.appInfo.delete(appId);
  toast('App deleted.');
  location.hash = '#/new';
  loadApps(state.page);
}

// ---- chat context -------------------------------------------------------------------------

function chatContext() {
  return {
    limits: () => state.limit,
    testSettings: () => state.testSettings,
    hasApps: () => state.total > 0,
    onAppCreated(appId, view) {
      if (state.newChat === view) state.newChat = null;
      state.chats.set(appId, view);
      const now = new Date().toISOString();
      mergeApp(appId, { id: appId, name: view.firstMessage || '', createdAt: now, updatedAt: now });
      if (state.current.appId === null && view.el.isConnected) {
        state.current = { appId, tab: 'chat' };
        history.replaceState(null, '', `#/apps/${appId}`);
        renderMain();
      }
      loadApps(1);
      refreshApp(appId);
    },
    onAppChanged(appId, info) {
      mergeApp(appId, info);
      if (info.version) state.files.get(appId)?.setLatestVersion(info.version);
      const known = state.deployments.get(appId);
      if (info.deploymentId && known?.id !== info.deploymentId) {
        state.deployments.set(appId, { id: info.deploymentId, status: 'queued', type: 'DEPLOYMENT_IN_PROGRESS' });
      }
      if (info.deployStatus === 'deployed' && info.appUrl) {
        state.deployments.set(appId, { ...(state.deployments.get(appId) || {}), status: 'healthy', type: 'HEALTHY', url: info.appUrl });
      }
      if (state.current.appId === appId) renderHeader();
      renderAppList();
    },
    onRunState(appId, running) {
      const had = state.running.has(appId);
      if (running) state.running.add(appId);
      else state.running.delete(appId);
      if (had !== running) {
        renderAppList();
        if (state.current.appId === appId) renderHeader();
      }
    },
    onRunFinished(appId) {
      refreshApp(appId);
      loadApps(state.page);
      api.getMessageLimit().catch(() => {});
    },
    openFiles(appId, version) {
      location.hash = `#/apps/${appId}/files${version ? `?v=${version}` : ''}`;
    },
  };
}

// ---- small screens ------------------------------------------------------------------------

function closeSidebar() {
  document.body.classList.remove('sidebar-open');
  $('scrim').hidden = true;
  $('menu-toggle').setAttribute('aria-expanded', 'false');
}

function bindShell() {
  $('menu-toggle').addEventListener('click', () => {
    const open = !document.body.classList.contains('sidebar-open');
    document.body.classList.toggle('sidebar-open', open);
    $('scrim').hidden = !open;
    $('menu-toggle').setAttribute('aria-expanded', String(open));
  });
  $('scrim').addEventListener('click', closeSidebar);
  $('new-app').addEventListener('click', (e) => {
    // Already on "new app": start over with an empty one if the current draft was sent.
    if (!parseHash().appId) {
      e.preventDefault();
      if (state.newChat?.running || state.newChat?.appId) state.newChat = null;
      route();
    }
  });
  window.addEventListener('hashchange', route);
  api.on('limit', (limit) => {
    state.limit = limit;
    renderLimit();
  });
  // Relative times go stale; refresh them now and then.
  setInterval(() => {
    if (!$('shell').hidden && state.appsLoaded) renderAppList();
  }, 60_000);
}

// ---- test hooks ---------------------------------------------------------------------------

function currentChat() {
  const { appId } = state.current;
  return appId ? state.chats.get(appId) : state.newChat;
}

window.__agentgateTest = {
  /** Breaks the current run's stream as a network failure would; the page must resume. */
  dropStream: () => Boolean(currentChat()?.connection?.drop()),
  /** Extra `settings` sent with the next POST /message (e.g. {demo:{eventDelayMs: 500}}). */
  setSettings: (settings) => {
    state.testSettings = settings || undefined;
  },
  currentAppId: () => state.current.appId,
  currentRunId: () => currentChat()?.runId || null,
  seqs: (runId) => currentChat()?.seqs(runId) || [],
  isRunning: () => Boolean(currentChat()?.running),
};

// ---- start --------------------------------------------------------------------------------

bindSignIn();
bindShell();
if (api.getToken()) {
  api
    .getMessageLimit()
    .then(startShell)
    .catch((e) => {
      if (e.status === 401) return; // the unauthorized handler shows the sign-in screen
      // The server is unreachable or failing: show the shell anyway, with its error states.
      startShell();
      toast(`The server did not answer: ${e.message}`, 'error');
    });
} else {
  showSignIn();
}
