/**
 * `llm_notebook.Chat()`: a chat in a cell. Python side: llm_notebook/widgets/chat.py.
 *
 * Everything shown comes from the kernel: the conversation from a `state` request (answered from
 * the log, so a reload shows the same history), the answer being written from the stream
 * messages (shared/stream.ts). Every message goes through the shared sanitized markdown renderer.
 *
 * Keys: Enter sends, Shift+Enter adds a line, Esc stops the answer (or leaves the search / the
 * edit); in the model list ↑/↓ and Enter. Buttons that act on a message keep the focus where it
 * was after the conversation is redrawn, so a keyboard user does not lose their place.
 */
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import { copyText, renderMarkdownInto, visibleText } from "../shared/markdown";
import { mountView } from "../shared/mount";
import { rpcFor } from "../shared/rpc";
import { streamsFor, type StreamState } from "../shared/stream";
import "../shared/styles.css";
import "./chat/chat.css";
import { downloadText } from "./chat/download";
import { clearMarks, focusMark, markMatches } from "./chat/search";
import { isChatChanged, type ChatModel, type ChatState, type ExportResult, type Turn } from "./chat/types";
import { button, h, insertLineBreak, suppressLabShortcuts, uniqueId } from "./picker/dom";
import "./picker/picker.css";
import { createPicker } from "./picker/view";

function toBase64(bytes: Uint8Array): string {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

/** The error line chat.py sends when the user stopped an answer (not a failure to show). */
const STOPPED = "Stopped.";

interface Live {
  streamId: string;
  prompt: string;
  parentId: number | null;
  text: string;
  done: boolean;
}

const initialize: Initialize<ChatModel> = ({ model }) => {
  // Subscribe before any view exists, so no stream message is missed.
  streamsFor(model as AnyModel);
  rpcFor(model as AnyModel);
};

const render: Render<ChatModel> = ({ model, el }) => mountView(model, el, renderChat);

function renderChat(model: AnyModel<ChatModel>, el: HTMLElement): () => void {
  const anyModel = model as AnyModel;
  const rpc = rpcFor(anyModel);
  const streams = streamsFor(anyModel);
  el.classList.add("llm-nb", "llm-chat");

  let turns: Turn[] = [];
  let live: Live | null = null;
  let banner: string | null = null;
  let loaded = false;
  let pending = 0; // requests that change the conversation, not answered yet
  let editing: number | null = null;
  let refreshSeq = 0;
  let lastState = "";
  let frame = 0;
  let searchMarks: HTMLElement[] = [];
  let searchIndex = 0;

  // -- skeleton -----------------------------------------------------------------------------------

  const title = h("div", { class: "llm-chat-title" });
  const picker = createPicker({
    rpc,
    value: model.get("model"),
    compact: true,
    onChoose: (id) => {
      model.set("model", id);
      model.save_changes();
      announce(`The next message goes to ${id}.`);
    },
  });
  const searchId = uniqueId("llm-chat-search");
  const searchToggle = button("Search", "Search this conversation", "llm-chat-search-toggle", () => toggleSearch());
  searchToggle.setAttribute("aria-expanded", "false");
  searchToggle.setAttribute("aria-controls", searchId);
  const exportMd = button("Export .md", "Export the conversation as markdown", "", () => exportAs("markdown"));
  const exportJson = button("Export .json", "Export the conversation as JSON", "", () => exportAs("json"));
  const header = h("div", { class: "llm-chat-header" },
    title,
    h("div", { class: "llm-chat-model" }, h("span", { class: "llm-muted", text: "Model" }), picker.el),
    h("div", { class: "llm-chat-tools", role: "toolbar", "aria-label": "Conversation tools" }, searchToggle, exportMd, exportJson));

  const searchInput = h("input", { type: "search", role: "searchbox", class: "llm-chat-search-input", "aria-label": "Search this conversation", placeholder: "Search…" });
  suppressLabShortcuts(searchInput);
  const searchCount = h("span", { class: "llm-muted llm-chat-search-count", "aria-live": "polite" });
  const searchPrev = button("↑", "Previous match", "", () => stepSearch(-1));
  const searchNext = button("↓", "Next match", "", () => stepSearch(1));
  const searchClose = button("✕", "Close the search", "", () => toggleSearch(false));
  const searchBar = h("div", { class: "llm-chat-searchbar", id: searchId, role: "search" }, searchInput, searchCount, searchPrev, searchNext, searchClose);
  searchBar.hidden = true;

  const thread = h("div", { class: "llm-chat-thread", role: "log", "aria-label": "Conversation", tabindex: "-1" });
  const bannerEl = h("div", { class: "llm-error llm-chat-banner", role: "alert" });
  bannerEl.hidden = true;

  const input = h("textarea", {
    class: "llm-chat-input",
    rows: "2",
    "aria-label": "Message",
    "aria-keyshortcuts": "Enter Shift+Enter Escape",
    placeholder: "Message… (Enter sends, Shift+Enter adds a line, Esc stops)",
  });
  suppressLabShortcuts(input);
  const sendButton = button("Send", "Send the message (Enter)", "llm-primary llm-chat-send", () => submit());
  const stopButton = button("Stop", "Stop the answer (Esc)", "llm-chat-stop", () => stop());
  // Attach: images and PDFs go with the next message (the kernel checks type and size).
  const filePicker = h("input", { type: "file", multiple: true, accept: "image/png,image/jpeg,image/gif,image/webp,application/pdf", hidden: true });
  const attachButton = button("Attach", "Attach images or PDFs to the next message", "llm-chat-attach", () => filePicker.click());
  const attachedNote = h("span", { class: "llm-muted llm-chat-attached" });
  let attached: { name: string; data: string }[] = [];
  filePicker.addEventListener("change", () => {
    // (the kernel takes at most 20 MB a file: a larger one is not read, let alone sent)
    const files: File[] = [];
    for (const f of Array.from(filePicker.files ?? [])) {
      if (f.size > 20e6) showBanner(`${f.name} is larger than 20 MB: attach a smaller file`);
      else files.push(f);
    }
    filePicker.value = "";
    void Promise.all(files.map(async (f) => ({ name: f.name, data: toBase64(new Uint8Array(await f.arrayBuffer())) }))).then((more) => {
      attached = attached.concat(more);
      attachedNote.textContent = attached.length ? `Attached: ${attached.map((a) => a.name).join(", ")}` : "";
    });
  });
  const composer = h("div", { class: "llm-chat-composer" }, input, h("div", { class: "llm-chat-composer-buttons" }, sendButton, attachButton, stopButton), attachedNote, filePicker);
  const liveRegion = h("div", { class: "llm-visually-hidden", role: "status", "aria-live": "polite" });

  el.replaceChildren(header, searchBar, thread, bannerEl, composer, liveRegion);

  // -- talking to the kernel -------------------------------------------------------------------

  const isBusy = (): boolean => pending > 0 || !!(live && !live.done) || !!model.get("busy");

  function refresh(): void {
    const seq = ++refreshSeq;
    rpc.request<ChatState>("state", {}, { timeoutMs: 30_000 }).then(
      (state) => {
        if (seq === refreshSeq) apply(state);
      },
      (err: Error) => {
        if (seq !== refreshSeq) return;
        showBanner(`Could not read the conversation from the kernel: ${err.message}. Re-run the cell that created this chat.`);
        loaded = true;
        draw();
      },
    );
  }

  function apply(state: ChatState): void {
    // A switch answers with the new state and then announces it (chat.changed) to every view;
    // re-drawing the same state again would replace the buttons under the user's pointer.
    const signature = JSON.stringify(state);
    if (loaded && signature === lastState && !live) return;
    lastState = signature;
    turns = state.turns ?? [];
    loaded = true;
    const a = state.active;
    if (a) {
      if (!live || live.streamId !== a.stream_id) {
        const known = streams.get(a.stream_id);
        live = { streamId: a.stream_id, prompt: a.prompt, parentId: a.parent_id, text: known?.text ?? a.text ?? "", done: false };
      }
    } else if (!live || live.done) {
      // A live answer whose end has not arrived yet outlives a state read before it started.
      live = null;
    }
    draw();
  }

  /** Runs a request that changes the conversation; its errors go to the banner. */
  function act<T>(method: string, params: Record<string, unknown>, onError?: () => void): Promise<T | undefined> {
    pending++;
    showBanner(null);
    updateControls();
    return rpc.request<T>(method, params, { timeoutMs: 0 }).then(
      (result) => result,
      (err: Error) => {
        showBanner(err.message);
        onError?.();
        return undefined;
      },
    ).finally(() => {
      pending--;
      updateControls();
    });
  }

  function submit(): void {
    const text = input.value;
    if (!text.trim() || isBusy()) return;
    input.value = "";
    const files = attached;
    attached = [];
    attachedNote.textContent = "";
    void act("send", files.length ? { prompt: text, attachments: files } : { prompt: text }, () => {
      if (!input.value) input.value = text; // give the message back, to retry it
    });
  }

  function stop(): void {
    if (!isBusy()) return;
    rpc.request("stop", {}, { timeoutMs: 15_000 }).catch((err: Error) => showBanner(err.message));
    input.focus();
  }

  function exportAs(format: "markdown" | "json"): void {
    rpc.request<ExportResult>("export", { format }, { timeoutMs: 30_000 }).then(
      (r) => {
        downloadText(r.filename, r.mime, r.text);
        announce(`Exported ${r.filename}.`);
      },
      (err: Error) => showBanner(err.message),
    );
  }

  function switchTo(turnId: number): void {
    if (isBusy()) return;
    rpc.request<ChatState>("switch", { turn_id: turnId }, { timeoutMs: 30_000 }).then(
      (state) => {
        apply(state);
        announce("Showing another branch.");
      },
      (err: Error) => showBanner(err.message),
    );
  }

  // -- stream and kernel messages --------------------------------------------------------------

  const unsubscribe = streams.subscribe((s: StreamState, event) => {
    if (event === "start") {
      const meta = s.meta as { prompt?: unknown; parent_id?: unknown };
      live = {
        streamId: s.id,
        prompt: typeof meta.prompt === "string" ? meta.prompt : "",
        parentId: typeof meta.parent_id === "number" ? meta.parent_id : null,
        text: "",
        done: false,
      };
      editing = null;
      showBanner(null);
      draw();
      return;
    }
    if (!live || s.id !== live.streamId) return;
    live.text = s.text;
    if (event === "delta") {
      scheduleLive();
      return;
    }
    live.done = true;
    if (event === "error" && s.error !== STOPPED) showBanner(s.error);
    announce(event === "end" ? "Answer complete." : s.error === STOPPED ? "Stopped." : "The answer failed.");
    draw(); // the kernel follows with chat.changed: the logged turn replaces this one
  });

  const onCustom = (msg: unknown): void => {
    if (isChatChanged(msg)) refresh();
  };
  anyModel.on("msg:custom", onCustom);
  const onModel = (): void => picker.setValue(model.get("model"));
  const onBusy = (): void => updateControls();
  model.on("change:model", onModel);
  model.on("change:busy", onBusy);
  model.on("change:name", drawTitle);
  model.on("change:system", drawTitle);

  // -- drawing ---------------------------------------------------------------------------------

  function drawTitle(): void {
    const name = model.get("name");
    const system = model.get("system");
    title.replaceChildren(h("strong", { text: name ? `Chat · ${name}` : "Chat" }));
    if (system) title.append(h("span", { class: "llm-muted llm-chat-system", title: system, text: ` · system: ${system}` }));
  }

  function showBanner(text: string | null): void {
    banner = text;
    bannerEl.hidden = !banner;
    bannerEl.textContent = banner ?? "";
  }

  function announce(text: string): void {
    liveRegion.textContent = text;
  }

  function updateControls(): void {
    const busy = isBusy();
    sendButton.disabled = busy;
    stopButton.disabled = !busy;
    thread.setAttribute("aria-busy", String(!!(live && !live.done)));
    for (const b of Array.from(thread.querySelectorAll<HTMLButtonElement>("button[data-needs-idle]"))) {
      b.setAttribute("aria-disabled", String(busy || b.dataset.atEnd === "1"));
    }
  }

  function visibleTurns(): Turn[] {
    if (!live) return turns;
    // An edit or a regeneration answers from an earlier turn: what came after it is not shown.
    if (live.parentId === null) return [];
    const at = turns.findIndex((t) => t.id === live!.parentId);
    return at < 0 ? turns : turns.slice(0, at + 1);
  }

  function draw(): void {
    const focused = document.activeElement as HTMLElement | null;
    const focusKey = focused?.dataset?.focus;
    // Park the focus inside the widget while the messages are replaced: a focused element that
    // disappears sends the focus to the page, and JupyterLab then takes it for the notebook.
    if (focusKey && thread.contains(focused)) thread.focus({ preventScroll: true });
    const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
    const nodes: HTMLElement[] = [];
    const shown = visibleTurns();
    shown.forEach((turn, i) => nodes.push(renderTurn(turn, i)));
    if (live) nodes.push(renderLive(live));
    if (loaded && nodes.length === 0) {
      nodes.push(h("p", { class: "llm-muted llm-chat-empty", text: "No messages yet. Ask anything: Enter sends, Shift+Enter adds a line, Esc stops an answer." }));
    } else if (!loaded) {
      nodes.push(h("p", { class: "llm-muted", text: "Loading the conversation…" }));
    }
    thread.replaceChildren(...nodes);
    if (atBottom || live) thread.scrollTop = thread.scrollHeight;
    updateControls();
    if (!searchBar.hidden) runSearch(false);
    if (focusKey) restoreFocus(focusKey);
  }

  /** Puts the focus back on the control it was on before a redraw (same turn, same action). */
  function restoreFocus(key: string): void {
    const target = Array.from(el.querySelectorAll<HTMLElement>("[data-focus]")).find((e) => e.dataset.focus === key);
    if (target) target.focus();
    else if (!el.contains(document.activeElement)) input.focus();
  }

  function scheduleLive(): void {
    if (!frame) frame = requestAnimationFrame(drawLive);
  }

  function drawLive(): void {
    frame = 0;
    const body = thread.querySelector<HTMLElement>(".llm-chat-live .llm-chat-assistant .llm-chat-body");
    if (!body || !live) return;
    const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
    renderMarkdownInto(body, live.text);
    if (atBottom) thread.scrollTop = thread.scrollHeight;
  }

  function bodyText(msg: HTMLElement): string {
    const body = msg.querySelector(".llm-chat-body");
    return body ? visibleText(body) : "";
  }

  function message(role: "user" | "assistant", text: string, extra: Node[], actions: Node[]): HTMLElement {
    const body = h("div", { class: "llm-chat-body" });
    renderMarkdownInto(body, text);
    return h("div", { class: `llm-chat-msg llm-chat-${role}` },
      h("div", { class: "llm-chat-role", text: role === "user" ? "You" : "Assistant" }),
      body,
      ...extra,
      actions.length ? h("div", { class: "llm-chat-actions" }, ...actions) : null);
  }

  function actionButton(label: string, aria: string, key: string, needsIdle: boolean, onClick: () => void): HTMLButtonElement {
    const b = button(label, aria, "llm-chat-action");
    b.dataset.focus = key;
    if (needsIdle) b.dataset.needsIdle = "1";
    b.addEventListener("click", () => {
      if (needsIdle && isBusy()) return;
      onClick();
    });
    return b;
  }

  /** Copies the text of a message as it is shown (never text the sanitizer left off screen). */
  function copyButton(shown: () => string, what: string, key: string): HTMLButtonElement {
    const b = actionButton("Copy", `Copy ${what}`, key, false, () => {
      copyText(shown(), document).then(
        () => {
          b.textContent = "Copied";
          announce("Copied to the clipboard.");
        },
        () => {
          b.textContent = "Copy failed";
        },
      );
      setTimeout(() => (b.textContent = "Copy"), 1500);
    });
    return b;
  }

  function renderTurn(turn: Turn, i: number): HTMLElement {
    const k = `t${i}`;
    const prompt = turn.prompt ?? "";
    const answer = turn.response ?? "";
    const article = h("article", { class: `llm-chat-turn llm-status-${turn.status}`, "data-turn-id": turn.id, "aria-label": `Message ${i + 1}` });

    let user: HTMLElement;
    if (editing === turn.id) {
      user = renderEditor(turn, k);
    } else {
      user = message("user", prompt, [], [
        actionButton("Edit", `Edit message ${i + 1} and send it again (a new branch)`, `${k}-edit`, true, () => startEdit(turn.id)),
        copyButton(() => bodyText(user), `message ${i + 1}`, `${k}-copy-prompt`),
      ]);
    }

    const { index, ids } = turn.branch;
    const nav: Node[] = [];
    if (ids.length > 1) {
      const prev = actionButton("◀", `Previous branch of message ${i + 1}`, `${k}-prev`, true, () => {
        if (index > 0) switchTo(ids[index - 1]!);
      });
      const next = actionButton("▶", `Next branch of message ${i + 1}`, `${k}-next`, true, () => {
        if (index < ids.length - 1) switchTo(ids[index + 1]!);
      });
      // aria-disabled, not disabled: a disabled button drops the focus of whoever pressed it.
      if (index === 0) prev.dataset.atEnd = "1";
      if (index === ids.length - 1) next.dataset.atEnd = "1";
      nav.push(h("span", { class: "llm-chat-branches", role: "group", "aria-label": `Branch ${index + 1} of ${ids.length}` },
        prev, h("span", { class: "llm-chat-branch-count", text: `${index + 1}/${ids.length}` }), next));
    }
    const footer = h("div", { class: "llm-chat-footer llm-muted", text: turn.footer });
    const notes: Node[] = [footer];
    if (turn.status === "interrupted") notes.unshift(h("div", { class: "llm-chat-note llm-muted", text: "Stopped before the end." }));
    if (turn.status === "incomplete") notes.unshift(h("div", { class: "llm-chat-note llm-error", text: turn.error ?? "The answer was cut off." }));
    const assistant = message("assistant", answer, notes, [
      ...nav,
      actionButton("Regenerate", `Regenerate answer ${i + 1} (a new branch)`, `${k}-regen`, true, () => {
        void act("regenerate", { turn_id: turn.id });
        input.focus();
      }),
      copyButton(() => bodyText(assistant), `answer ${i + 1}`, `${k}-copy-answer`),
    ]);
    article.append(user, assistant);
    return article;
  }

  function renderLive(l: Live): HTMLElement {
    const user = message("user", l.prompt, [], []);
    const assistant = message("assistant", l.text, [
      h("div", { class: "llm-chat-footer llm-muted", text: l.done ? "" : "writing… (Esc stops)" }),
    ], []);
    return h("article", { class: "llm-chat-turn llm-chat-live", "aria-label": "Answer being written" }, user, assistant);
  }

  function renderEditor(turn: Turn, k: string): HTMLElement {
    const area = h("textarea", { class: "llm-chat-input llm-chat-edit", rows: "3", "aria-label": "Edit the message (Enter sends, Esc cancels)", "data-focus": `${k}-editor` });
    suppressLabShortcuts(area);
    area.value = turn.prompt ?? "";
    const send = (): void => {
      const text = area.value;
      if (!text.trim() || isBusy()) return;
      editing = null;
      void act("edit", { turn_id: turn.id, prompt: text });
      input.focus();
    };
    const cancel = (): void => {
      editing = null;
      draw();
      restoreFocus(`${k}-edit`);
    };
    area.addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && ev.shiftKey && !ev.isComposing) {
        ev.preventDefault();
        ev.stopPropagation();
        insertLineBreak(area);
      } else if (ev.key === "Enter" && !ev.isComposing) {
        ev.preventDefault();
        ev.stopPropagation();
        send();
      } else if (ev.key === "Escape") {
        ev.preventDefault();
        ev.stopPropagation();
        cancel();
      }
    });
    return h("div", { class: "llm-chat-msg llm-chat-user llm-chat-editing" },
      h("div", { class: "llm-chat-role", text: "You (editing)" }),
      area,
      h("div", { class: "llm-chat-actions" },
        actionButton("Send edit", "Send the edited message (a new branch)", `${k}-edit-send`, true, send),
        actionButton("Cancel", "Cancel the edit", `${k}-edit-cancel`, false, cancel)));
  }

  function startEdit(turnId: number): void {
    editing = turnId;
    draw();
    const area = thread.querySelector<HTMLTextAreaElement>("textarea.llm-chat-edit");
    if (area) {
      area.focus();
      area.setSelectionRange(area.value.length, area.value.length);
    }
  }

  // -- search ----------------------------------------------------------------------------------

  function toggleSearch(show = searchBar.hidden): void {
    searchBar.hidden = !show;
    searchToggle.setAttribute("aria-expanded", String(show));
    if (show) {
      searchInput.focus();
      searchInput.select();
      runSearch(true);
    } else {
      clearMarks(thread);
      searchMarks = [];
      searchCount.textContent = "";
      searchToggle.focus();
    }
  }

  function runSearch(scroll: boolean): void {
    clearMarks(thread);
    const query = searchInput.value;
    searchMarks = markMatches(thread.querySelectorAll<HTMLElement>(".llm-chat-body"), query);
    searchIndex = Math.min(searchIndex, Math.max(0, searchMarks.length - 1));
    if (!query.trim()) searchCount.textContent = "";
    else if (!searchMarks.length) searchCount.textContent = "No matches";
    else {
      searchCount.textContent = `${searchIndex + 1} of ${searchMarks.length}`;
      if (scroll) focusMark(searchMarks, searchIndex);
      else searchMarks[searchIndex]?.classList.add("llm-chat-hit-current");
    }
  }

  function stepSearch(by: number): void {
    if (!searchMarks.length) return;
    searchIndex = (searchIndex + by + searchMarks.length) % searchMarks.length;
    focusMark(searchMarks, searchIndex);
    searchCount.textContent = `${searchIndex + 1} of ${searchMarks.length}`;
  }

  searchInput.addEventListener("input", () => {
    searchIndex = 0;
    runSearch(true);
  });
  searchInput.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      ev.preventDefault();
      ev.stopPropagation();
      stepSearch(ev.shiftKey ? -1 : 1);
    } else if (ev.key === "Escape") {
      ev.preventDefault();
      ev.stopPropagation();
      toggleSearch(false);
    }
  });

  // -- keys ------------------------------------------------------------------------------------

  input.addEventListener("keydown", (ev) => {
    if (ev.key !== "Enter" || ev.isComposing || ev.altKey || ev.ctrlKey || ev.metaKey) return;
    ev.preventDefault();
    ev.stopPropagation();
    if (ev.shiftKey) insertLineBreak(input);
    else submit();
  });
  const onKey = (ev: KeyboardEvent): void => {
    if (ev.key === "Escape" && isBusy()) {
      ev.preventDefault();
      ev.stopPropagation();
      stop();
    }
  };
  el.addEventListener("keydown", onKey);

  drawTitle();
  draw();
  refresh();

  return () => {
    if (frame) cancelAnimationFrame(frame);
    unsubscribe();
    picker.destroy();
    el.removeEventListener("keydown", onKey);
    anyModel.off("msg:custom", onCustom);
    model.off("change:model", onModel);
    model.off("change:busy", onBusy);
    model.off("change:name", drawTitle);
    model.off("change:system", drawTitle);
  };
}

export default { initialize, render };
