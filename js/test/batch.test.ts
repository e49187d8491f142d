import { afterEach, describe, expect, it, vi } from "vitest";
import { snapshotAsText } from "../src/shared/mount_view";
import batchWidget from "../src/widgets/batch";
import { fakeModel, mount } from "./widget-fakes";

const SOURCES = [
  { name: "reviews", rows: 1200, columns: ["id", "text"], kind: "notebook" },
  { name: "more.csv", rows: 3, columns: ["text"], kind: "upload" },
];

function traits(extra: Record<string, unknown> = {}) {
  return { sources: SOURCES, source: "reviews", prompt: "Sum up: {text}", model: "", mode: "now", state: {}, max_upload_mb: 1, snapshot: "", _view_key: "", ...extra };
}

const flush = () => new Promise((resolve) => setTimeout(resolve, 0));

// jsdom's Blob has no arrayBuffer(); browsers do.
Blob.prototype.arrayBuffer ??= function arrayBuffer(this: Blob): Promise<ArrayBuffer> {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result as ArrayBuffer);
    reader.readAsArrayBuffer(this);
  });
};

afterEach(() => {
  document.body.replaceChildren();
  vi.restoreAllMocks();
});

describe("Batch widget", () => {
  it("draws a labelled form from the traits and saves what the user changes", async () => {
    const { model, state } = fakeModel(traits(), {
      choices: () => ({ models: ["loop/a", "loop/b"], templates: ["tone"], default_model: "loop/a" }),
      ping: () => true,
    });
    const view = await mount(batchWidget, model);
    await flush();
    const el = view.el;
    const source = el.querySelector<HTMLSelectElement>(".llm-batch-source")!;
    expect(Array.from(source.options).map((o) => o.textContent)).toEqual(["reviews — 1,200 rows", "more.csv — 3 rows (uploaded)"]);
    expect(el.textContent).toContain("Columns: id, text");
    // Every control has a label naming it (keyboard and screen-reader users reach it by name).
    for (const control of Array.from(el.querySelectorAll("select, textarea, input[type=text], input[type=file]"))) {
      expect(el.querySelector(`label[for="${control.id}"]`), control.className).not.toBeNull();
    }
    expect(el.querySelectorAll("input[type=radio]").length).toBe(3);
    expect((el.querySelector(".llm-batch-model") as HTMLInputElement).placeholder).toBe("session default: loop/a");
    const templates = el.querySelector<HTMLSelectElement>(".llm-batch-templates")!;
    templates.value = "tone";
    templates.dispatchEvent(new Event("change"));
    expect(state.prompt).toBe("tone");
    const radio = el.querySelector<HTMLInputElement>("input[value=batch_api]")!;
    radio.checked = true;
    radio.dispatchEvent(new Event("change", { bubbles: true }));
    expect(state.mode).toBe("batch_api");
    await view.unmount();
  });

  it("shows progress, runs, stops and errors from the kernel", async () => {
    const { model, requests } = fakeModel(traits(), {
      choices: () => ({ models: [], templates: [], default_model: "" }),
      run: () => ({ job_id: "j1" }),
      stop: () => true,
      estimate: () => ({ text: "1,200 rows · ≈ $0.01" }),
    });
    const view = await mount(batchWidget, model);
    const el = view.el;
    el.querySelector<HTMLButtonElement>(".llm-batch-estimate")!.click();
    await flush();
    await flush();
    expect(el.querySelector(".llm-batch-estimate-text")!.textContent).toBe("1,200 rows · ≈ $0.01");
    el.querySelector<HTMLButtonElement>(".llm-batch-run")!.click();
    await flush();
    expect(requests.map((r) => r.method)).toContain("run");
    model.set("state", { status: "running", done: 300, total: 1200, line: "300/1,200 rows <b>", job_id: "j1" });
    const bar = el.querySelector<HTMLProgressElement>(".llm-batch-bar")!;
    expect([bar.value, bar.max]).toEqual([300, 1200]);
    expect(el.querySelector(".llm-batch-line")!.textContent).toBe("Job j1: 300/1,200 rows <b>");
    expect(el.querySelector(".llm-batch-line b")).toBeNull();
    expect(el.querySelector<HTMLButtonElement>(".llm-batch-run")!.disabled).toBe(true);
    expect(el.querySelector<HTMLButtonElement>(".llm-batch-download-csv")!.disabled).toBe(true);
    el.querySelector<HTMLButtonElement>(".llm-batch-stop")!.click();
    model.set("state", { status: "cancelled", done: 320, total: 1200, line: "320/1,200 rows", job_id: "j1", error: "boom" });
    expect(el.querySelector<HTMLButtonElement>(".llm-batch-download-csv")!.disabled).toBe(false);
    expect(el.querySelector<HTMLElement>(".llm-batch-error")!.hidden).toBe(false);
    expect(el.querySelector(".llm-batch-error")!.textContent).toBe("boom");
    await view.unmount();
  });

  it("uploads a file in chunks of binary messages, then asks the kernel to read it", async () => {
    const { model, sent, requests } = fakeModel(traits(), {
      choices: () => ({ models: [], templates: [], default_model: "" }),
      upload_begin: () => ({ upload: "u1", chunk_bytes: 4 }),
      upload_end: () => ({ name: "x.csv", rows: 2, columns: ["a"], kind: "upload" }),
    });
    const view = await mount(batchWidget, model);
    const input = view.el.querySelector<HTMLInputElement>(".llm-batch-file")!;
    const file = new File(["a\n1\n22\n"], "x.csv", { type: "text/csv" });
    Object.defineProperty(input, "files", { value: [file], configurable: true });
    input.dispatchEvent(new Event("change"));
    for (let i = 0; i < 10; i++) await flush();
    const chunks = sent.filter((s) => (s.msg as { type: string }).type === "upload.chunk");
    expect(chunks.map((c) => (c.msg as { seq: number }).seq)).toEqual([0, 1]);
    expect(chunks.map((c) => (c.buffers[0] as ArrayBuffer).byteLength)).toEqual([4, 3]);
    expect(requests.map((r) => r.method)).toEqual(expect.arrayContaining(["upload_begin", "upload_end"]));
    expect(requests.find((r) => r.method === "upload_begin")!.params).toEqual({ name: "x.csv", size: 7 });
    expect(view.el.textContent).toContain("x.csv: 2 rows · columns: a");
    // Too big for the widget: said at once, nothing sent.
    const big = new File([new Uint8Array(1_500_000)], "big.csv");
    Object.defineProperty(input, "files", { value: [big], configurable: true });
    input.dispatchEvent(new Event("change"));
    await flush();
    expect(view.el.querySelector(".llm-batch-error")!.textContent).toContain("more than the 1 MB");
    await view.unmount();
  });

  it("downloads the results as a file", async () => {
    const { model } = fakeModel(traits({ state: { status: "done", job_id: "j1", line: "done" } }), {
      choices: () => ({ models: [], templates: [], default_model: "" }),
      download: (p) => ({ filename: `reviews-j1.${String(p.format)}`, mime: "text/csv", data: btoa("answer\nhi\n") }),
    });
    const created: Blob[] = [];
    URL.createObjectURL = vi.fn((blob: Blob) => {
      created.push(blob);
      return "blob:fake";
    });
    URL.revokeObjectURL = vi.fn();
    const clicked: string[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      clicked.push(this.download);
    });
    const view = await mount(batchWidget, model);
    view.el.querySelector<HTMLButtonElement>(".llm-batch-download-csv")!.click();
    for (let i = 0; i < 5; i++) await flush();
    expect(clicked).toEqual(["reviews-j1.csv"]);
    expect(new TextDecoder().decode(await created[0]!.arrayBuffer())).toBe("answer\nhi\n");
    await view.unmount();
  });
});

describe("snapshotAsText", () => {
  it("keeps the words of a snapshot, one block a line, and none of its markup", () => {
    const node = snapshotAsText('<div class="llmnb-snapshot"><div>Batch</div><div><strong>Input:</strong> df</div>' +
      '<img src="x" onerror="alert(1)"><script>window.pwned = 1</script></div>');
    expect(node.textContent).toBe("Batch\nInput: df");
    expect((node as HTMLElement).querySelector("img, script")).toBeNull();
    expect((window as unknown as { pwned?: number }).pwned).toBeUndefined();
  });
});
