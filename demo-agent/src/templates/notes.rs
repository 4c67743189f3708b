//! Notes: write, search and delete notes; persisted.

use super::Template;

pub static TEMPLATE: Template = Template {
    body: BODY,
    script: SCRIPT,
    style: STYLE,
    summary: "A notes board: write notes with a title, search them and delete the ones you no longer need. Notes are saved in your browser (localStorage).",
    features: &[
        "Add a note with a title and text",
        "Search across titles and text",
        "Delete notes; newest first",
        "Notes survive a reload (localStorage)",
    ],
};

const BODY: &str = r##"    <form id="note-form" class="stack" autocomplete="off">
      <input id="note-title" type="text" placeholder="Title" aria-label="Note title" maxlength="120">
      <textarea id="note-body" rows="4" placeholder="Write something…" aria-label="Note text"></textarea>
      <button type="submit">Save note</button>
    </form>
    <input id="note-search" type="search" placeholder="Search notes" aria-label="Search notes">
    <ul id="note-list" class="notes"></ul>
    <p id="note-empty" class="muted">No notes yet.</p>
"##;

const SCRIPT: &str = r##"// Notes: add, search and delete notes; saved in localStorage.
(() => {
  'use strict';
  const KEY = '__STORE__:notes';
  const form = document.getElementById('note-form');
  const title = document.getElementById('note-title');
  const body = document.getElementById('note-body');
  const search = document.getElementById('note-search');
  const list = document.getElementById('note-list');
  const empty = document.getElementById('note-empty');
  let notes = load();

  function load() {
    try {
      const parsed = JSON.parse(localStorage.getItem(KEY) || '[]');
      return Array.isArray(parsed) ? parsed : [];
    } catch (e) {
      return [];
    }
  }

  function save() {
    try {
      localStorage.setItem(KEY, JSON.stringify(notes));
    } catch (e) {
      // Storage may be unavailable (private mode); notes last for this visit.
    }
  }

  function render() {
    const query = search.value.trim().toLowerCase();
    const shown = notes.filter((n) => (n.title + ' ' + n.body).toLowerCase().includes(query));
    list.textContent = '';
    shown.forEach((note) => {
      const li = document.createElement('li');
      li.className = 'note';
      const h = document.createElement('h2');
      h.textContent = note.title || 'Untitled';
      const p = document.createElement('p');
      p.textContent = note.body;
      const time = document.createElement('time');
      time.dateTime = new Date(note.created).toISOString();
      time.textContent = new Date(note.created).toLocaleString();
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'delete';
      del.textContent = '✕';
      del.setAttribute('aria-label', 'Delete note');
      del.addEventListener('click', () => {
        notes = notes.filter((n) => n.id !== note.id);
        save();
        render();
      });
      li.append(del, h, p, time);
      list.append(li);
    });
    empty.hidden = shown.length > 0;
    empty.textContent = notes.length ? 'No notes match your search.' : 'No notes yet.';
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    if (!title.value.trim() && !body.value.trim()) return;
    const created = Date.now();
    notes = [{ id: created.toString(36), title: title.value.trim(), body: body.value.trim(), created }, ...notes];
    save();
    form.reset();
    title.focus();
    render();
  });

  search.addEventListener('input', render);
  render();
})();
"##;

const STYLE: &str = r##"/* Notes */
.stack {
  display: flex;
  flex-direction: column;
  gap: 0.5rem;
  margin-bottom: 1rem;
}

#note-search {
  width: 100%;
  margin-bottom: 1rem;
}

.notes {
  list-style: none;
  padding: 0;
  display: grid;
  grid-template-columns: repeat(auto-fill, minmax(14rem, 1fr));
  gap: 0.75rem;
}

.note {
  position: relative;
  padding: 0.75rem 2.25rem 0.75rem 0.75rem;
  background: var(--surface);
  border: 1px solid var(--border);
  border-radius: 0.5rem;
}

.note h2 {
  margin: 0 0 0.25rem;
  font-size: 1.05rem;
}

.note p {
  margin: 0 0 0.5rem;
  white-space: pre-wrap;
}

.note time {
  font-size: 0.8rem;
  color: var(--muted);
}

.note .delete {
  position: absolute;
  top: 0.5rem;
  right: 0.5rem;
}
"##;
