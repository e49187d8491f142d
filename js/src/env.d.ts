// esbuild emits imported CSS as <widget>.css next to the bundle; TypeScript only needs to know
// that such imports exist.
declare module "*.css";
