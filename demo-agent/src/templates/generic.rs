//! Fallback: a landing section quoting the request plus a simple list.

use super::Template;

pub static TEMPLATE: Template = Template {
    body: BODY,
    script: SCRIPT,
    style: STYLE,
    summary: "A small landing page with a simple interactive list. List items are saved in your browser (localStorage).",
    features: &[
        "Landing section describing the idea",
        "Add items to the list and remove them again",
        "Items survive a reload (localStorage)",
    ],
};

const BODY: &str = r##"    <section class="hero">
      <p class="tagline">Built from the idea: “__PROMPT__”</p>
      <a class="cta" href="#list-section">Get started</a>
    </section>
    <section id="list-section" class="card">
      <h2>Your list</h2>
      <form id="item-form" class="row" autocomplete="off">
        <input id="item-input" type="text" placeholder="Add an item" aria-label="New item" maxlength="200">
        <button type="submit">Add</button>
      </form>
      <ul id="item-list" class="list"></ul>
      <p id="item-empty" class="muted">Nothing here yet — add the first item.</p>
    </section>
"##;

const SCRIPT: &str = r##"// Simple list: add and remove items; saved in localStorage.
(() => {
  'use strict';
  const KEY = '__STORE__:items';
  const form = document.getElementById('item-form');
  const input = document.getElementById('item-input');
  const list = document.getElementById('item-list');
  const empty = document.getElementById('item-empty');
  let items = load();

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
      localStorage.setItem(KEY, JSON.stringify(items));
    } catch (e) {
      // Storage may be unavailable (private mode); the list still works.
    }
  }

  function render() {
    list.textContent = '';
    items.forEach((item, index) => {
      const li = document.createElement('li');
      li.className = 'item';
      const text = document.createElement('span');
      text.textContent = item;
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'delete';
      del.textContent = '✕';
      del.setAttribute('aria-label', 'Remove ' + item);
      del.addEventListener('click', () => {
        items = items.filter((_, i) => i !== index);
        save();
        render();
      });
      li.append(text, del);
      list.append(li);
    });
    empty.hidden = items.length > 0;
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (!value) return;
    items = [...items, value];
    save();
    input.value = '';
    render();
  });

  render();
})();
"##;

const STYLE: &str = r##"/* Landing section and list */
.hero {
  padding: 2rem 1.5rem;
  margin-bottom: 1.5rem;
  text-align: center;
  background: var(--surface);
  border: 1px solid var(--border);
  border-radius: 0.75rem;
}

.tagline {
  font-size: 1.2rem;
  margin: 0 0 1.25rem;
}

.cta {
  display: inline-block;
  padding: 0.6rem 1.2rem;
  border-radius: 999px;
  background: var(--accent);
  color: var(--accent-text);
  text-decoration: none;
}

.card h2 {
  margin-top: 0;
}
"##;
