// Builds the JupyterLab plugin (js/lab → ../../llm_notebook/labextension/).
//
// Run as js/package.json's `postbuild`, so the one `npm run build` that hatch-jupyter-builder
// runs in js/ produces the widget bundles and the lab extension. js/lab is its own npm package
// (JupyterLab's builder brings webpack and @jupyterlab/* that the widget bundles don't need), so
// its locked dependencies are installed here with `npm ci` when missing or older than the lock.
//
//   node lab/scripts/build.mjs          (from js/) production build
//   node lab/scripts/build.mjs --dev    development build (source maps, unminified)
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const lab = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const windows = process.platform === "win32";

function run(command, args) {
  const result = spawnSync(command, args, { cwd: lab, stdio: "inherit", shell: windows });
  if (result.error) {
    console.error(`could not run ${command} (${result.error.message})`);
    process.exit(1);
  }
  if (result.status !== 0) {
    process.exit(result.status ?? 1);
  }
}

const lock = join(lab, "package-lock.json");
const installed = join(lab, "node_modules", ".package-lock.json");
if (!existsSync(installed) || statSync(installed).mtimeMs < statSync(lock).mtimeMs) {
  run(windows ? "npm.cmd" : "npm", ["ci", "--no-audit", "--no-fund"]);
}
run(windows ? "npm.cmd" : "npm", ["run", process.argv.includes("--dev") ? "build:dev" : "build"]);
