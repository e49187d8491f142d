import { defineConfig } from "vitest/config";

export default defineConfig({
  // Tests also import the built bundles from ../llm_notebook/static/.
  server: { fs: { allow: [".."] } },
  test: {
    environment: "jsdom",
    include: ["test/**/*.test.ts"],
    css: false,
  },
});
