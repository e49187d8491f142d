/**
 * The comparison grid (`llm_notebook.compare(...)`): prompts × models × inputs side by side.
 * Python side: llm_notebook/comparison/grid.py (ComparisonGrid); the pieces are in ./grid/.
 */
import type { AnyModel, Initialize, Render } from "@anywidget/types";
import { mountView } from "../shared/mount";
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

const render: Render<GridModel> = ({ model, el }) =>
  mountView(model, el, (stable, root) => {
    const view = new GridView(stable as AnyModel, root, gridStoreFor(stable as AnyModel));
    view.start();
    return () => view.destroy();
  });

export default { initialize, render };
