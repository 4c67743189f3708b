// The Files tab: the file tree of one version, a read-only code view, downloads, older versions,
// and the Changes view (versions.js): what each version changed, as a diff.

import { getReadUrl } from './api.js';
import { formatBytes, h, mount, safeUrl } from './dom.js';
import { VersionsView } from './versions.js';

const IMAGE_EXT = /\.(png|jpe?g|gif|webp|svg|ico|avif|bmp)$/i;
const BINARY_EXT = /\.(woff2?|ttf|otf|eot|zip|gz|tgz|tar|pdf|wasm|mp[34]|webm|ogg|wav|exe|dll|so|bin|jar)$/i;
const MAX_VIEW_BYTES = 2 * 1024 * 1024;

/** Builds {dirs: Map(name → node), files: [entry]} from flat paths. */
function buildTree(files) {
  const root = { dirs: new Map(), files: [] };
  for (const file of files) {
    const parts = file.path.split('/');
    let node = root;
    for (const dir of parts.slice(0, -1)) {
      if (!node.dirs.has(dir)) node.dirs.set(dir, { dirs: new Map(), files: [] });
      node = node.dirs.get(dir);
    }
    node.files.push({ ...file, name: parts[parts.length - 1] });
  }
  return root;
}

/** Puts index.html and README first, then the rest alphabetically. */
function fileOrder(a, b) {
  const rank = (n) => (/^index\.html?$/i.test(n) ? 0 : /^readme/i.test(n) ? 1 : 2);
  return rank(a.name) - rank(b.name) || a.name.localeCompare(b.name);
}

export class FilesView {
  constructor(appId, { latestVersion = 0 } = {}) {
    this.appId = appId;
    this.latestVersion = latestVersion;
    this.version = null; // null = latest
    this.listing = null;
    this.selected = null;
    this.contentCache = new Map();
    this.loadToken = 0;

    this.versionSelect = h('select.version-select', {
      dataset: { testid: 'version-select' },
      'aria-label': 'Version',
      onchange: () => this.show(this.versionSelect.value ? Number(this.versionSelect.value) : null),
    });
    this.archiveLink = h(
      'a.btn.small',
      { dataset: { testid: 'download-archive' }, hidden: true, download: '' },
      '⬇ Download all (.tar.gz)',
    );
    this.tree = h('nav.file-tree', { dataset: { testid: 'file-tree' }, 'aria-label': 'Files' });
    this.viewer = h('div.viewer', { dataset: { testid: 'viewer' } });
    this.body = h('div.files-body', null, this.tree, this.viewer);
    this.changes = new VersionsView(appId);
    this.changes.el.hidden = true;
    this.changesStale = true;
    this.mode = 'tree';
    const modeButton = (mode, label) =>
      h(
        'button.btn.small.mode-button',
        {
          type: 'button',
          class: mode === this.mode ? 'active' : '',
          'aria-pressed': String(mode === this.mode),
          dataset: { testid: `files-mode-${mode}`, mode },
          onclick: () => this.setMode(mode),
        },
        label,
      );
    this.modeButtons = h('div.mode-buttons', { role: 'group', 'aria-label': 'Show' }, modeButton('tree', 'Files'), modeButton('changes', 'Changes'));
    this.el = h(
      'div.files',
      { dataset: { testid: 'files' } },
      h(
        'div.files-toolbar',
        null,
        this.modeButtons,
        h('label.version-label', null, 'Version ', this.versionSelect),
        h('span.files-summary', { dataset: { testid: 'files-summary' } }),
        h('span.spacer'),
        this.archiveLink,
      ),
      this.body,
      this.changes.el,
    );
    this.fillVersions();
  }

  /** 'tree': one version's files; 'changes': the versions and what each changed. */
  setMode(mode) {
    this.mode = mode;
    for (const button of this.modeButtons.querySelectorAll('.mode-button')) {
      button.classList.toggle('active', button.dataset.mode === mode);
      button.setAttribute('aria-pressed', String(button.dataset.mode === mode));
    }
    const changes = mode === 'changes';
    this.body.hidden = changes;
    this.changes.el.hidden = !changes;
    for (const el of this.el.querySelectorAll('.version-label, .files-summary, [data-testid="download-archive"]')) {
      el.classList.toggle('mode-hidden', changes);
    }
    if (changes && this.changesStale) {
      this.changesStale = false;
      this.changes.load();
    }
  }

  /** The app got a new version (or we learned how many there are). */
  setLatestVersion(n) {
    if (!n || n === this.latestVersion) return;
    const following = this.version === null;
    this.latestVersion = n;
    this.fillVersions();
    // A new version is shown at once when the list is open; otherwise the next opening reloads.
    if (this.mode === 'changes') this.changes.load(null);
    else this.changesStale = true;
    if (following && this.listing) this.show(null, true);
  }

  fillVersions() {
    const options = [h('option', { value: '' }, this.latestVersion ? `Latest (v${this.latestVersion})` : 'Latest')];
    for (let v = this.latestVersion - 1; v >= 1; v--) options.push(h('option', { value: v }, `v${v}`));
    mount(this.versionSelect, options);
    this.versionSelect.value = this.version ? String(this.version) : '';
    this.versionSelect.disabled = this.latestVersion <= 1;
  }

  /** Loads the listing of a version (null = latest) unless it is already shown. */
  async show(version = this.version, force = false) {
    const fresh = this.listing && this.listing.expiresAt && Date.parse(this.listing.expiresAt) - Date.now() > 30_000;
    if (!force && fresh && version === this.version) return;
    this.version = version;
    this.versionSelect.value = version ? String(version) : '';
    const token = ++this.loadToken;
    mount(this.tree, h('div.state.loading', null, h('span.spinner'), 'Loading files…'));
    if (!this.selected) mount(this.viewer);
    let listing;
    try {
      listing = await getReadUrl(this.appId, version);
    } catch (e) {
      if (token !== this.loadToken) return;
      this.listing = null;
      this.archiveLink.hidden = true;
      mount(this.viewer);
      if (e.status === 404 && !version) {
        mount(this.tree, h('div.state.empty', { dataset: { testid: 'files-empty' } }, 'No files yet — they appear after the first run saves a version.'));
      } else if (e.status === 409) {
        mount(
          this.tree,
          h('div.state', { dataset: { testid: 'files-pending' } }, h('span.spinner'), 'This version is still being saved…'),
        );
        setTimeout(() => token === this.loadToken && this.show(version, true), 2000);
      } else {
        mount(
          this.tree,
          h(
            'div.state.error',
            { role: 'alert' },
            `Could not list the files: ${e.message}`,
            h('button.btn.small', { type: 'button', onclick: () => this.show(version, true) }, 'Try again'),
          ),
        );
      }
      return;
    }
    if (token !== this.loadToken) return;
    this.listing = listing;
    if (!version && listing.version > this.latestVersion) {
      this.latestVersion = listing.version;
      this.fillVersions();
    }
    this.archiveLink.href = safeUrl(listing.readUrl) || '#';
    this.archiveLink.setAttribute('download', `${this.appId}-v${listing.version}.tar.gz`);
    this.archiveLink.hidden = false;
    const total = listing.files.reduce((n, f) => n + (f.size || 0), 0);
    this.el.querySelector('.files-summary').textContent =
      `v${listing.version} · ${listing.files.length} file${listing.files.length === 1 ? '' : 's'} · ${formatBytes(total)}`;
    this.renderTree();
    const keep = this.selected && listing.files.find((f) => f.path === this.selected);
    const initial = keep || listing.files.find((f) => /^index\.html?$/i.test(f.path)) || listing.files[0];
    if (initial) this.open(initial.path);
    else mount(this.viewer, h('div.state.empty', null, 'This version has no files.'));
  }

  renderTree() {
    const tree = buildTree(this.listing.files);
    const renderNode = (node, prefix) => {
      const items = [];
      for (const [name, child] of [...node.dirs.entries()].sort((a, b) => a[0].localeCompare(b[0]))) {
        const path = prefix + name;
        items.push(
          h(
            'li.dir',
            null,
            h('details', { open: true }, h('summary', { dataset: { testid: 'dir-item', path } }, `📁 ${name}`), renderNode(child, `${path}/`)),
          ),
        );
      }
      for (const file of node.files.sort(fileOrder)) {
        items.push(
          h(
            'li',
            null,
            h(
              'button.file-item',
              {
                type: 'button',
                title: `${file.path} (${formatBytes(file.size)})`,
                dataset: { testid: 'file-item', path: file.path, sha256: file.sha256 },
                onclick: () => this.open(file.path),
              },
              h('span.file-name', null, file.name),
              h('span.file-size', null, formatBytes(file.size)),
            ),
          ),
        );
      }
      return h('ul', null, items);
    };
    mount(this.tree, renderNode(tree, ''));
  }

  async open(path) {
    const file = this.listing?.files.find((f) => f.path === path);
    if (!file) return;
    this.selected = path;
    for (const el of this.tree.querySelectorAll('.file-item')) {
      el.classList.toggle('active', el.dataset.path === path);
      if (el.dataset.path === path) el.setAttribute('aria-current', 'true');
      else el.removeAttribute('aria-current');
    }
    const header = h(
      'div.viewer-head',
      null,
      h('span.viewer-path', { dataset: { testid: 'viewer-path' } }, file.path),
      h('span.file-size', null, formatBytes(file.size)),
      h('span.spacer'),
      h(
        'a.btn.small',
        { href: safeUrl(file.url), download: file.name || path.split('/').pop(), dataset: { testid: 'download-file', path } },
        '⬇ Download',
      ),
    );
    if (IMAGE_EXT.test(path)) {
      mount(this.viewer, header, h('div.image-view', null, h('img', { src: safeUrl(file.url), alt: path })));
      return;
    }
    if (BINARY_EXT.test(path) || file.size > MAX_VIEW_BYTES) {
      mount(this.viewer, header, h('div.state', null, 'This file cannot be shown here — download it instead.'));
      return;
    }
    mount(this.viewer, header, h('div.state.loading', null, h('span.spinner'), 'Loading…'));
    let text = this.contentCache.get(file.sha256);
    if (text === undefined) {
      try {
        if (!safeUrl(file.url)) throw new Error('the link is not a web address');
        const res = await fetch(file.url, { cache: 'force-cache' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        const bytes = new Uint8Array(await res.arrayBuffer());
        text = bytes.subarray(0, 8000).includes(0) ? null : new TextDecoder().decode(bytes);
        this.contentCache.set(file.sha256, text);
      } catch (e) {
        if (this.selected !== path) return;
        mount(
          this.viewer,
          header,
          h(
            'div.state.error',
            { role: 'alert' },
            `Could not load the file (${e.message}). The link may have expired.`,
            h('button.btn.small', { type: 'button', onclick: () => this.show(this.version, true) }, 'Reload'),
          ),
        );
        return;
      }
    }
    if (this.selected !== path) return;
    if (text === null) {
      mount(this.viewer, header, h('div.state', null, 'Binary file — download it to open it.'));
      return;
    }
    mount(this.viewer, header, codeView(text, path));
  }
}

/** Monospace lines with line numbers that are not part of the selected text. */
function codeView(text, path) {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  if (lines.length > 1 && lines[lines.length - 1] === '') lines.pop();
  const code = h('code');
  const frag = document.createDocumentFragment();
  for (const line of lines) frag.append(h('span.line', null, line));
  code.append(frag);
  const pre = h('pre.code-view', { dataset: { testid: 'code-view', path, lines: lines.length }, tabindex: 0 }, code);
  pre.style.setProperty('--gutter', `${String(lines.length).length + 1}ch`);
  return pre;
}
