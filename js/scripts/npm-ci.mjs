// Stands in for `npm` in hatch-jupyter-builder's npm_builder (pyproject.toml), which always runs
// `<npm> install` and then `<npm> run <build_cmd>`. Wheels must be built from exactly the locked
// dependency tree, so `install` becomes `npm ci`; every other command passes through unchanged.
import { spawnSync } from "node:child_process";

const args = process.argv.slice(2);
if (args[0] === "install") args.splice(0, 1, "ci", "--no-audit", "--no-fund");

const windows = process.platform === "win32";
const result = spawnSync(windows ? "npm.cmd" : "npm", args, { stdio: "inherit", shell: windows });
if (result.error) {
  console.error(`could not run npm (${result.error.message}); install Node.js 20+ with npm`);
  process.exit(1);
}
process.exit(result.status ?? 1);
