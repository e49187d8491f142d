/**
 * Mounts a widget's view (mount_view.ts): a view that survives being rendered again, and the
 * saved snapshot shown read-only, through the shared sanitizer, until a kernel answers.
 */
import type { AnyModel } from "@anywidget/types";
import { mountViewWith, type Cleanup, type CreateView } from "./mount_view";
import { renderSnapshot } from "./sanitize";

export { SNAPSHOT_AFTER_MS, StableModel, type Cleanup, type CreateView } from "./mount_view";

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- the shape anywidget's own types use
type Traits = Record<string, any>;

export function mountView<T extends Traits>(model: AnyModel<T>, el: HTMLElement, create: CreateView<T>): Cleanup {
  return mountViewWith(renderSnapshot, model, el, create);
}
