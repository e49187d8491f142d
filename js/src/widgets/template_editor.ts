/**
 * Front-end of `llm_notebook.TemplateEditor` (llm_notebook/widgets/template_editor.py): a
 * CodeMirror editor for a prompt template with its variables as a form, a preview, runs on
 * several models side by side, and versions with diffs. The pieces are in template_editor/.
 *
 * The same bundle draws `llm_notebook.WorkflowBuilder` (template_editor/builder.ts) when the
 * model's `kind` says so: its step prompts use this editor, and CodeMirror ships once.
 */
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import { mountView } from "../shared/mount";
import { rpcFor } from "../shared/rpc";
import { streamsFor } from "../shared/stream";
import "../shared/styles.css";
import "./template_editor/styles.css";
import { renderWorkflowBuilder } from "./template_editor/builder";
import { renderTemplateEditor } from "./template_editor/view";

interface TemplateEditorModel {
  name: string | null;
  version: number | null;
  models: string[];
}

const initialize: Initialize<TemplateEditorModel> = ({ model }) => {
  // Subscribe before any view exists, so no stream message is missed.
  streamsFor(model as AnyModel);
  rpcFor(model as AnyModel);
};

const render: Render<TemplateEditorModel> = ({ model, el }) =>
  mountView(model, el, (stable, root) =>
    (model as AnyModel).get("kind") === "workflow_builder"
      ? renderWorkflowBuilder(stable as AnyModel, root)
      : renderTemplateEditor(stable as AnyModel, root),
  );

export default { initialize, render };
