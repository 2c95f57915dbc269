// @ts-check
import js from "@eslint/js";
import { importX } from "eslint-plugin-import-x";
import tseslint from "typescript-eslint";

/**
 * The layers of src/, lowest first: a folder may import its own layer and those below, never
 * one above, and features never each other (README "Layout").
 */
const LAYERS = [
  ["kube", "pki", "observability", "nats", "server"], // plumbing
  ["accounts", "ca", "backup", "crds", "contract", "runtime"], // domain, and the controller runtime
  ["controller", "webhook"], // features
  ["embedded"], // the local environment built on them (npm start, tests)
  ["cli"], // entry points
];
const FEATURES = ["controller", "webhook"];
const folder = (name) => `./src/${name}`;
const layerZones = LAYERS.flatMap((layer, index) =>
  layer.map((name) => ({
    target: folder(name),
    from: [
      ...LAYERS.slice(index + 1)
        .flat()
        .map(folder),
      ...(FEATURES.includes(name) ? FEATURES.filter((f) => f !== name).map(folder) : []),
    ],
    message: `src/${name} sits below what it imports here (README "Layout")`,
  })),
).filter((zone) => zone.from.length > 0);

/**
 * The controller's loops, each in a folder of its own: one never imports another, nor the
 * composition root that wires them (leader-loops.ts); what they share sits beside it.
 */
const LOOPS = ["apps", "platform", "drift"];
const loop = (name) => `./src/controller/${name}`;
const loopZones = [
  ...LOOPS.map((name) => ({
    target: loop(name),
    from: [...LOOPS.filter((other) => other !== name).map(loop), loop("leader-loops.ts")],
    message: `src/controller/${name} is one loop; loops meet only in leader-loops.ts`,
  })),
  {
    target: loop("nats-link.ts"),
    from: [...LOOPS.map(loop), loop("leader-loops.ts")],
    message: "the NATS link sits below the loops that use it",
  },
];

export default tseslint.config(
  { ignores: ["node_modules/**", "toolchain/**", "deploy/**", ".cache/**"] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      "@typescript-eslint/restrict-template-expressions": ["error", { allowNumber: true }],
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            { from: "package", package: "node:test", name: ["test", "describe", "it", "suite"] },
          ],
        },
      ],
      // @kubernetes/client-node models are classes, but the API takes plain objects of their shape.
      "@typescript-eslint/no-unsafe-class-instance-assignment": "off",
      "@typescript-eslint/consistent-type-imports": "error",
      "@typescript-eslint/no-unused-vars": [
        "error",
        { ignoreRestSiblings: true, argsIgnorePattern: "^_" },
      ],
    },
  },
  {
    files: ["src/**/*.ts"],
    plugins: { "import-x": importX },
    // Imports name their .ts files, which Node's resolution finds as they are; the parser
    // lets the cycle check read the modules they lead to.
    settings: {
      "import-x/extensions": [".ts"],
      "import-x/parsers": { "@typescript-eslint/parser": [".ts"] },
      "import-x/resolver": { node: { extensions: [".ts"] } },
    },
    rules: {
      "import-x/no-cycle": "error",
      "import-x/no-restricted-paths": ["error", { zones: [...layerZones, ...loopZones] }],
    },
  },
  { files: ["eslint.config.js"], ...tseslint.configs.disableTypeChecked },
);
