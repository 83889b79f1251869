// The studio's code editor: CodeMirror 6 set up for Manim scenes. The setup
// bundles this module and the packages it imports with esbuild into one
// script, served at /assets/editor.js, which defines the global ManimdEditor
// (the page's CSP allows scripts from our origin only, and nothing inline).
//
// It knows nothing of renders or the page around it: the studio gives it a
// place and callbacks, and asks it for the code or to mark a line. The
// files panel opens one document per text file of a project in it.
import { Annotation, EditorState, Prec, StateEffect, StateField } from "@codemirror/state";
import {
  Decoration, EditorView, WidgetType, drawSelection, highlightActiveLine, highlightActiveLineGutter,
  highlightSpecialChars, keymap, lineNumbers,
} from "@codemirror/view";
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
import { bracketMatching, indentOnInput, indentUnit, syntaxHighlighting, syntaxTree } from "@codemirror/language";
import { python, pythonLanguage } from "@codemirror/lang-python";
import { highlightSelectionMatches, searchKeymap } from "@codemirror/search";
import { autocompletion, closeBrackets, closeBracketsKeymap } from "@codemirror/autocomplete";
import { diagnosticCount, lintGutter, lintKeymap, setDiagnostics, setDiagnosticsEffect } from "@codemirror/lint";
import { classHighlighter } from "@lezer/highlight";
import { StyleModule } from "style-mod";

// CodeMirror's own styles (layout, cursor, gutters) are made at run time by
// style-mod, which puts them in a <style> element when the editor is in a
// document. The page's CSP allows no inline style, so they go into a
// constructed style sheet adopted by the document instead, which the CSP
// does not govern: style-mod does that for a root without a <head> (a shadow
// root), so the document is handed to it as such a root.
const rootsWithoutHead = new WeakMap();
function asRootWithoutHead(doc) {
  if (!rootsWithoutHead.has(doc)) {
    rootsWithoutHead.set(doc, {
      ownerDocument: doc,
      get adoptedStyleSheets() { return doc.adoptedStyleSheets; },
      set adoptedStyleSheets(sheets) { doc.adoptedStyleSheets = sheets; },
    });
  }
  return rootsWithoutHead.get(doc);
}
const mount = StyleModule.mount;
StyleModule.mount = (root, modules, options) => mount(root.head ? asRootWithoutHead(root) : root, modules, options);

// Marks a change the studio made (a generation's code, a reset), as opposed
// to the author's typing: only the author's edits are reported as edits.
const fromStudio = Annotation.define();

// A line shown with a note at its end: the author's error (with its message)
// or the line picked on the timeline. Both go away on the next edit, since
// they describe the code as it was.
const setError = StateEffect.define();
const setPicked = StateEffect.define();

class Note extends WidgetType {
  constructor(text) { super(); this.text = text; }
  eq(other) { return other.text === this.text; }
  toDOM() {
    const span = document.createElement("span");
    span.className = "cm-errorMessage";
    span.textContent = this.text;
    return span;
  }
}

// A field holding one marked line (or none), set by `effect` and drawn with
// `className` on the line and, when there is a message, the message after it.
function markedLine(effect, className) {
  return StateField.define({
    create: () => Decoration.none,
    update(marks, tr) {
      for (const e of tr.effects) if (e.is(effect)) return draw(tr.state, e.value, className);
      return tr.docChanged ? Decoration.none : marks;
    },
    provide: (f) => EditorView.decorations.from(f),
  });
}
function draw(state, mark, className) {
  if (!mark || !(mark.line >= 1 && mark.line <= state.doc.lines)) return Decoration.none;
  const line = state.doc.line(mark.line);
  const ranges = [Decoration.line({ class: className, attributes: { "data-line": String(mark.line) } }).range(line.from)];
  if (mark.message) ranges.push(Decoration.widget({ widget: new Note(mark.message), side: 1 }).range(line.to));
  return Decoration.set(ranges);
}
const errorLine = markedLine(setError, "cm-errorLine");
const pickedLine = markedLine(setPicked, "cm-pickedLine");

// Completion kinds as CodeMirror draws them, by the kind the engine's
// names file gives (scripts/engine-names.py).
const KINDS = { class: "class", function: "function", module: "namespace", value: "constant" };
const ENGINE_LABELS = { manim: "Manim Community", manimgl: "ManimGL" };

// The engine a scene is written for when the studio says "detect": ManimGL
// scenes import manimlib, as the server's own detection reads them.
function detectEngine(text) {
  return /^\s*(?:from|import)\s+manimlib\b/m.test(text) ? "manimgl" : "manim";
}

// Completion of the engine's exported names, after what the author typed,
// outside strings and comments and not after a dot (an attribute).
function engineCompletion(names, engineOf) {
  return (context) => {
    const word = context.matchBefore(/[A-Za-z_]\w*/);
    if (!word && !context.explicit) return null;
    const from = word ? word.from : context.pos;
    if (context.state.sliceDoc(from - 1, from) === ".") return null;
    const node = syntaxTree(context.state).resolveInner(context.pos, -1);
    if (/String|Comment/.test(node.name)) return null;
    const options = names()[engineOf(context.state)];
    return options && options.length ? { from, options, validFor: /^\w*$/ } : null;
  };
}

// Moves the focus to whatever follows the editor in the page's tab order, so
// that Escape leaves the editor for keyboard users (Tab indents inside it).
function leave(view) {
  const focusable = [...document.querySelectorAll("a[href], button, input, select, textarea, video[controls], [tabindex]")]
    .filter((el) => !el.disabled && el.tabIndex >= 0 && el.offsetParent !== null && !view.dom.contains(el));
  // The first control after the editor, or (as Tab wraps) the page's first.
  const next = focusable.find((el) => view.dom.compareDocumentPosition(el) & Node.DOCUMENT_POSITION_FOLLOWING) || focusable[0];
  view.contentDOM.blur();
  if (next) next.focus();
  return true;
}

// Creates an editor in `parent` holding `doc`. Options: onRun() (Ctrl or
// Cmd+Enter), onEdit() (after the author changed the code), onChange()
// (after any change of the text, the studio's own included), engine() (the
// studio's engine choice: "manim", "manimgl" or "" to detect), label (the
// accessible name).
//
// The editor holds one document at a time, and keeps the others a project
// has (each file's text, undo history, selection and marks) while another
// is open: `open(name, text)` switches to a file, creating its document the
// first time.
export function createEditor(parent, { doc = "", onRun = () => {}, onEdit = () => {}, onChange = () => {}, engine = () => "", label = "Code" } = {}) {
  // By engine: the completion options from the installed engines' names.
  let options = {};
  const engineOf = (state) => engine() || detectEngine(state.doc.toString());
  // What every document has; Python files add the language and completion.
  const common = [
    lineNumbers(), highlightActiveLineGutter(), highlightSpecialChars(), history(), drawSelection(),
    indentOnInput(), bracketMatching(), closeBrackets(), highlightActiveLine(), highlightSelectionMatches(),
    indentUnit.of("    "), EditorState.tabSize.of(4), EditorView.darkTheme.of(true),
    // Token classes (tok-keyword, tok-string, ...) coloured by studio.css.
    syntaxHighlighting(classHighlighter),
    autocompletion({ icons: true }),
    lintGutter(), errorLine, pickedLine,
    // The error's diagnostic goes with its mark on the next edit.
    EditorState.transactionExtender.of((tr) =>
      tr.docChanged && diagnosticCount(tr.startState) ? { effects: setDiagnosticsEffect.of([]) } : null),
    // Rendering wins over CodeMirror's own Mod-Enter (a blank line).
    Prec.highest(keymap.of([{ key: "Mod-Enter", run: () => { onRun(); return true; } }])),
    keymap.of([...closeBracketsKeymap, ...defaultKeymap, ...searchKeymap, ...historyKeymap, ...lintKeymap,
      indentWithTab, { key: "Escape", run: leave }]),
    EditorView.updateListener.of((u) => {
      if (!u.docChanged) return;
      onChange();
      if (u.transactions.some((tr) => tr.docChanged && !tr.annotation(fromStudio))) onEdit();
    }),
  ];
  const pythonOnly = [python(), pythonLanguage.data.of({ autocomplete: engineCompletion(() => options, engineOf) })];
  // Each document's accessible name says which file it is.
  const makeState = (text, isPython, name) => EditorState.create({
    doc: text,
    extensions: [...common, ...(isPython ? pythonOnly : []), EditorView.contentAttributes.of({ "aria-label": name ? `${label}: ${name}` : label })],
  });
  const view = new EditorView({ parent, state: makeState(doc, true) });
  // The documents not shown, by name, and the name of the one shown.
  const kept = new Map();
  let shown = null;
  const replace = (from, to, insert) => view.dispatch({ changes: { from, to, insert }, annotations: fromStudio });
  // Clears the error mark and its diagnostic of a kept document.
  const unmark = (state) => state.update({ effects: setError.of(null) }, setDiagnostics(state, [])).state;
  return {
    view,
    // Shows the document `name`, made from `text` (Python when `python`)
    // the first time; the one shown before is kept as it stands.
    open(name, text, { python: isPython = /\.py$/i.test(name) } = {}) {
      if (name === shown) return;
      if (shown !== null) kept.set(shown, view.state);
      view.setState(kept.get(name) || makeState(text, isPython, name));
      kept.delete(name);
      shown = name;
    },
    // The name of the document shown (null before the first open).
    current: () => shown,
    // A file renamed: its document goes with it.
    rename(from, to) {
      if (shown === from) shown = to;
      else if (kept.has(from)) { kept.set(to, kept.get(from)); kept.delete(from); }
    },
    // A file deleted or replaced: its document and history go. The one
    // shown stays on screen until the next open, which does not keep it.
    forget(name) { kept.delete(name); if (shown === name) shown = null; },
    getCode: () => view.state.doc.toString(),
    setCode: (text) => replace(0, view.state.doc.length, text),
    appendCode: (text) => replace(view.state.doc.length, view.state.doc.length, text),
    focus: () => view.focus(),
    // The completion lists: {engine: [[name, kind], ...]}, as served at
    // /assets/engine-names.json.
    setNames(byEngine) {
      options = {};
      for (const [name, list] of Object.entries(byEngine || {})) {
        options[name] = list.map(([label, kind]) => ({ label, type: KINDS[kind] || "variable", detail: ENGINE_LABELS[name] }));
      }
    },
    // Marks the author's error: its line (from 1) with the message at its
    // end and in the gutter, and scrolls to it; null clears it.
    markError(line, message) {
      if (!line) for (const [name, state] of kept) kept.set(name, unmark(state));
      const state = view.state;
      const ok = line >= 1 && line <= state.doc.lines;
      const at = ok ? state.doc.line(line) : null;
      view.dispatch(
        { effects: setError.of(ok ? { line, message } : null), scrollIntoView: false },
        setDiagnostics(view.state, ok ? [{ from: at.from, to: at.to, severity: "error", message }] : []),
      );
      if (ok) view.dispatch({ effects: EditorView.scrollIntoView(at.from, { y: "center" }) });
    },
    // Shows line n (from 1): marked, selected and scrolled to. It takes the
    // focus only when asked, so a phone's keyboard does not pop up.
    showLine(n, focus) {
      const ok = n >= 1 && n <= view.state.doc.lines;
      const at = ok ? view.state.doc.line(n) : null;
      view.dispatch({
        effects: [setPicked.of(ok ? { line: n } : null), ...(ok ? [EditorView.scrollIntoView(at.from, { y: "center" })] : [])],
        ...(ok ? { selection: { anchor: at.from, head: at.to } } : {}),
      });
      if (ok && focus) view.focus();
    },
  };
}
