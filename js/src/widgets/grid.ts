/**
 * The comparison grid (`llm_notebook.compare(...)`): prompts × models × inputs side by side.
 * Python side: llm_notebook/comparison/grid.py (ComparisonGrid); the pieces are in ./grid/.
 */
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import { rpcFor } from "../shared/rpc";
import "../shared/styles.css";
import "./grid/grid.css";
import { gridStoreFor } from "./grid/store";
import type { Spec } from "./grid/types";
import { GridView } from "./grid/view";

interface GridModel {
  spec: Spec;
}

const initialize: Initialize<GridModel> = ({ model }) => {
  // Subscribe before any view exists, so no update is missed.
  gridStoreFor(model as AnyModel);
  rpcFor(model as AnyModel);
};

const render: Render<GridModel> = ({ model, el }) => {
  const view = new GridView(model as AnyModel, el, gridStoreFor(model as AnyModel));
  view.start();
  return () => view.destroy();
};

export default { initialize, render };
