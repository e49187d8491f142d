/**
 * A tiny widget that proves the pipeline: shared markdown renderer, styles, streams and requests.
 * Python side: any `LLMWidget` subclass with `_bundle = "demo"` and a `value` Unicode trait.
 */
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import { renderMarkdownInto } from "../src/shared/markdown";
import { rpcFor } from "../src/shared/rpc";
import { streamsFor, type StreamState } from "../src/shared/stream";
import "../src/shared/styles.css";

interface DemoModel {
  value: string;
}

const initialize: Initialize<DemoModel> = ({ model }) => {
  // Subscribe before any view exists, so no stream message is missed.
  streamsFor(model as AnyModel);
  rpcFor(model as AnyModel);
};

const render: Render<DemoModel> = ({ model, el }) => {
  el.classList.add("llm-nb", "llm-demo");
  const body = document.createElement("div");
  const status = document.createElement("div");
  status.className = "llm-muted";
  status.setAttribute("aria-live", "polite");
  const ping = document.createElement("button");
  ping.type = "button";
  ping.textContent = "Ping kernel";
  el.replaceChildren(body, status, ping);

  let frame = 0;
  let latest: StreamState | null = null;
  const draw = (): void => {
    frame = 0;
    if (latest) {
      renderMarkdownInto(body, latest.text);
      status.textContent = latest.status === "error" ? `Error: ${latest.error ?? ""}` : latest.status;
    } else {
      renderMarkdownInto(body, model.get("value"));
    }
  };
  // Re-render at most once a frame, however fast deltas arrive.
  const schedule = (): void => {
    if (!frame) frame = requestAnimationFrame(draw);
  };

  const onValue = (): void => {
    latest = null;
    schedule();
  };
  model.on("change:value", onValue);
  const unsubscribe = streamsFor(model as AnyModel).subscribe((state) => {
    latest = state;
    schedule();
  });

  ping.addEventListener("click", () => {
    status.textContent = "…";
    rpcFor(model as AnyModel)
      .request<string>("ping", { text: "hello" }, { timeoutMs: 10_000 })
      .then(
        (result) => (status.textContent = `Kernel says: ${String(result)}`),
        (err: Error) => (status.textContent = `Error: ${err.message}`),
      );
  });

  draw();
  return () => {
    if (frame) cancelAnimationFrame(frame);
    unsubscribe();
    model.off("change:value", onValue);
  };
};

export default { initialize, render };
