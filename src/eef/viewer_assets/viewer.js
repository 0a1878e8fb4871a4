// The trajectory viewer of a run: eef.viewer writes it beside the run's data and describes the data.
// Run text reaches the page only as text nodes (el() below), never as HTML.
"use strict";

const PAGE_ROWS = 100; // list rows per page: the DOM holds one page, however many tasks match
const NOUN = { test: "test tasks", train: "training tasks" };

const loaded = {}; // data file name -> its value (each data file hands it to EEF_VIEWER.chunk)
const loading = {}; // data file name -> the promise of its value
window.EEF_VIEWER = {
  chunk(name, value) {
    loaded[name] = value;
  },
};

// Data files are scripts: browsers refuse fetch() on file:// pages but run the scripts they name.
function load(name) {
  if (!loading[name]) {
    loading[name] = new Promise((resolve, reject) => {
      const file = "data/" + name + ".js";
      const script = document.createElement("script");
      script.src = file;
      script.onload = () => (name in loaded ? resolve(loaded[name]) : reject(new Error(file + " holds no data")));
      script.onerror = () => {
        delete loading[name]; // another visit tries again
        reject(new Error("cannot load " + file + "; if the run was reported again, reload the page"));
      };
      document.head.append(script);
    });
  }
  return loading[name];
}

// An element with properties set and children appended; strings become text nodes.
function el(tag, props, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  const present = children.flat().filter((child) => child !== null && child !== undefined && child !== false);
  node.append(...present.map((child) => (child instanceof Node ? child : String(child))));
  return node;
}

function fail(error) {
  console.error(error);
  document.getElementById("app").replaceChildren(el("p", { className: "error" }, String(error.message || error)));
}

// -- lists ------------------------------------------------------------------------------------

// Filter choices: a name and a test of a list cell (null where the column has nothing for the task).
const OUTCOMES = [
  ["any", () => true],
  ["won", (c) => c !== null && c.won],
  ["lost", (c) => c !== null && !c.won],
  ["not evaluated", (c) => c === null],
];
const TRAINING = [
  ["any", () => true],
  ["solved", (c) => c !== null && c.solved === true],
  ["not solved", (c) => c !== null && c.solved === false],
  ["harmful segment", (c) => c !== null && c.harmful > 0],
  ["beneficial segment", (c) => c !== null && c.beneficial > 0],
  ["recovery state", (c) => c !== null && c.recovery > 0],
  ["no data", (c) => c === null],
];
const EXPERTS = [
  ["any", () => true],
  ["a failure", (outcomes) => outcomes.includes(false)],
  ["a success", (outcomes) => outcomes.includes(true)],
  ["none", (outcomes) => outcomes.length === 0],
];

function outcomeCell(c) {
  if (c === null) return el("td", { className: "none" }, "–");
  return el("td", { className: c.won ? "won" : "lost" }, (c.won ? "✓ " : "✗ ") + c.reward.toFixed(2));
}

function trainingCell(c) {
  if (c === null) return el("td", { className: "none" }, "–");
  const counts = [["B", c.beneficial], ["H", c.harmful], ["R", c.recovery]].filter(([, n]) => n > 0);
  const solved = c.solved === null ? [] : [c.solved ? "solved" : "unsolved"];
  const text = [...solved, ...counts.map(([key, n]) => key + n)].join(" ");
  const title = "B, H: beneficial and harmful segments; R: recovery states";
  return el("td", { className: c.solved ? "won" : "", title }, text || "·");
}

function expertsCell(outcomes) {
  return el("td", {}, outcomes.map((won) => (won ? "✓" : "✗")).join(" ") || "–");
}

// The columns of a list: what each shows and how it filters.
function fields(kind) {
  const columns = INDEX[kind].columns.map((column, i) => ({
    label: column.label,
    best: column.best,
    options: kind === "test" ? OUTCOMES : TRAINING,
    value: (task) => task.cells[i],
    cell: kind === "test" ? outcomeCell : trainingCell,
  }));
  if (kind === "test") return columns;
  return [{ label: "expert", options: EXPERTS, value: (task) => task.experts, cell: expertsCell }, ...columns];
}

function taskLink(kind, id) {
  return el("a", { href: "#" + kind + "/" + encodeURIComponent(id) }, id);
}

function listView(kind) {
  const state = STATE[kind];
  const all = fields(kind);
  const tasks = INDEX[kind].tasks;
  const count = el("p", { className: "count" });
  const rows = el("tbody");
  const pageText = el("span", { className: "page" });
  const previous = el("button", { type: "button", className: "previous" }, "‹ previous");
  const next = el("button", { type: "button", className: "next" }, "next ›");
  const update = () => {
    const matching = tasks.filter(
      (task) => task.id.includes(state.text) && all.every((f, i) => f.options[state.choice[i] || 0][1](f.value(task))),
    );
    const pages = Math.max(1, Math.ceil(matching.length / PAGE_ROWS));
    state.page = Math.min(state.page, pages - 1);
    const shown = matching.slice(state.page * PAGE_ROWS, (state.page + 1) * PAGE_ROWS);
    count.textContent = `${matching.length} of ${tasks.length} ${NOUN[kind]}`;
    rows.replaceChildren(
      ...shown.map((task) => el("tr", {}, el("td", {}, taskLink(kind, task.id)), all.map((f) => f.cell(f.value(task))))),
    );
    pageText.textContent = `page ${state.page + 1} of ${pages}`;
    previous.disabled = state.page === 0;
    next.disabled = state.page === pages - 1;
  };
  const refilter = () => {
    state.page = 0;
    update();
  };
  const text = el("input", { type: "search", value: state.text, placeholder: "task id contains" });
  text.addEventListener("input", () => {
    state.text = text.value;
    refilter();
  });
  const selects = all.map((f, i) => {
    const select = el("select", {}, f.options.map(([name], j) => el("option", { value: String(j) }, name)));
    select.setAttribute("aria-label", f.label);
    select.value = String(state.choice[i] || 0);
    select.addEventListener("change", () => {
      state.choice[i] = Number(select.value);
      refilter();
    });
    return el("label", {}, f.label + " ", select);
  });
  previous.addEventListener("click", () => {
    state.page -= 1;
    update();
  });
  next.addEventListener("click", () => {
    state.page += 1;
    update();
  });
  update();
  const header = el("tr", {}, el("th", {}, "task"), all.map((f) => el("th", {}, f.label + (f.best ? " (best)" : ""))));
  return el(
    "section",
    { className: "list" },
    el("div", { className: "filters" }, el("label", {}, "task id ", text), selects),
    count,
    el("table", { id: "list" }, el("thead", {}, header), rows),
    el("div", { className: "pager" }, previous, pageText, next),
  );
}

// -- trajectories -------------------------------------------------------------------------------

function summary(t) {
  const origin = t.parent === null ? "from s0" : `from s${t.start} of ${t.parent}`;
  const cut = t.terminated ? "" : ", cut short";
  const actions = t.turns.length === 1 ? "1 action" : `${t.turns.length} actions`;
  return `${t.won ? "won" : "lost"}, reward ${t.reward.toFixed(2)}, ${actions}${cut}; ${t.source} ${origin}; ${t.id}`;
}

function stateMark(state, recovery) {
  const outcome = `s${state.step}: the agent ${state.won ? "succeeded" : "failed"} from here`;
  const text = recovery ? outcome + "; a recovery state (after a harmful segment)" : outcome;
  return el("div", { className: recovery ? "state recovery" : "state" }, text);
}

function turnView(t, i, segment, masks) {
  const turn = t.turns[i];
  const replayed = t.parent !== null && i < t.start;
  const mask = turn.trainable ? "trainable" : "masked";
  const classes = ["turn", segment && "seg-" + segment, replayed && "replayed", masks && mask];
  const badges = [
    segment && el("span", { className: "badge seg-" + segment }, segment + " segment"),
    replayed && el("span", { className: "badge" }, "replayed"),
    masks && el("span", { className: "badge " + mask }, turn.trainable ? "trained" : "context only"),
  ];
  return el(
    "div",
    { className: classes.filter(Boolean).join(" ") },
    el("div", { className: "who" }, `action ${i + 1}`, badges),
    el("pre", { className: "act" }, turn.text),
    el("pre", { className: "obs" }, turn.obs),
  );
}

// how.analysis: EEF's labels of the expert trajectory t follows for its first how.upTo turns (its
// segments and simulated states are drawn there); how.masks: show each turn's trainable flag.
function trajectory(t, how = {}) {
  const analysis = how.analysis && !how.analysis.skipped ? how.analysis : null;
  const upTo = analysis ? how.upTo : 0;
  const states = new Map(analysis ? analysis.states.map((s) => [s.step, s]) : []);
  const parts = [
    el("div", { className: "meta" }, summary(t)),
    el("div", { className: "who" }, "first observation"),
    el("pre", { className: "obs" }, t.first),
  ];
  for (let i = 0; i <= t.turns.length; i += 1) {
    if (i < upTo && states.has(i)) parts.push(stateMark(states.get(i), analysis.recovery.includes(i)));
    if (t.parent !== null && i === t.start) {
      parts.push(el("div", { className: "state restored" }, `restored s${i} of ${t.parent}: the agent acts from here`));
    }
    if (i < t.turns.length) parts.push(turnView(t, i, i < upTo ? analysis.segments[i] : null, how.masks));
  }
  return el("div", { className: "trajectory " + (t.won ? "won" : "lost") }, parts);
}

// -- task views -----------------------------------------------------------------------------------

// The evaluations side by side; which are shown is kept across tasks (at first each method's best).
function testTask(detail) {
  const columns = INDEX.test.columns;
  const state = STATE.test;
  if (state.shown === null) state.shown = new Set(columns.flatMap((c, i) => (c.best ? [i] : [])));
  const sides = el("div", { className: "sides" });
  const draw = () => {
    const shown = columns.flatMap((c, i) => (state.shown.has(i) ? [i] : []));
    sides.replaceChildren(
      ...shown.map((i) => {
        const t = detail.evals[i];
        const body = t === null ? el("p", { className: "none" }, "not evaluated") : trajectory(t);
        return el("div", { className: "side" }, el("h3", {}, columns[i].label), body);
      }),
    );
  };
  const chooser = columns.map((c, i) => {
    const box = el("input", { type: "checkbox", checked: state.shown.has(i) });
    box.addEventListener("change", () => {
      if (box.checked) state.shown.add(i);
      else state.shown.delete(i);
      draw();
    });
    return el("label", {}, box, " " + c.label);
  });
  draw();
  return [el("div", { className: "shown" }, "show: ", chooser), sides];
}

function expertNote(e, analysis) {
  const notes = [`teacher ${e.teacher}`, e.role && `role ${e.role}`];
  notes.push(e.cloned ? "in D_e (SFT-POS data, every turn trained)" : "not in D_e");
  if (analysis && analysis.skipped) notes.push("not labelled: one of its states has no rollout (its replay diverged)");
  else if (analysis) {
    const recovery = analysis.recovery.map((k) => "s" + k).join(", ") || "none";
    notes.push(`explored: segments ${analysis.labels.join(", ")}; recovery states: ${recovery}`);
  }
  return el("p", { className: "meta" }, notes.filter(Boolean).join("; "));
}

// EEF's labels of an expert trajectory in the iteration of this method that found a solution.
function labelsOf(detail, method, iteration, expert) {
  const i = INDEX.train.columns.findIndex((c) => c.method === method && c.iteration === iteration);
  const stage = i < 0 ? null : detail.stages[i];
  return stage && expert !== null ? stage.analyses[expert] : undefined;
}

function stageView(detail, column) {
  const stage = column === null ? null : detail.stages[column];
  const analyses = stage ? stage.analyses : {};
  const parts = [el("h3", {}, `Expert trajectories (${detail.experts.length})`)];
  for (const e of detail.experts) {
    parts.push(expertNote(e, analyses[e.id]), trajectory(e, { analysis: analyses[e.id], upTo: e.turns.length }));
  }
  if (stage === null) return parts;
  parts.push(el("h3", {}, `Rollouts (${stage.rollouts.length})`));
  for (const r of stage.rollouts) parts.push(trajectory(r, { analysis: analyses[r.parent], upTo: r.start }));
  if (stage.pairs.length) parts.push(el("h3", {}, `Preference pairs (${stage.pairs.length})`));
  for (const [k, pair] of stage.pairs.entries()) {
    const about = `pair ${k + 1}: ${pair.chosen.source}'s trajectory preferred to ${pair.rejected.source}'s`;
    const sides = ["chosen", "rejected"].map((side) =>
      el("div", { className: "side" }, el("h4", {}, side), trajectory(pair[side], { masks: true })),
    );
    parts.push(el("p", { className: "meta pair" }, about), el("div", { className: "sides" }, sides));
  }
  if (stage.failures.length) {
    parts.push(el("h3", {}, `Failed trajectories trained on, under a prompt that marks them failed (${stage.failures.length})`));
  }
  for (const f of stage.failures) parts.push(trajectory(f, { masks: true }));
  if (stage.solved === null) return parts;
  const { method } = INDEX.train.columns[column];
  parts.push(el("h3", {}, `Solutions in the positive repository (${stage.solutions.length})`));
  for (const s of stage.solutions) {
    const t = s.trajectory;
    const about = `important state ${s.state}: ${s.kind}, found in iteration ${s.iteration}, ${s.actions} actions from it`;
    const how = { analysis: labelsOf(detail, method, s.iteration, t.parent), upTo: t.start, masks: true };
    parts.push(el("p", { className: "meta solution" }, about), trajectory(t, how));
  }
  return parts;
}

// The task's training data for one method and iteration at a time (picked in a menu).
function trainTask(detail) {
  const columns = INDEX.train.columns;
  const state = STATE.train;
  const present = columns.flatMap((c, i) => (detail.stages[i] === null ? [] : [i]));
  const labelling = present.filter((i) => Object.keys(detail.stages[i].analyses).length > 0);
  // at first the last iteration that labelled expert trajectories (EEF's), else the last one
  const first = present.includes(state.stage) ? state.stage : (labelling.length ? labelling : present).at(-1);
  const body = el("div", {}, stageView(detail, first === undefined ? null : first));
  if (first === undefined) return [body];
  const select = el("select", { id: "stage" }, present.map((i) => el("option", { value: String(i) }, columns[i].label)));
  select.value = String(first);
  select.addEventListener("change", () => {
    state.stage = Number(select.value);
    body.replaceChildren(...stageView(detail, state.stage));
  });
  const legend = el(
    "p",
    { className: "legend" },
    el("span", { className: "seg-beneficial" }, "beneficial segment"),
    el("span", { className: "seg-harmful" }, "harmful segment"),
    el("span", { className: "seg-neutral" }, "neutral segment"),
  );
  return [el("label", {}, "method, iteration ", select), legend, body];
}

// -- navigation -----------------------------------------------------------------------------------

let INDEX = null;
const STATE = {
  test: { text: "", choice: {}, page: 0, shown: null },
  train: { text: "", choice: {}, page: 0, stage: null },
};

// #test and #train are the lists, #test/<task> and #train/<task> a task.
function route() {
  const hash = location.hash.slice(1);
  const slash = hash.indexOf("/");
  const kind = (slash < 0 ? hash : hash.slice(0, slash)) === "train" ? "train" : "test";
  for (const k of Object.keys(NOUN)) document.getElementById("tab-" + k).className = k === kind ? "current" : "";
  const app = document.getElementById("app");
  if (slash < 0) {
    app.replaceChildren(listView(kind));
    return;
  }
  const id = decodeURIComponent(hash.slice(slash + 1));
  const entry = INDEX[kind].tasks.find((task) => task.id === id);
  if (!entry) throw new Error(`no task ${id} among the ${NOUN[kind]}`);
  const waiting = el("p", {}, "Loading…");
  const back = el("p", {}, el("a", { href: "#" + kind }, "← " + NOUN[kind]));
  app.replaceChildren(el("section", { className: "task" }, back, el("h2", {}, id), waiting));
  load(entry.chunk)
    .then((chunk) => waiting.replaceWith(...(kind === "test" ? testTask : trainTask)(chunk[id])))
    .catch(fail);
}

function show() {
  try {
    route();
  } catch (error) {
    fail(error);
  }
}

load("index")
  .then((index) => {
    INDEX = index;
    document.title = index.title;
    document.getElementById("title").textContent = index.title;
    for (const kind of Object.keys(NOUN)) {
      document.getElementById("tab-" + kind).textContent = `${NOUN[kind]} (${index[kind].tasks.length})`;
    }
    window.addEventListener("hashchange", show);
    show();
  })
  .catch(fail);
