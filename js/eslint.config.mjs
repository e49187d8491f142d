// @ts-check
import js from "@eslint/js";
import { defineConfig } from "eslint/config";
import tseslint from "typescript-eslint";

export default defineConfig(
  // lab/ is the JupyterLab plugin: its own package, lockfile and conventions. Bundles are
  // written outside js/ (llm_notebook/static/).
  { ignores: ["**/node_modules/", "lib/", "lab/", "coverage/"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    files: ["scripts/**/*.mjs"],
    languageOptions: { globals: { console: "readonly", process: "readonly" } },
  },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      eqeqeq: ["error", "always"],
      "no-restricted-syntax": [
        "error",
        {
          selector: "AssignmentExpression[left.property.name=/^(innerHTML|outerHTML)$/]",
          message: "Untrusted text goes through shared/markdown.ts (or textContent), never innerHTML.",
        },
        {
          selector: "CallExpression[callee.property.name=/^(insertAdjacentHTML|write|writeln)$/]",
          message: "Untrusted text goes through shared/markdown.ts (or textContent), never raw HTML.",
        },
      ],
    },
  },
);
