/**
 * shared/mount.ts: a view rendered again takes the earlier view's DOM over (what the user typed,
 * the focus and the subscriptions survive), and a view no kernel answers shows the saved
 * snapshot, sanitized and read-only, until one does.
 */
import type { AnyModel } from "@anywidget/types";
import { afterEach, describe, expect, it, vi } from "vitest";
import { mountView, SNAPSHOT_AFTER_MS } from "../src/shared/mount";
import { rpcFor } from "../src/shared/rpc";
import { fakeModel } from "./widget-fakes";

type Listener = (...args: unknown[]) => void;

/** What anywidget hands each view: a proxy of the one model whose subscriptions are its own. */
function proxyOf(model: AnyModel) {
  const mine = new Set<[string, Listener]>();
  const proxy = {
    get: (k: string) => model.get(k),
    set: (k: string, v: unknown) => model.set(k, v),
    save_changes: () => model.save_changes(),
    send: (m: unknown) => model.send(m),
    on: (e: string, cb: Listener) => {
      mine.add([e, cb]);
      model.on(e, cb);
    },
    off: (e?: string | null, cb?: Listener | null) => {
      for (const entry of Array.from(mine)) {
        if ((e === null || e === undefined || entry[0] === e) && (cb === null || cb === undefined || entry[1] === cb)) {
          mine.delete(entry);
          model.off(entry[0], entry[1]);
        }
      }
    },
    widget_manager: {} as AnyModel["widget_manager"],
  };
  return { proxy: proxy as unknown as AnyModel, subscriptions: () => mine.size };
}

/** A small widget: an input, a scroller, and a count of the custom messages it saw. */
function demoWidget(seen: unknown[], cleanups: string[]) {
  return (model: AnyModel, el: HTMLElement) => {
    const input = document.createElement("input");
    input.className = "demo-input";
    const scroller = document.createElement("div");
    scroller.className = "demo-scroll";
    const onMsg = (msg: unknown) => seen.push(msg);
    model.on("msg:custom", onMsg);
    model.send({ type: "request", id: "s1", method: "state", params: {} });
    el.append(input, scroller);
    return () => {
      cleanups.push("widget");
      model.off("msg:custom", onMsg);
    };
  };
}

function host(): HTMLElement {
  const el = document.createElement("div");
  document.body.append(el);
  return el;
}

const nextFrame = () => new Promise((r) => requestAnimationFrame(() => r(undefined)));

afterEach(() => {
  vi.useRealTimers();
  document.body.replaceChildren();
});

describe("mountView", () => {
  it("moves the earlier view's DOM into a view rendered again, with its subscriptions", async () => {
    const fake = fakeModel({ _view_key: "k1", snapshot: "" });
    const seen: unknown[] = [];
    const cleanups: string[] = [];
    const first = proxyOf(fake.model);
    const el1 = host();
    const cleanup1 = mountView(first.proxy, el1, demoWidget(seen, cleanups));
    const input = el1.querySelector<HTMLInputElement>(".demo-input")!;
    input.value = "a draft";
    input.focus();
    expect(document.activeElement).toBe(input);

    // ipywidgets renders the updated output: the old view's element leaves, a new view comes.
    el1.remove();
    expect(document.activeElement).not.toBe(input);
    const second = proxyOf(fake.model);
    const el2 = document.createElement("div");
    const cleanup2 = mountView(second.proxy, el2, demoWidget(seen, cleanups));
    document.body.append(el2); // ipywidgets attaches the view after it rendered
    await nextFrame();

    expect(el2.querySelector(".demo-input")).toBe(input);
    expect(input.value).toBe("a draft");
    expect(document.activeElement).toBe(input);
    expect(fake.requests.filter((r) => r.method === "state")).toHaveLength(1); // not drawn again
    expect(first.subscriptions()).toBe(0);
    fake.fromPython({ type: "chat.changed" });
    expect(seen).toEqual([{ type: "chat.changed" }]); // once: through the new view's proxy

    cleanup1(); // the old view going away leaves the DOM it gave up alone
    expect(cleanups).toEqual([]);
    expect(el2.querySelector(".demo-input")).toBe(input);
    cleanup2();
    expect(cleanups).toEqual(["widget"]);
    expect(el2.children).toHaveLength(0);
    expect(second.subscriptions()).toBe(0);
  });

  it("tells Python while the user works in the widget, so output updates wait", async () => {
    const fake = fakeModel({ _view_key: "k4", snapshot: "" });
    const el = host();
    const outside = document.createElement("input");
    document.body.append(outside);
    const cleanup = mountView(proxyOf(fake.model).proxy, el, demoWidget([], []));
    const focusMessages = () => fake.sent.map((s) => s.msg).filter((m) => (m as { type: string }).type === "focus");
    const input = el.querySelector<HTMLInputElement>(".demo-input")!;

    input.focus();
    expect(focusMessages()).toEqual([{ type: "focus", inside: true }]);
    input.dispatchEvent(new KeyboardEvent("keydown", { key: "a", bubbles: true })); // renewed at most every 10 s
    expect(focusMessages()).toHaveLength(1);
    outside.focus();
    await new Promise((r) => setTimeout(r, 0));
    expect(focusMessages()).toEqual([{ type: "focus", inside: true }, { type: "focus", inside: false }]);

    input.focus();
    cleanup(); // a view that goes away with the focus inside lets go too
    expect(focusMessages().at(-1)).toEqual({ type: "focus", inside: false });
  });

  it("gives a second view shown at the same time its own DOM", () => {
    const fake = fakeModel({ _view_key: "k2", snapshot: "" });
    const cleanups: string[] = [];
    const el1 = host();
    const el2 = host();
    mountView(proxyOf(fake.model).proxy, el1, demoWidget([], cleanups));
    mountView(proxyOf(fake.model).proxy, el2, demoWidget([], cleanups));
    const inputs = document.querySelectorAll(".demo-input");
    expect(inputs).toHaveLength(2);
    expect(el1.contains(inputs[0]!) && el2.contains(inputs[1]!)).toBe(true);
  });

  it("shows the saved snapshot, sanitized and read-only, while no kernel answers", () => {
    vi.useFakeTimers();
    const hostile =
      '<div class="llmnb-snapshot llmnb-snap-chat" style="position:fixed;inset:0">' +
      '<div class="llmnb-snap-title">Chat · saved</div><p>Paris is the capital.</p>' +
      '<img src="http://192.0.2.1/beacon.png" onerror="window.__pwned=1"><script>window.__pwned=2</script>' +
      '<a href="javascript:window.__pwned=3">click</a><a href="https://example.org/">ok</a>' +
      '<div class="jp-Dialog">spoof</div></div>';
    const fake = fakeModel({ _view_key: "k3", snapshot: hostile }); // requests stay unanswered
    const el = host();
    mountView(fake.model, el, (_model, live) => {
      live.textContent = "Loading the conversation…";
    });
    const saved = el.querySelector<HTMLElement>(".llmnb-saved")!;
    const live = el.querySelector<HTMLElement>(".llmnb-live")!;
    expect(saved.hidden).toBe(true); // a kernel has a moment to answer first

    vi.advanceTimersByTime(SNAPSHOT_AFTER_MS + 1);
    expect(saved.hidden).toBe(false);
    expect(live.hidden).toBe(true);
    expect(saved.querySelector(".llmnb-saved-note")!.textContent).toMatch(/read-only.*Run its cell again/);
    expect(saved.textContent).toContain("Paris is the capital.");
    expect(saved.querySelector(".llmnb-snap-title")!.textContent).toBe("Chat · saved");
    expect(saved.querySelector("script, img, [style], [onerror], .jp-Dialog")).toBeNull();
    expect(saved.querySelector("[class~='jp-Dialog']")).toBeNull();
    const links = Array.from(saved.querySelectorAll("a"));
    expect(links.map((a) => a.getAttribute("href"))).toEqual([null, "https://example.org/"]);
    // jsdom never runs a script that arrives as HTML and loads no images (so fires no onerror):
    // a window.__pwned check here could not fail. Whether the saved snapshot can run anything
    // is checked in Chromium: tests/browser/test_reopen_browser.py.
    // (A view that asked nothing yet asks whether a kernel is there.)
    expect(fake.requests.map((r) => r.method)).toEqual(["ping"]);

    // The kernel answers: the live view comes back.
    fake.fromPython({ type: "response", id: fake.requests[0]!.id, ok: true, result: true });
    return Promise.resolve().then(() => {
      expect(saved.hidden).toBe(true);
      expect(saved.children).toHaveLength(0);
      expect(live.hidden).toBe(false);
    });
  });

  it("never shows the snapshot when the kernel answers in time, nor without one", async () => {
    vi.useFakeTimers();
    const answered = fakeModel({ _view_key: "k4", snapshot: "<p>saved</p>" }, { state: () => ({}) });
    const el = host();
    mountView(answered.model, el, (model) => {
      void rpcFor(model).request("state");
    });
    await vi.advanceTimersByTimeAsync(SNAPSHOT_AFTER_MS * 3);
    expect(el.querySelector<HTMLElement>(".llmnb-saved")!.hidden).toBe(true);
    expect(answered.requests.map((r) => r.method)).toEqual(["state"]); // no ping needed

    const empty = fakeModel({ _view_key: "k5", snapshot: "" });
    const el2 = host();
    mountView(empty.model, el2, () => undefined);
    await vi.advanceTimersByTimeAsync(SNAPSHOT_AFTER_MS * 3);
    expect(el2.querySelector<HTMLElement>(".llmnb-saved")!.hidden).toBe(true);
    expect(el2.querySelector<HTMLElement>(".llmnb-live")!.hidden).toBe(false);
  });

  it("goes live on any message from the widget's Python object", () => {
    vi.useFakeTimers();
    const fake = fakeModel({ _view_key: "k6", snapshot: "<p>saved</p>" });
    const el = host();
    mountView(fake.model, el, () => undefined);
    vi.advanceTimersByTime(SNAPSHOT_AFTER_MS + 1);
    expect(el.querySelector<HTMLElement>(".llmnb-saved")!.hidden).toBe(false);
    fake.fromPython({ type: "grid.update", cells: [], seq: 1 });
    expect(el.querySelector<HTMLElement>(".llmnb-saved")!.hidden).toBe(true);
  });
});
