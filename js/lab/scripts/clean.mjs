// Removes the build outputs of the lab extension (compiled lib/ and the labextension folder).
import { rmSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const lab = resolve(dirname(fileURLToPath(import.meta.url)), "..");
for (const path of ["lib", "tsconfig.tsbuildinfo", "../../llm_notebook/labextension"]) {
  rmSync(resolve(lab, path), { recursive: true, force: true });
}
