/**
 * `rotate-operator-key`: a new signing key for the operator, the key that signs every account
 * (platform team: it writes the annotation on the operator's key Secret that the controller
 * answers, see accounts/operator-key-rotation.ts), then each step as the controller takes it.
 * The apps' credentials do not change.
 */
import { PatchStrategy, setHeaderOptions } from "@kubernetes/client-node";
import { OPERATOR_ENTRY } from "../../accounts/key-store.ts";
import { operatorKeyStage } from "../../accounts/operator-key-rotation.ts";
import { ROTATE_SIGNING_KEY_ANNOTATION } from "../../contract/credential-rotation.ts";
import { readSecretData } from "../../kube/read-secret.ts";
import { waitUntil } from "../../embedded/wait.ts";
import {
  CLUSTER_OPTIONS,
  CLUSTER_USAGE,
  CommandError,
  OPERATOR_NAMESPACE_OPTION,
  OPERATOR_NAMESPACE_USAGE,
  UsageError,
  connectCluster,
  operatorNamespace,
  text,
  type Command,
} from "./command.ts";

/** The steps of a rotation, in the order the controller always takes them, as said to the user. */
const STEPS = {
  asked: "asked; waiting for the controller",
  introduced: "new key trusted beside the old one; the NATS servers restart to load it",
  retiring: "new key signing; every account is being signed anew, then the old key leaves",
  dropping: "old key left the operator JWT; the NATS servers restart without it",
  done: "done: the old key is trusted no more",
} as const;
type Step = keyof typeof STEPS;
const ORDER = Object.keys(STEPS) as Step[];

/** Where the rotation answering `token` stands, from the operator entry's fields. */
function rotationStep(data: Record<string, string>, token: string): Step {
  if (data.signingRotatedFor !== token) return "asked";
  return operatorKeyStage(data) ?? "done";
}

export const rotateOperatorKey: Command = {
  summary: "a new signing key for the operator; every account is signed anew (platform team)",
  usage:
    "nats-tenancy rotate-operator-key [--operator-namespace NS] [--no-wait] [--timeout-seconds N]\n" +
    "  --no-wait             ask, and return without following the steps\n" +
    "  --timeout-seconds N   how long to follow them (default 900)\n" +
    "The NATS servers restart twice, one at a time; apps keep their credentials.\n" +
    OPERATOR_NAMESPACE_USAGE +
    CLUSTER_USAGE,
  options: {
    ...CLUSTER_OPTIONS,
    ...OPERATOR_NAMESPACE_OPTION,
    "no-wait": { type: "boolean" },
    "timeout-seconds": { type: "string" },
  },
  run: async (values, positionals, output) => {
    if (positionals.length > 0) throw new UsageError("rotate-operator-key takes no arguments");
    const timeoutSeconds = Number(text(values, "timeout-seconds") ?? "900");
    if (!Number.isSafeInteger(timeoutSeconds) || timeoutSeconds < 1)
      throw new UsageError("--timeout-seconds: a whole number of seconds");
    const cluster = connectCluster(values);
    const namespace = operatorNamespace(values);
    const token = new Date().toISOString();
    await cluster.core.patchNamespacedSecret(
      {
        name: OPERATOR_ENTRY,
        namespace,
        body: { metadata: { annotations: { [ROTATE_SIGNING_KEY_ANNOTATION]: token } } },
      },
      setHeaderOptions("Content-Type", PatchStrategy.MergePatch),
    );
    output.out(`asked for a new operator signing key (${token})\n`);
    if (values["no-wait"] === true) return;
    let said = -1;
    try {
      await waitUntil(
        "the rotation's end",
        async () => {
          const data = (await readSecretData(cluster.requests, namespace, OPERATOR_ENTRY)) ?? {};
          const now = ORDER.indexOf(rotationStep(data, token));
          // A step quicker than a look (few accounts to sign anew) is said all the same.
          for (const step of ORDER.slice(said + 1, now + 1)) output.out(`${STEPS[step]}\n`);
          said = Math.max(said, now);
          return ORDER[now] === "done";
        },
        { timeoutMs: timeoutSeconds * 1000, intervalMs: 1000 },
      );
    } catch {
      throw new CommandError(
        `not done within ${String(timeoutSeconds)} s (${STEPS[ORDER[said] ?? "asked"]}); the controller goes on, see its log`,
      );
    }
  },
};
