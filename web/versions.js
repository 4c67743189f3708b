// The Files tab's "Changes" view: the app's versions, newest first, with what each changed, and
// the unified diff of the selected version against its parent.

import { getDiff, getVersions } from './api.js';
import { h, mount, relativeTime } from './dom.js';

// Lines beyond this are left out of the page (the diff itself is already bounded by the server).
const MAX_DIFF_LINES = 20_000;

export class VersionsView {
  constructor(appId) {
    this.appId = appId;
    this.versions = [];
    this.nextCursor = null;
    this.selected = null;
    this.loadToken = 0;
    this.diffToken = 0;

    this.list = h('nav.file-tree.version-list', { dataset: { testid: 'versions-list' }, 'aria-label': 'Versions' });
    this.viewer = h('div.viewer', { dataset: { testid: 'diff-viewer' } });
    this.el = h('div.files-body', { dataset: { testid: 'changes' } }, this.list, this.viewer);
  }

  /** Loads the newest page of versions; selects `keep` if listed, else the newest. */
  async load(keep = this.selected) {
    const token = ++this.loadToken;
    mount(this.list, h('div.state.loading', null, h('span.spinner'), 'Loading versions…'));
    let page;
    try {
      page = await getVersions(this.appId);
    } catch (e) {
      if (token !== this.loadToken) return;
      mount(
        this.list,
        h(
          'div.state.error',
          { role: 'alert' },
          `Could not list the versions: ${e.message}`,
          h('button.btn.small', { type: 'button', onclick: () => this.load(keep) }, 'Try again'),
        ),
      );
      return;
    }
    if (token !== this.loadToken) return;
    this.versions = page.versions;
    this.nextCursor = page.nextCursor;
    this.renderList();
    if (!this.versions.length) {
      mount(this.viewer, h('div.state.empty', { dataset: { testid: 'versions-empty' } }, 'No versions yet — they appear after the first run saves one.'));
      return;
    }
    const initial = this.versions.find((v) => v.version === keep) || this.versions[0];
    this.select(initial.version);
  }

  async loadOlder() {
    if (!this.nextCursor) return;
    const token = this.loadToken;
    try {
      const page = await getVersions(this.appId, this.nextCursor);
      if (token !== this.loadToken) return;
      this.versions.push(...page.versions);
      this.nextCursor = page.nextCursor;
      this.renderList();
    } catch (e) {
      console.error(e);
    }
  }

  renderList() {
    const items = this.versions.map((v) =>
      h(
        'li',
        null,
        h(
          'button.file-item.version-item',
          {
            type: 'button',
            class: v.version === this.selected ? 'active' : '',
            title: v.message || `Version ${v.version}`,
            dataset: { testid: 'version-item', version: v.version },
            onclick: () => this.select(v.version),
          },
          h('span.version-number', null, `v${v.version}`),
          h(
            'span.version-text',
            null,
            h('span.version-message', null, v.message || (v.parentVersion ? 'Changes' : 'First version')),
            h('span.version-meta', null, changeBadges(v.changes), h('span.file-size', null, relativeTime(v.createdAt))),
          ),
        ),
      ),
    );
    const more = this.nextCursor
      ? h('button.btn.small.load-older', { type: 'button', onclick: () => this.loadOlder() }, 'Older versions')
      : null;
    mount(this.list, h('ul', null, items), more);
  }

  /** Shows the diff of `version` against its parent. */
  async select(version) {
    this.selected = version;
    for (const el of this.list.querySelectorAll('.version-item')) {
      const active = Number(el.dataset.version) === version;
      el.classList.toggle('active', active);
      if (active) el.setAttribute('aria-current', 'true');
      else el.removeAttribute('aria-current');
    }
    const info = this.versions.find((v) => v.version === version);
    const from = info?.parentVersion || 0;
    const header = h(
      'div.viewer-head',
      null,
      h('span.viewer-path', { dataset: { testid: 'diff-title' } }, from ? `v${from} → v${version}` : `v${version} (first version)`),
      info ? changeBadges(info.changes) : null,
    );
    const token = ++this.diffToken;
    mount(this.viewer, header, h('div.state.loading', null, h('span.spinner'), 'Loading changes…'));
    let diff;
    try {
      diff = await getDiff(this.appId, version, from);
    } catch (e) {
      if (token !== this.diffToken) return;
      if (e.status === 409) {
        mount(this.viewer, header, h('div.state', { dataset: { testid: 'diff-pending' } }, h('span.spinner'), 'This version is still being saved…'));
        setTimeout(() => token === this.diffToken && this.select(version), 2000);
        return;
      }
      mount(
        this.viewer,
        header,
        h(
          'div.state.error',
          { role: 'alert' },
          `Could not load the changes: ${e.message}`,
          h('button.btn.small', { type: 'button', onclick: () => this.select(version) }, 'Try again'),
        ),
      );
      return;
    }
    if (token !== this.diffToken) return;
    if (!diff.text) {
      mount(this.viewer, header, h('div.state.empty', { dataset: { testid: 'diff-empty' } }, 'No file changed in this version.'));
      return;
    }
    mount(this.viewer, header, diffView(diff.text, from, version, diff.truncated));
  }
}

/** "+2 ~1 −0" for a version's added, modified and deleted files. */
function changeBadges(changes = {}) {
  const badge = (cls, sign, n, what) =>
    h(`span.change-count.${cls}`, { title: `${n} file${n === 1 ? '' : 's'} ${what}` }, `${sign}${n}`);
  return h(
    'span.change-counts',
    { dataset: { testid: 'change-counts' } },
    badge('added', '+', changes.added ?? 0, 'added'),
    badge('modified', '~', changes.modified ?? 0, 'modified'),
    badge('deleted', '−', changes.deleted ?? 0, 'deleted'),
  );
}

/** The class of one diff line: file headers, hunk headers, additions, deletions, notes. */
function lineKind(line, inHunk) {
  if (line.startsWith('diff --git ')) return 'file';
  if (line.startsWith('#')) return 'note';
  if (line.startsWith('@@')) return 'hunk';
  if (inHunk) {
    if (line.startsWith('+')) return 'add';
    if (line.startsWith('-')) return 'del';
    if (line.startsWith('\\')) return 'note';
    if (line.startsWith(' ')) return 'ctx';
  }
  return 'meta';
}

/** The diff as monospace lines, each file starting with its `diff --git` header. */
function diffView(text, from, to, truncated) {
  const lines = text.replace(/\n$/, '').split('\n');
  const code = h('code');
  const frag = document.createDocumentFragment();
  let inHunk = false;
  let files = 0;
  for (const line of lines.slice(0, MAX_DIFF_LINES)) {
    const kind = lineKind(line, inHunk);
    if (kind === 'file') {
      inHunk = false;
      files += 1;
    } else if (kind === 'hunk') {
      inHunk = true;
    }
    frag.append(h(`span.line.${kind}`, kind === 'file' ? { dataset: { testid: 'diff-file' } } : null, line));
  }
  if (lines.length > MAX_DIFF_LINES) {
    frag.append(h('span.line.note', null, `# ${lines.length - MAX_DIFF_LINES} more lines not shown here`));
  }
  code.append(frag);
  return h(
    'pre.code-view.diff-view',
    { dataset: { testid: 'diff-view', from, to, files, truncated: truncated ? 'true' : 'false' }, tabindex: 0 },
    code,
  );
}
