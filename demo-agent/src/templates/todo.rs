//! Todo list: add, toggle, delete, filter, clear completed; persisted.

use super::Template;

pub static TEMPLATE: Template = Template {
    body: BODY,
    script: SCRIPT,
    style: STYLE,
    summary: "A todo list: add tasks, tick them off, filter them and clear the finished ones. Tasks are saved in your browser (localStorage).",
    features: &[
        "Add tasks with the form (Enter works too)",
        "Tick a task to mark it done, ✕ to delete it",
        "Filter: All / Active / Completed, and \"Clear completed\"",
        "Tasks survive a reload (localStorage)",
    ],
};

const BODY: &str = r##"    <form id="todo-form" class="row" autocomplete="off">
      <input id="todo-input" type="text" placeholder="What needs to be done?" aria-label="New task" maxlength="200">
      <button type="submit">Add</button>
    </form>
    <nav class="filters" aria-label="Filter tasks">
      <button type="button" data-filter="all" class="active">All</button>
      <button type="button" data-filter="active">Active</button>
      <button type="button" data-filter="completed">Completed</button>
    </nav>
    <ul id="todo-list" class="list"></ul>
    <p class="status">
      <span id="todo-count">0 items left</span>
      <button id="clear-completed" type="button" class="link">Clear completed</button>
    </p>
"##;

const SCRIPT: &str = r##"// Todo list: add, toggle, delete and filter tasks; saved in localStorage.
(() => {
  'use strict';
  const KEY = '__STORE__:todos';
  const form = document.getElementById('todo-form');
  const input = document.getElementById('todo-input');
  const list = document.getElementById('todo-list');
  const count = document.getElementById('todo-count');
  const clearDone = document.getElementById('clear-completed');
  const filterButtons = document.querySelectorAll('[data-filter]');
  let filter = 'all';
  let todos = load();

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
      localStorage.setItem(KEY, JSON.stringify(todos));
    } catch (e) {
      // Storage may be unavailable (private mode); the list still works.
    }
  }

  function visible(todo) {
    if (filter === 'active') return !todo.done;
    if (filter === 'completed') return todo.done;
    return true;
  }

  function render() {
    list.textContent = '';
    todos.filter(visible).forEach((todo) => {
      const li = document.createElement('li');
      li.className = todo.done ? 'item done' : 'item';
      li.dataset.id = todo.id;
      const label = document.createElement('label');
      const box = document.createElement('input');
      box.type = 'checkbox';
      box.checked = todo.done;
      box.addEventListener('change', () => update(todos.map((t) => (t.id === todo.id ? { ...t, done: !t.done } : t))));
      const text = document.createElement('span');
      text.textContent = todo.text;
      label.append(box, text);
      const del = document.createElement('button');
      del.type = 'button';
      del.className = 'delete';
      del.textContent = '✕';
      del.setAttribute('aria-label', 'Delete ' + todo.text);
      del.addEventListener('click', () => update(todos.filter((t) => t.id !== todo.id)));
      li.append(label, del);
      list.append(li);
    });
    const left = todos.filter((t) => !t.done).length;
    count.textContent = left + (left === 1 ? ' item left' : ' items left');
    filterButtons.forEach((b) => b.classList.toggle('active', b.dataset.filter === filter));
  }

  function update(next) {
    todos = next;
    save();
    render();
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text) return;
    update([...todos, { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), text, done: false }]);
    input.value = '';
    input.focus();
  });

  filterButtons.forEach((button) => {
    button.addEventListener('click', () => {
      filter = button.dataset.filter;
      render();
    });
  });

  clearDone.addEventListener('click', () => update(todos.filter((t) => !t.done)));

  render();
})();
"##;

const STYLE: &str = r##"/* Todo list */
.filters {
  display: flex;
  gap: 0.5rem;
  margin: 1rem 0;
}

.filters button.active {
  background: var(--accent);
  color: var(--accent-text);
}

.item label {
  display: flex;
  align-items: center;
  gap: 0.6rem;
  flex: 1;
  cursor: pointer;
}

.item.done span {
  text-decoration: line-through;
  color: var(--muted);
}

.status {
  display: flex;
  justify-content: space-between;
  color: var(--muted);
}
"##;
