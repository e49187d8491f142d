// Bundles each src/widgets/<name>.ts into ../llm_notebook/static/<name>.js (+ <name>.css when the
// widget imports CSS). Each bundle is self-contained: anywidget loads a widget's ESM from a string,
// so a bundle cannot import shared chunks by relative URL.
//
//   node scripts/build.mjs            production: minified, no source maps
//   node scripts/build.mjs --dev      readable, inline source maps
//   node scripts/build.mjs --watch    rebuild on change (use with ANYWIDGET_HMR=1 in the kernel)
import * as esbuild from "esbuild";
import { existsSync, readdirSync, rmSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "..");
const widgetsDir = join(root, "src", "widgets");
const outdir = resolve(root, "..", "llm_notebook", "static");

const dev = process.argv.includes("--dev");
const watch = process.argv.includes("--watch");

const entryPoints = readdirSync(widgetsDir)
  .filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"))
  .map((f) => join(widgetsDir, f));

if (entryPoints.length === 0) {
  console.error(`no widget modules in ${widgetsDir}`);
  process.exit(1);
}

// static/ holds build outputs only. Remove bundles of widgets that no longer exist, but never
// empty the folder first: a kernel loading a widget during a rebuild must still find its file.
const expected = new Set(entryPoints.flatMap((p) => {
  const name = p.slice(widgetsDir.length + 1, -3);
  return [`${name}.js`, `${name}.css`];
}));
if (existsSync(outdir)) {
  for (const file of readdirSync(outdir)) {
    if (!expected.has(file)) rmSync(join(outdir, file), { recursive: true, force: true });
  }
}

/** @type {import("esbuild").BuildOptions} */
const options = {
  entryPoints,
  outdir,
  entryNames: "[name]",
  bundle: true,
  format: "esm",
  platform: "browser",
  target: ["es2020", "chrome100", "firefox100", "safari15"],
  minify: !dev,
  sourcemap: dev ? "inline" : false,
  legalComments: dev ? "inline" : "eof",
  metafile: true,
  logLevel: "info",
  define: { "process.env.NODE_ENV": JSON.stringify(dev ? "development" : "production") },
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  console.log(`watching ${widgetsDir} → ${outdir}`);
} else {
  const result = await esbuild.build(options);
  console.log(await esbuild.analyzeMetafile(result.metafile, { verbose: false }));
}
