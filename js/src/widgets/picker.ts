/**
 * `llm_notebook.ModelPicker()`: the searchable model list (picker/view.ts), what is known about the
 * chosen model, a "Test connection" button (Session.check, run off the kernel's thread) and
 * "Use as default". Python side: llm_notebook/widgets/picker.py.
 */
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import { mountView } from "../shared/mount";
import { rpcFor } from "../shared/rpc";
import "../shared/styles.css";
import { button, h } from "./picker/dom";
import "./picker/picker.css";
import { formatContext, formatPrice, keyText } from "./picker/table";
import { createPicker } from "./picker/view";

export { createPicker } from "./picker/view";

interface PickerModel {
  value: string;
  default_model: string;
}

interface CheckResult {
  model: string;
  ok: boolean;
  error: string | null;
  latency_ms: number;
  reply?: string;
}

const initialize: Initialize<PickerModel> = ({ model }) => {
  rpcFor(model as AnyModel);
};

const render: Render<PickerModel> = ({ model, el }) => mountView(model, el, renderPicker);

function renderPicker(model: AnyModel<PickerModel>, el: HTMLElement): () => void {
  const rpc = rpcFor(model as AnyModel);
  el.classList.add("llm-nb", "llm-picker-widget");

  const chosen = h("div", { class: "llm-picker-chosen" });
  const result = h("div", { class: "llm-picker-result", role: "status", "aria-live": "polite" });
  const test = button("Test connection", "Test connection: send a tiny prompt to the chosen model");
  const makeDefault = button("Use as default", "Use the chosen model as the session's default");

  const picker = createPicker({
    rpc,
    value: model.get("value"),
    onChoose: (id) => {
      model.set("value", id);
      model.save_changes();
    },
    onLoad: () => drawChosen(), // the facts of the chosen model are in the table
  });

  const drawChosen = (): void => {
    const id = model.get("value");
    const row = picker.rowOf(id);
    const facts = row ? [keyText(row), formatContext(row.contextWindow), formatPrice(row.inputPer1M, row.outputPer1M)].filter(Boolean) : [];
    const isDefault = id !== "" && id === model.get("default_model");
    chosen.replaceChildren(
      h("span", { class: "llm-muted", text: "Chosen: " }),
      h("strong", { class: "llm-picker-value", text: id || "none" }),
    );
    if (facts.length) chosen.append(h("span", { class: "llm-muted", text: ` · ${facts.join(" · ")}` }));
    if (isDefault) chosen.append(h("span", { class: "llm-badge", text: "default" }));
    makeDefault.disabled = !id || isDefault;
    test.disabled = !id;
  };

  const runAction = (label: string, action: () => Promise<string>, buttonEl: HTMLButtonElement): void => {
    buttonEl.disabled = true;
    result.className = "llm-picker-result llm-muted";
    result.textContent = `${label}…`;
    action().then(
      (text) => {
        result.className = "llm-picker-result llm-ok";
        result.textContent = text;
      },
      (err: Error) => {
        result.className = "llm-picker-result llm-error";
        result.textContent = err.message;
      },
    ).finally(() => {
      buttonEl.disabled = false;
      drawChosen();
    });
  };

  test.addEventListener("click", () => {
    const id = model.get("value");
    runAction(`Testing ${id}`, async () => {
      const r = await rpc.request<CheckResult>("picker.check", { model: id }, { timeoutMs: 180_000 });
      if (!r.ok) throw new Error(`${r.model} failed: ${r.error ?? "unknown error"}`);
      return `${r.model} answered in ${Math.round(r.latency_ms)} ms${r.reply ? `: “${r.reply}”` : ""}`;
    }, test);
  });
  makeDefault.addEventListener("click", () => {
    const id = model.get("value");
    runAction("Setting the default", async () => {
      const r = await rpc.request<{ default: string }>("picker.use_default", { model: id }, { timeoutMs: 30_000 });
      return `${r.default} is now the session's default model.`;
    }, makeDefault);
  });

  const onValue = (): void => {
    picker.setValue(model.get("value"));
    drawChosen();
  };
  model.on("change:value", onValue);
  model.on("change:default_model", drawChosen);

  el.replaceChildren(picker.el, h("div", { class: "llm-picker-footer" }, chosen, h("div", { class: "llm-picker-actions" }, test, makeDefault)), result);
  drawChosen();

  return () => {
    picker.destroy();
    model.off("change:value", onValue);
    model.off("change:default_model", drawChosen);
  };
}

export default { initialize, render };
